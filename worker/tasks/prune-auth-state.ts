/**
 * Hourly: delete expired sessions and login-throttle rows idle for 30 days
 * (bastion_private.prune_auth_state). Expired sessions are already refused
 * at authentication; this only keeps the tables small.
 */
import type { Task } from 'graphile-worker';

/** Task identifier (also the crontab entry and this file's name). */
export const PRUNE_AUTH_STATE = 'prune-auth-state';

declare global {
  namespace GraphileWorker {
    interface Tasks {
      'prune-auth-state': Record<string, unknown>;
    }
  }
}

/** The task. */
export const pruneAuthState: Task<'prune-auth-state'> = async (_payload, helpers) => {
  const { rows } = await helpers.withPgClient((c) => c.query<{ n: number }>('select bastion_private.prune_auth_state() as n'));
  const n = rows[0]?.n ?? 0;
  if (n > 0) helpers.logger.info(`pruned ${n} expired sessions and idle login-throttle rows`);
};
