/**
 * The run watchdog (crontab, every minute): bastion.recover_runs fails
 * running runs whose worker has been silent for 45 s (`worker_lost`) and
 * releases the dead worker's graphile-worker locks so later runs of the same
 * job are not held back; it also re-queues queued runs that lost their queue
 * entry and fails those whose attempts are used up.
 *
 * With heartbeats every 10 s and this tick every minute, a run whose worker
 * was killed is failed within 45 s + 60 s of the kill (DESIGN §5 asks for
 * 2 minutes). Any number of workers may run it at once: the function locks
 * the runs it handles with SKIP LOCKED.
 *
 * Each process also removes its own leftover staging directories
 * (`<data_dir>/staging/<run_id>`) of runs that ended for good — a worker
 * killed mid-run cannot clean up after itself. Directories of queued runs are
 * kept: a requeued run resumes from its journal.
 */
import fs from 'node:fs/promises';
import type { Task } from 'graphile-worker';
import { isUuid } from '../../core/ids.ts';
import { recoverRuns } from '../../db/queries/runs.ts';
import { stagingRoot } from '../../engine/backup/hub-executor.ts';
import { STALE_AFTER_SECONDS } from '../../engine/backup/run-progress.ts';
import type { TaskContext } from '../task-context.ts';

/** Task identifier (also the crontab entry and this file's name). */
export const RUN_WATCHDOG = 'run-watchdog';

declare global {
  namespace GraphileWorker {
    interface Tasks {
      'run-watchdog': Record<string, unknown>;
    }
  }
}

/** Remove staging directories of runs that are neither queued nor running; returns how many. */
export async function sweepStaging(ctx: Pick<TaskContext, 'pool' | 'dataDir'>): Promise<number> {
  let names: string[];
  try {
    names = (await fs.readdir(stagingRoot(ctx.dataDir))).filter(isUuid);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
  if (names.length === 0) return 0;
  const { rows } = await ctx.pool.query<{ id: string }>(`select id::text from bastion.runs where id = any($1::uuid[]) and status in ('queued', 'running')`, [names]);
  const live = new Set(rows.map((r) => r.id));
  let removed = 0;
  for (const name of names) {
    if (live.has(name)) continue;
    await fs.rm(`${stagingRoot(ctx.dataDir)}/${name}`, { recursive: true, force: true });
    removed++;
  }
  return removed;
}

/** The graphile-worker task; without a context it only recovers runs (no staging sweep). */
export function makeRunWatchdogTask(ctx?: TaskContext): Task<'run-watchdog'> {
  return async (_payload, helpers) => {
    const staleAfter = ctx?.timing.staleAfterSeconds ?? STALE_AFTER_SECONDS;
    const r = await helpers.withPgClient((client) => recoverRuns(client, staleAfter));
    if (r.lost > 0) helpers.logger.warn(`run watchdog: failed ${r.lost} run(s) whose worker stopped heartbeating (worker_lost)`);
    if (r.requeued > 0) helpers.logger.warn(`run watchdog: queued ${r.requeued} run(s) again that had lost their queue entry`);
    if (r.exhausted > 0) helpers.logger.warn(`run watchdog: failed ${r.exhausted} queued run(s) whose attempts were used up`);
    if (ctx) {
      const swept = await sweepStaging(ctx);
      if (swept > 0) helpers.logger.info(`run watchdog: removed ${swept} staging director${swept === 1 ? 'y' : 'ies'} of ended runs`);
    }
  };
}
