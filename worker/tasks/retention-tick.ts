/**
 * The retention tick as a crontab task (every minute; the work follows
 * settings.retention_schedule, hourly by default — see
 * engine/retention/retention-tick.ts for rounds, batching and why any number
 * of worker processes may run it at once).
 *
 * The round comes from the crontab slot graphile-worker puts in the payload
 * (`_cron.ts`), so a tick that starts late still works for the round it was
 * meant for; `now` in the payload overrides it (a manual `add_job`). The
 * selection itself runs at the database's current time.
 */
import type { Task } from 'graphile-worker';
import { runRetentionTick } from '../../engine/retention/retention-tick.ts';

/** Task identifier (also the crontab entry and this file's name). */
export const RETENTION_TICK = 'retention-tick';

declare global {
  namespace GraphileWorker {
    interface Tasks {
      'retention-tick': { now?: string; _cron?: { ts: string; backfilled?: boolean } };
    }
  }
}

function tickTime(payload: { now?: unknown; _cron?: { ts?: unknown } } | null | undefined): Date | undefined {
  for (const v of [payload?.now, payload?._cron?.ts]) {
    if (typeof v === 'string') {
      const d = new Date(v);
      if (!Number.isNaN(d.getTime())) return d;
    }
  }
  return undefined;
}

/** The graphile-worker task. */
export const retentionTick: Task<'retention-tick'> = async (payload, helpers) => {
  const now = tickTime(payload);
  // One connection for the tick, in autocommit: each batch write is its own transaction.
  const summary = await helpers.withPgClient((client) =>
    runRetentionTick(client, {
      ...(now ? { tickAt: now } : {}),
      logger: { info: (m) => helpers.logger.info(m), warn: (m) => helpers.logger.warn(m) },
      signal: helpers.abortSignal,
    }),
  );
  if (summary.jobs > 0 || summary.errors > 0) {
    helpers.logger.info(
      `retention round ${summary.round_at?.toISOString()}: ${summary.jobs} job(s), ${summary.enqueued} delete(s) queued, ${summary.skipped_by_limits} held back by limits, ${summary.skipped} refused by the re-check, ${summary.errors} error(s)`,
    );
  }
};
