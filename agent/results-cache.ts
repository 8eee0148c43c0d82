/**
 * Results of recent messages, on disk (`<data_dir>/results/<message_id>.json`,
 * mode 0600), so a message delivered again — the hub re-sends every open
 * message on every new connection, and a result may have been lost with the
 * connection — is answered from here and never executed twice. A result is
 * written before it is sent: an agent killed between the two answers the
 * redelivery from the cache after its restart.
 *
 * Bounded: the newest {@link MAX_RESULTS} results are kept (the hub completes
 * a message as soon as a result is applied, so a repeat comes minutes after,
 * not weeks).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { UUID_RE } from '../core/ids.ts';
import { runResultSchema, taskResultSchema } from '../core/agent-protocol.ts';

/** Results kept. */
export const MAX_RESULTS = 5000;

const entrySchema = z.discriminatedUnion('type', [
  z.object({ v: z.literal(1), message_id: z.string().regex(UUID_RE), type: z.literal('task_result'), result: taskResultSchema, completed_at: z.string() }),
  z.object({ v: z.literal(1), message_id: z.string().regex(UUID_RE), type: z.literal('run_result'), result: runResultSchema, completed_at: z.string() }),
]);
/** One cached result. */
export type CachedResult = z.infer<typeof entrySchema>;

/** The results cache of one data directory. */
export class ResultsCache {
  readonly dir: string;
  /** message id → completion time (ms), oldest first. */
  readonly #index = new Map<string, number>();
  readonly #max: number;

  private constructor(dir: string, max: number) {
    this.dir = dir;
    this.#max = max;
  }

  /** Open (and create) `<dataDir>/results`. */
  static async open(dataDir: string, max: number = MAX_RESULTS): Promise<ResultsCache> {
    const dir = path.join(dataDir, 'results');
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const cache = new ResultsCache(dir, max);
    const entries: Array<[string, number]> = [];
    for (const name of await fs.readdir(dir)) {
      const id = name.endsWith('.json') ? name.slice(0, -5) : '';
      if (!UUID_RE.test(id)) {
        // A leftover temporary file of a write that was interrupted.
        if (name.includes('.tmp-')) await fs.rm(path.join(dir, name), { force: true });
        continue;
      }
      const st = await fs.stat(path.join(dir, name)).catch(() => null);
      if (st) entries.push([id, st.mtimeMs]);
    }
    entries.sort((a, b) => a[1] - b[1]);
    for (const [id, t] of entries) cache.#index.set(id, t);
    return cache;
  }

  /** Results held. */
  get size(): number {
    return this.#index.size;
  }

  /** The result of `messageId`, or undefined. A damaged file counts as absent (the work runs again: every handler is idempotent). */
  async get(messageId: string): Promise<CachedResult | undefined> {
    if (!this.#index.has(messageId)) return undefined;
    try {
      const parsed = entrySchema.safeParse(JSON.parse(await fs.readFile(this.#file(messageId), 'utf8')));
      return parsed.success && parsed.data.message_id === messageId ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  /** Store a result durably (temporary file, fsync, rename), then drop the oldest beyond the bound. */
  async put(entry: Omit<CachedResult, 'v' | 'completed_at'>): Promise<void> {
    const full = entrySchema.parse({ v: 1, completed_at: new Date().toISOString(), ...entry });
    const file = this.#file(full.message_id);
    const tmp = `${file}.tmp-${process.pid}`;
    const fh = await fs.open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(full));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, file);
    this.#index.delete(full.message_id);
    this.#index.set(full.message_id, Date.now());
    while (this.#index.size > this.#max) {
      const oldest = this.#index.keys().next().value as string;
      this.#index.delete(oldest);
      await fs.rm(this.#file(oldest), { force: true });
    }
  }

  #file(messageId: string): string {
    if (!UUID_RE.test(messageId)) throw new Error('message id must be a UUID');
    return path.join(this.dir, `${messageId}.json`);
  }
}
