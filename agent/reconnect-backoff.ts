/**
 * How long an agent waits before reconnecting (DESIGN §8): exponential from
 * 1 s to a 30 s cap, with "equal jitter" — a delay in [base/2, base] — so a
 * thousand agents that lost the same hub do not come back in the same
 * millisecond, and the counter resets after a healthy session (the reference
 * never reset it, so every later reconnect took 15–30 s, reference §11.17).
 * Pure: the random source is passed in.
 */

/** Backoff settings. */
export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** A session that stayed ready this long resets the counter. */
  healthyAfterMs: number;
}

/** The defaults: 1 s doubling to 30 s, reset after 10 s of a ready session. */
export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 1000, maxMs: 30_000, healthyAfterMs: 10_000 };

/** Upper bound of the delay before reconnect attempt `attempt` (0 = the first retry). */
export function backoffCeiling(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  const n = Math.max(0, Math.min(Math.trunc(attempt), 30));
  return Math.min(policy.maxMs, policy.initialMs * 2 ** n);
}

/** The delay before reconnect attempt `attempt`: in [ceiling/2, ceiling]. */
export function backoffDelay(attempt: number, random: () => number = Math.random, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  const ceiling = backoffCeiling(attempt, policy);
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(ceiling / 2 + (ceiling / 2) * r);
}

/** Counts failed attempts; reset by a healthy session. */
export class ReconnectBackoff {
  readonly #policy: BackoffPolicy;
  readonly #random: () => number;
  #attempt = 0;

  constructor(policy: Partial<BackoffPolicy> = {}, random: () => number = Math.random) {
    this.#policy = { ...DEFAULT_BACKOFF, ...policy };
    if (!(this.#policy.initialMs > 0) || !(this.#policy.maxMs >= this.#policy.initialMs)) throw new RangeError('backoff: need 0 < initialMs <= maxMs');
    this.#random = random;
  }

  /** Failed attempts since the last healthy session. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The delay before the next attempt (and count it). */
  next(): number {
    return backoffDelay(this.#attempt++, this.#random, this.#policy);
  }

  /** A session ended; reset when it was ready for at least healthyAfterMs. */
  sessionEnded(readyForMs: number | null): void {
    if (readyForMs !== null && readyForMs >= this.#policy.healthyAfterMs) this.#attempt = 0;
  }
}
