/**
 * Job schedules: 5-field cron expressions (or `@daily`, `@hourly`, …)
 * evaluated in the job's IANA time zone, with croner doing the calendar work
 * (DST included: a fixed-time job such as `30 2 * * *` runs once at the first
 * valid time after a spring-forward gap and once on a fall-back night; an
 * interval job such as `*\/30 * * * *` skips the gap and runs on both
 * occurrences of a repeated half hour).
 *
 * Pure: no clock is read here; callers pass `now`.
 *
 * Catch-up policy (worker/tasks/schedule-runs.ts): each scheduler tick runs
 * only the LATEST slot at or before now, and only if it is later than the
 * job's `schedule_cursor`. After downtime a job therefore runs once for
 * everything it missed, not once per missed slot — a backup taken now covers
 * the missed ones, and a burst of identical backups would only queue up.
 */
import { Cron } from 'croner';
import { BastionError } from './errors.ts';

/** Longest schedule string (the jobs table's CHECK). */
export const MAX_SCHEDULE_LENGTH = 200;
/** Longest time zone name (the jobs table's CHECK). */
export const MAX_TIMEZONE_LENGTH = 64;

/** The nicknames croner understands, which the SQL shape check accepts too. */
export const SCHEDULE_NICKNAMES = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly'] as const;

/**
 * True when `tz` is a time zone both Intl (croner, retention buckets) and,
 * by convention, PostgreSQL know. PostgreSQL's own check happens in
 * bastion.create_job (pg_timezone_names).
 */
export function isKnownTimeZone(tz: string): boolean {
  if (typeof tz !== 'string' || tz.length === 0 || tz.length > MAX_TIMEZONE_LENGTH || /[^A-Za-z0-9/_+-]/.test(tz)) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** Throw `invalid_timezone` naming `field` unless {@link isKnownTimeZone}. */
export function checkTimeZone(tz: string, field = 'schedule_timezone'): void {
  if (!isKnownTimeZone(tz)) {
    throw new BastionError('invalid_timezone', `${field}: ${JSON.stringify(String(tz).slice(0, 80))} is not an IANA time zone (e.g. Europe/Berlin, UTC)`, {
      details: { field, reason: 'unknown_time_zone' },
    });
  }
}

function scheduleError(reason: string, message: string): BastionError {
  return new BastionError('invalid_schedule', `schedule: ${message}`, { details: { field: 'schedule', reason } });
}

/**
 * Parse and check a schedule in a time zone: 5 fields (minute precision; the
 * scheduler ticks once a minute) or a nickname, at most 200 characters, and
 * at least one future slot (`0 0 31 2 *` never fires and is refused).
 * Throws `invalid_schedule` or `invalid_timezone` naming the field.
 */
export function parseSchedule(schedule: string, timezone: string, now: Date = new Date()): Cron {
  checkTimeZone(timezone);
  if (typeof schedule !== 'string' || schedule.trim() === '') throw scheduleError('empty', 'must not be empty (leave it out for manual-only jobs)');
  if (schedule.length > MAX_SCHEDULE_LENGTH) throw scheduleError('too_long', `must be at most ${MAX_SCHEDULE_LENGTH} characters`);
  if (/[\u0000-\u001f\u007f]/.test(schedule)) throw scheduleError('control_characters', 'must not contain control characters');
  const text = schedule.trim().replace(/\s+/g, ' ');
  if (text.startsWith('@') && !(SCHEDULE_NICKNAMES as readonly string[]).includes(text.toLowerCase())) {
    throw scheduleError('unknown_nickname', `unknown nickname ${JSON.stringify(text)}; use one of ${SCHEDULE_NICKNAMES.join(', ')}`);
  }
  let cron: Cron;
  try {
    cron = new Cron(text.toLowerCase().startsWith('@') ? text.toLowerCase() : text, { paused: true, timezone, mode: '5-part' });
  } catch (e) {
    throw scheduleError('invalid_cron', `${JSON.stringify(text)} is not a 5-field cron expression (minute hour day-of-month month day-of-week): ${(e as Error).message.replace(/^CronPattern: /, '')}`);
  }
  if (cron.nextRun(now) === null) throw scheduleError('never_fires', `${JSON.stringify(text)} never fires`);
  return cron;
}

/** The latest slot at or before `now` (whole seconds), or null when there is none. */
export function latestSlot(cron: Cron, now: Date): Date | null {
  // previousRuns includes a run earlier in the same second as the reference;
  // ask from the next second so a tick at exactly hh:mm:00.000 sees hh:mm.
  const ref = new Date(Math.floor(now.getTime() / 1000) * 1000 + 999);
  return cron.previousRuns(1, ref)[0] ?? null;
}

/**
 * The slot a scheduler tick at `now` should enqueue for a job whose cursor is
 * `cursor` (the last enqueued slot, or when the schedule was set): the latest
 * slot at or before now when it is after the cursor, else null.
 */
export function dueSlot(cron: Cron, now: Date, cursor: Date): Date | null {
  const slot = latestSlot(cron, now);
  return slot !== null && slot.getTime() > cursor.getTime() ? slot : null;
}

/** The next `n` slots after `from` (for showing a schedule to a person). */
export function nextSlots(cron: Cron, from: Date, n: number): Date[] {
  return cron.nextRuns(n, from);
}
