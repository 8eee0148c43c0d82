/**
 * The queues' retry delay after a failed attempt (DESIGN §5), the same
 * formula as the SQL function bastion_private.task_backoff_seconds — SQL is
 * the source of truth (outcomes are recorded there); this copy lets the API
 * and the UI explain "next attempt in …" and is tested against SQL on many
 * inputs.
 *
 *   delay = min(base · 2^(min(attempts, 1) − 1 capped at 30), cap) + jitter
 *
 * with jitter in [0, max_jitter) derived deterministically from the task's
 * run id text and the attempt number (reference §1.8): h = 0; for each UTF-8
 * byte b of the key, h = h·131 + b; then h += attempts·97; all wrapping at
 * 2^64; jitter = h mod max_jitter. Deterministic jitter spreads tasks that
 * failed together without making a task's schedule unpredictable to read.
 */
import type { TaskErrorKind } from './task-status.ts';

/** One row of the backoff table. */
export interface BackoffRow {
  baseSeconds: number;
  capSeconds: number;
  maxJitterSeconds: number;
}

/** DESIGN §5 (offline is ours: a waiting agent is polled often, and its tasks are rescheduled when it reconnects). */
export const BACKOFF_TABLE: Readonly<Record<TaskErrorKind, BackoffRow>> = {
  network: { baseSeconds: 60, capSeconds: 21_600, maxJitterSeconds: 30 },
  http: { baseSeconds: 60, capSeconds: 21_600, maxJitterSeconds: 30 },
  io: { baseSeconds: 300, capSeconds: 21_600, maxJitterSeconds: 60 },
  unknown: { baseSeconds: 300, capSeconds: 21_600, maxJitterSeconds: 60 },
  auth: { baseSeconds: 21_600, capSeconds: 86_400, maxJitterSeconds: 600 },
  config: { baseSeconds: 21_600, capSeconds: 86_400, maxJitterSeconds: 600 },
  offline: { baseSeconds: 30, capSeconds: 600, maxJitterSeconds: 10 },
};

/** Longest Retry-After a server can impose on the queue (a hostile value cannot park a task for years). */
export const MAX_RETRY_AFTER_SECONDS = 86_400;

const U64 = (1n << 64n) - 1n;

/** Deterministic jitter in [0, maxJitter) for `key` (the run id text) and attempt `attempts` (values below 1 count as 1). */
export function jitterSeconds(key: string, attempts: number, maxJitter: number): number {
  if (maxJitter <= 0) return 0;
  const a = BigInt(Math.max(Math.trunc(attempts), 1));
  let h = 0n;
  for (const b of Buffer.from(key, 'utf8')) h = (h * 131n + BigInt(b)) & U64;
  h = (h + a * 97n) & U64;
  return Number(h % BigInt(maxJitter));
}

/** Seconds to wait after attempt number `attempts` failed with `kind`. */
export function backoffSeconds(kind: TaskErrorKind, attempts: number, key: string): number {
  const row = BACKOFF_TABLE[kind];
  const a = Math.max(Math.trunc(attempts), 1);
  const exp = Math.min(row.baseSeconds * 2 ** Math.min(a - 1, 30), row.capSeconds);
  return exp + jitterSeconds(key, a, row.maxJitterSeconds);
}

/**
 * The wait the queue records: the backoff, or the server's Retry-After when
 * that is longer (capped at {@link MAX_RETRY_AFTER_SECONDS}).
 */
export function retryDelaySeconds(kind: TaskErrorKind, attempts: number, key: string, retryAfterSeconds?: number | null): number {
  const backoff = backoffSeconds(kind, attempts, key);
  const asked = Math.min(Math.max(Math.trunc(retryAfterSeconds ?? 0), 0), MAX_RETRY_AFTER_SECONDS);
  return Math.max(backoff, asked);
}
