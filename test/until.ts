/**
 * Polling for tests that wait on something another process or the database
 * does. The deadline only bounds a broken test: nothing asserts timing.
 */

/** Poll `fn` every 25 ms until it returns a truthy value (or throw after `ms`). */
export async function until<T>(fn: () => Promise<T | null | undefined | false>, what: string, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
