/**
 * The queues' watchdog (crontab, every minute, one run per tick across all
 * worker processes): running tasks whose heartbeat is older than
 * {@link STALE_AFTER_SECONDS} belonged to a worker that died (SIGKILL, crash,
 * lost host); they go back to `retrying`, due {@link RECOVERY_DELAY_SECONDS}
 * later (or `abandoned` by the usual rules), and the dead worker's
 * graphile-worker locks are released so its node lane is not blocked for
 * graphile-worker's 4-hour lock expiry. With heartbeats every 10 s, a killed
 * worker's task is `retrying` again within STALE_AFTER + one tick ≈ 100 s
 * (the issue asks for 2 minutes). All the work is one SQL function,
 * bastion_private.task_watchdog, which a DBA can also call.
 */
import type { Task } from 'graphile-worker';
import { RECOVERY_DELAY_SECONDS, STALE_AFTER_SECONDS } from '../../core/task-status.ts';

/** Task identifier (also the crontab entry and this file's name). */
export const QUEUE_WATCHDOG = 'queue-watchdog';

declare global {
  namespace GraphileWorker {
    interface Tasks {
      'queue-watchdog': Record<string, unknown>;
    }
  }
}

/** The task. */
export const queueWatchdog: Task<'queue-watchdog'> = async (_payload, helpers) => {
  const { rows } = await helpers.withPgClient((c) =>
    c.query<{ queue: string; run_id: string; status: string }>('select queue, run_id, status from bastion_private.task_watchdog(make_interval(secs => $1), make_interval(secs => $2))', [
      STALE_AFTER_SECONDS,
      RECOVERY_DELAY_SECONDS,
    ]),
  );
  if (rows.length > 0) {
    helpers.logger.warn(`recovered ${rows.length} queue tasks whose worker stopped sending heartbeats`, {
      tasks: rows.slice(0, 20).map((r) => `${r.queue}:${r.run_id}→${r.status}`),
    });
  }
};
