/**
 * What tasks that do real work need from their worker process beyond
 * graphile-worker's helpers: the pool, the logger, the data directory
 * (staging, secret key) and the secret key provider. Built once by
 * startWorkers and given to the task factories in worker/runner.ts; the
 * delete and cleanup queues' tasks take the same context (they resolve WebDAV
 * credentials with `secrets`).
 */
import path from 'node:path';
import type pg from 'pg';
import type { Logger } from 'pino';
import { SecretKeyProvider } from '../engine/secrets/secret-key.ts';
import { HEARTBEAT_INTERVAL_MS, PROGRESS_EVENT_INTERVAL_MS, STALE_AFTER_SECONDS } from '../engine/backup/run-progress.ts';

/** Timing of the run lifecycle; tests shorten it, production keeps the defaults. */
export interface RunTiming {
  /** Heartbeat of a running run (default 10 s). */
  heartbeatMs: number;
  /** Minimum spacing of progress events (default 1 s). */
  progressEventMs: number;
  /** The watchdog fails running runs silent for this long (default 45 s). */
  staleAfterSeconds: number;
}

/** The context of every task of one worker process. */
export interface TaskContext {
  pool: pg.Pool;
  logger: Logger;
  /** Absolute data directory of this process. */
  dataDir: string;
  secrets: SecretKeyProvider;
  timing: RunTiming;
}

/** Build a context; `secretKey` is BASTION_SECRET_KEY when set. */
export function createTaskContext(options: { pool: pg.Pool; logger: Logger; dataDir: string; secretKey?: string | undefined; timing?: Partial<RunTiming> }): TaskContext {
  const dataDir = path.resolve(options.dataDir);
  return {
    pool: options.pool,
    logger: options.logger,
    dataDir,
    secrets: new SecretKeyProvider({ dataDir, envKey: options.secretKey }),
    timing: {
      heartbeatMs: options.timing?.heartbeatMs ?? HEARTBEAT_INTERVAL_MS,
      progressEventMs: options.timing?.progressEventMs ?? PROGRESS_EVENT_INTERVAL_MS,
      staleAfterSeconds: options.timing?.staleAfterSeconds ?? STALE_AFTER_SECONDS,
    },
  };
}
