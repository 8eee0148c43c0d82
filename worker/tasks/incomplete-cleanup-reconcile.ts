/**
 * Incomplete-cleanup reconcile as a crontab task (every 10 minutes; see
 * engine/cleanup/reconcile.ts for the rule, the bounded batches and why any
 * number of worker processes may run it at once). New tasks are due at once:
 * their graphile jobs are added in the batch's transaction, so a worker
 * starts cleaning while reconcile is still creating the next batch.
 */
import type { Task } from 'graphile-worker';
import { reconcileIncompleteCleanup } from '../../engine/cleanup/reconcile.ts';

/** Task identifier (also the crontab entry and this file's name). */
export const INCOMPLETE_CLEANUP_RECONCILE = 'incomplete-cleanup-reconcile';

declare global {
  namespace GraphileWorker {
    interface Tasks {
      'incomplete-cleanup-reconcile': { batch_size?: number; max_batches?: number };
    }
  }
}

function bounded(value: unknown, min: number, max: number): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max ? value : undefined;
}

/** The graphile-worker task (payload overrides for a manual `add_job`: batch_size 1–5000, max_batches 1–1000). */
export const incompleteCleanupReconcile: Task<'incomplete-cleanup-reconcile'> = async (payload, helpers) => {
  const p = (payload ?? {}) as { batch_size?: unknown; max_batches?: unknown };
  const batchSize = bounded(p.batch_size, 1, 5000);
  const maxBatches = bounded(p.max_batches, 1, 1000);
  // One connection for the tick, in autocommit: each batch is its own transaction; the advisory lock is the session's.
  const summary = await helpers.withPgClient((client) =>
    reconcileIncompleteCleanup(client, {
      ...(batchSize !== undefined ? { batchSize } : {}),
      ...(maxBatches !== undefined ? { maxBatches } : {}),
      logger: { info: (m) => helpers.logger.info(m), warn: (m) => helpers.logger.warn(m) },
      signal: helpers.abortSignal,
    }),
  );
  if (!summary.ran) {
    helpers.logger.debug(summary.enabled ? 'incomplete cleanup reconcile: another worker is reconciling' : 'incomplete cleanup is off (settings.incomplete_cleanup_days = 0)');
    return;
  }
  if (summary.enqueued > 0 || summary.skipped > 0) {
    helpers.logger.info(
      `incomplete cleanup reconcile: ${summary.enqueued} task(s) created (${summary.fromJobSpec} from the job's spec), ${summary.skipped} run(s) skipped${summary.more ? '; more candidates wait for the next tick' : ''}`,
    );
  }
};
