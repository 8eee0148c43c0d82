/**
 * The scheduler (crontab, every minute): for each job that is not archived
 * and has a schedule, create the run of its latest due slot
 * (core/cron-schedule.ts: the latest slot at or before now, if after the
 * job's schedule_cursor). bastion.schedule_run moves the cursor under the job
 * row lock and inserts with `on conflict do nothing` on the (job_id,
 * scheduled_for) unique index, so any number of worker processes running this
 * task for the same tick create one run per slot.
 *
 * "Now" is the tick's own time (`_cron.ts` in the payload graphile-worker
 * gives crontab jobs), so a tick that runs late still schedules the slot it
 * was for; `now` in the payload overrides it (tests, manual runs).
 */
import type { Task } from 'graphile-worker';
import type pg from 'pg';
import { dueSlot, parseSchedule } from '../../core/cron-schedule.ts';
import { listScheduledJobs } from '../../db/queries/jobs.ts';
import { scheduleRun, type RunRow } from '../../db/queries/runs.ts';

/** Task identifier (also the crontab entry and this file's name). */
export const SCHEDULE_RUNS = 'schedule-runs';

declare global {
  namespace GraphileWorker {
    interface Tasks {
      'schedule-runs': { now?: string; _cron?: { ts: string; backfilled?: boolean } };
    }
  }
}

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** What one tick did. */
export interface ScheduleResult {
  /** Runs created (queued or rejected by the overlap policy). */
  created: RunRow[];
  /** Jobs whose schedule or time zone no longer parses (edited by hand), or whose run could not be created; logged and skipped. */
  invalid: number;
}

/** Create the runs due at `now`. */
export async function scheduleDueRuns(db: Queryable, now: Date, onInvalid?: (jobId: string, message: string) => void): Promise<ScheduleResult> {
  const result: ScheduleResult = { created: [], invalid: 0 };
  for (const job of await listScheduledJobs(db)) {
    let slot: Date | null;
    try {
      slot = dueSlot(parseSchedule(job.schedule, job.schedule_timezone, now), now, job.schedule_cursor);
    } catch (err) {
      result.invalid++;
      onInvalid?.(job.id, (err as Error).message);
      continue;
    }
    if (slot === null) continue;
    try {
      const run = await scheduleRun(db, job.id, slot);
      if (run) result.created.push(run);
    } catch (err) {
      // One job's problem (e.g. this worker's clock far ahead of the database's) must not hold back the others.
      result.invalid++;
      onInvalid?.(job.id, (err as Error).message);
    }
  }
  return result;
}

function tickTime(payload: { now?: unknown; _cron?: { ts?: unknown } } | null | undefined): Date {
  for (const v of [payload?.now, payload?._cron?.ts]) {
    if (typeof v === 'string') {
      const d = new Date(v);
      if (!Number.isNaN(d.getTime())) return d;
    }
  }
  return new Date();
}

/** The graphile-worker task. */
export const scheduleRuns: Task<'schedule-runs'> = async (payload, helpers) => {
  const now = tickTime(payload);
  const r = await helpers.withPgClient((client) =>
    scheduleDueRuns(client, now, (jobId, message) => helpers.logger.warn(`schedule-runs: job ${jobId} was skipped: ${message}`)),
  );
  if (r.created.length > 0) helpers.logger.info(`scheduled ${r.created.length} run(s) for ${now.toISOString()}`);
};
