/**
 * Hourly run-history pruning (seed 002 §10): ended runs older than
 * `settings.run_retention_days` are deleted, except runs whose snapshot is
 * present, deleting or error, so data that still exists stays manageable.
 *
 * Deletes go in batches of {@link BATCH} rows, each its own statement, so the
 * first run after a long outage does not hold locks on millions of rows; one
 * tick stops after {@link MAX_BATCHES} and the next tick continues.
 */
import type { Task } from 'graphile-worker';

/** Task identifier (also the crontab entry and this file's name). */
export const PRUNE_RUN_HISTORY = 'prune-run-history';

/** Rows per DELETE statement. */
export const BATCH = 1000;
/** Batches per tick (100,000 runs). */
export const MAX_BATCHES = 100;

declare global {
  namespace GraphileWorker {
    interface Tasks {
      'prune-run-history': Record<string, unknown>;
    }
  }
}

/** The task: prune until a batch comes back short. */
export const pruneRunHistory: Task<'prune-run-history'> = async (_payload, helpers) => {
  let total = 0;
  for (let i = 0; i < MAX_BATCHES && !helpers.abortSignal?.aborted; i++) {
    const { rows } = await helpers.withPgClient((c) => c.query<{ n: number }>('select bastion.prune_run_history($1) as n', [BATCH]));
    const n = rows[0]?.n ?? 0;
    total += n;
    if (n < BATCH) break;
  }
  if (total > 0) helpers.logger.info(`pruned ${total} runs older than the run retention period`);
};
