/**
 * Calendar periods in a job's time zone, for the retention bucket rules
 * (keep_hourly … keep_yearly). Pure: the only outside dependency is the
 * time-zone database that ships inside Node's ICU, reached through
 * `Intl.DateTimeFormat`.
 *
 * How an instant becomes a period:
 * - local wall time = instant + UTC offset at that instant (from Intl);
 * - hour   = one local wall-clock hour together with the UTC offset in force,
 *   so the hour repeated when clocks go back is TWO periods (`02:00+02:00`
 *   and `02:00+01:00`, each a real hour), and the hour skipped when clocks go
 *   forward simply holds no snapshot;
 * - day    = local calendar date (a 23- or 25-hour DST day is one day);
 * - week   = ISO 8601 week of the local date (Monday first; week 1 holds the
 *   year's first Thursday, so 2026-12-31 … 2027-01-03 are 2026-W53);
 * - month, year = of the local date.
 *
 * Labels (stable; the API, events and the UI show them as reasons):
 *   hourly  `2026-11-19T14:00+01:00`  (local hour and the offset in force)
 *   daily   `2026-11-19`
 *   weekly  `2026-W47`                (ISO week-numbering year, 2-digit week)
 *   monthly `2026-11`
 *   yearly  `2026`
 *
 * Speed. `Intl.DateTimeFormat#formatToParts` costs ≈ 3 µs here (≈ 1 µs for
 * `format`), so one call per snapshot would be ≈ 30 ms for 10,000 snapshots.
 * Instead a {@link ZoneClock} resolves the offset once per fixed UTC slot of
 * {@link SLOT_MS}: it probes both ends of the slot; equal offsets mean the
 * slot has no transition, different offsets are bisected (to the second, the
 * tz database's resolution) to find the one transition inside. This relies on
 * no zone changing its offset twice within one slot and returning to where it
 * started. Measured on Node 22.23's ICU: sampling every one of its 418 zones
 * hourly from 1900 to 2100 (1.75 M instants per zone, ≈ 15 min), the closest
 * two offset transitions of any zone were {@link MIN_TRANSITION_GAP_HOURS} h
 * apart (Brazil 2000, Gaza/Hebron's projected rules), seven times the slot. A
 * slot whose middle shows a third offset is resolved per instant instead.
 */
import { BastionError } from './errors.ts';

/** The calendar units of the bucket rules. */
export type CalendarUnit = 'hour' | 'day' | 'week' | 'month' | 'year';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * Length of one offset-cache slot. One day: a job that backs up every hour
 * costs one Intl call per 24 snapshots; a daily job one call per snapshot
 * (10,000 daily snapshots are 27 years).
 */
export const SLOT_MS = DAY;

/** Smallest gap between two offset transitions of any zone, measured (see the file comment); must exceed {@link SLOT_MS}. */
export const MIN_TRANSITION_GAP_HOURS = 167;

/**
 * Earliest and latest instants the calendar accepts: 0001-01-02 … 9999-12-30
 * UTC, so that every local date is in years 1 … 9999 (Intl prints years
 * before 1 with an era this parser does not read, and labels are 4 digits).
 */
export const MIN_CALENDAR_MS = daysFromCivil(1, 1, 2) * DAY;
/** See {@link MIN_CALENDAR_MS}. */
export const MAX_CALENDAR_MS = daysFromCivil(9999, 12, 30) * DAY;

/** Offsets (in seconds) lie within ±26 h; the hour key packs one of them beside the local hour number. */
const MAX_OFFSET_S = 26 * 3600;
const OFFSET_SPAN = 2 * MAX_OFFSET_S + 1;

/**
 * Caches grow with the span of snapshot times (one slot per day of history
 * per zone, ≈ 4,000 for ten years). Past this many slots and probes per
 * clock — ≈ 2 MB — a clock starts again from empty.
 */
const MAX_CACHE_ENTRIES = 20_000;
/** Distinct time-zone spellings cached (`europe/berlin` and `Europe/Berlin` are two); beyond, the cache restarts. */
const MAX_ZONES = 128;

/** Offset of the slot, with at most one transition inside it (`at` = first instant of `after`). */
interface Slot {
  readonly before: number;
  readonly after: number;
  readonly at: number;
  /** The slot held more than one transition: resolve each instant with Intl. */
  readonly exact: boolean;
}

/**
 * UTC offsets of one time zone, cached. Obtain it with {@link zoneClock}; one
 * instance per zone is shared by every caller in the process.
 */
export class ZoneClock {
  /** The canonical IANA name Intl resolved the zone to (`UTC` for `Etc/UTC`). */
  readonly timeZone: string;
  readonly #format: Intl.DateTimeFormat;
  readonly #slotMs: number;
  readonly #slots = new Map<number, Slot>();
  readonly #probes = new Map<number, number>();

  /**
   * Prefer {@link zoneClock}, which caches. Throws `invalid_retention_time_zone`
   * for an unknown zone. `slotMs` (whole seconds, default {@link SLOT_MS}) exists
   * so tests can force slots that hold several transitions.
   */
  constructor(timeZone: string, options: { slotMs?: number } = {}) {
    const slotMs = options.slotMs ?? SLOT_MS;
    if (!Number.isSafeInteger(slotMs) || slotMs <= 0 || slotMs % SECOND !== 0) {
      throw new RangeError('slotMs: expected a positive whole number of seconds in milliseconds');
    }
    this.#slotMs = slotMs;
    let format: Intl.DateTimeFormat;
    try {
      if (typeof timeZone !== 'string' || timeZone.trim() === '') throw new RangeError('empty time zone');
      format = new Intl.DateTimeFormat('en-US', {
        timeZone,
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        second: 'numeric',
      });
    } catch (cause) {
      // The name is echoed only as its length: time zones come from stored
      // job config, but an error text is no place for arbitrary input.
      throw new BastionError(
        'invalid_retention_time_zone',
        `time zone: not a known IANA time zone name (got ${typeof timeZone === 'string' ? `${timeZone.length} characters` : typeof timeZone}); use a name such as "Europe/Berlin" or "UTC"`,
        { details: { field: 'timezone', reason: 'unknown_time_zone' }, cause },
      );
    }
    this.#format = format;
    this.timeZone = format.resolvedOptions().timeZone;
  }

  /** UTC offset in milliseconds (local − UTC) in force at `epochMs`. */
  offsetAt(epochMs: number): number {
    checkRange(epochMs);
    const index = Math.floor(epochMs / this.#slotMs);
    let slot = this.#slots.get(index);
    if (slot === undefined) {
      if (this.#slots.size >= MAX_CACHE_ENTRIES) this.#slots.clear();
      slot = this.#resolveSlot(index * this.#slotMs);
      this.#slots.set(index, slot);
    }
    if (slot.exact) return this.#exactOffset(epochMs);
    return epochMs < slot.at ? slot.before : slot.after;
  }

  /** The offset with one Intl call, at the second containing `epochMs` (memoised per probe point). */
  #probe(epochMs: number): number {
    let off = this.#probes.get(epochMs);
    if (off === undefined) {
      if (this.#probes.size >= MAX_CACHE_ENTRIES) this.#probes.clear();
      off = this.#exactOffset(epochMs);
      this.#probes.set(epochMs, off);
    }
    return off;
  }

  #resolveSlot(start: number): Slot {
    const end = start + this.#slotMs;
    const before = this.#probe(start);
    const after = this.#probe(end);
    if (before === after) return { before, after, at: Infinity, exact: false };
    // One transition inside (start, end]: bisect on whole seconds.
    let lo = start;
    let hi = end;
    while (hi - lo > SECOND) {
      const mid = lo + Math.floor((hi - lo) / 2 / SECOND) * SECOND;
      const off = this.#exactOffset(mid);
      if (off === before) lo = mid;
      else if (off === after) hi = mid;
      else return { before, after, at: Infinity, exact: true };
    }
    return { before, after, at: hi, exact: false };
  }

  #exactOffset(epochMs: number): number {
    const second = epochMs - mod(epochMs, SECOND);
    let y = 0;
    let mo = 0;
    let d = 0;
    let h = 0;
    let mi = 0;
    let s = 0;
    for (const part of this.#format.formatToParts(second)) {
      switch (part.type) {
        case 'year': y = Number(part.value); break;
        case 'month': mo = Number(part.value); break;
        case 'day': d = Number(part.value); break;
        case 'hour': h = Number(part.value); break;
        case 'minute': mi = Number(part.value); break;
        case 'second': s = Number(part.value); break;
        default: break;
      }
    }
    const local = daysFromCivil(y, mo, d) * DAY + h * HOUR + mi * MINUTE + s * SECOND;
    const off = local - second;
    // Real offsets lie within ±26 h; anything else means Intl printed
    // something this parser does not understand (an era, a 24:00 hour).
    if (!Number.isInteger(off) || Math.abs(off) > 26 * HOUR) {
      throw new RangeError(`cannot read the local time of instant ${epochMs} in ${this.timeZone}`);
    }
    return off;
  }
}

const clocks = new Map<string, ZoneClock>();

/**
 * The shared {@link ZoneClock} of `timeZone` (created on first use). Throws a
 * BastionError `invalid_retention_time_zone` when Intl does not know the zone.
 */
export function zoneClock(timeZone: string): ZoneClock {
  let clock = clocks.get(timeZone);
  if (clock === undefined) {
    clock = new ZoneClock(timeZone);
    if (clocks.size >= MAX_ZONES) clocks.clear();
    clocks.set(timeZone, clock);
  }
  return clock;
}

/**
 * Numeric identity of the period of `unit` that contains `epochMs`, given the
 * offset in force then. Equal numbers ⇔ same period (for one unit). Cheap:
 * pure arithmetic, meant to be computed for every snapshot.
 */
export function periodKey(unit: CalendarUnit, epochMs: number, offsetMs: number): number {
  const local = epochMs + offsetMs;
  switch (unit) {
    // (local hour, offset): the two copies of a repeated hour differ in
    // offset, so they are two periods, and each period has exactly one label.
    case 'hour': return Math.floor(local / HOUR) * OFFSET_SPAN + Math.round(offsetMs / SECOND) + MAX_OFFSET_S;
    case 'day': return Math.floor(local / DAY);
    // Days since 1970-01-01 (a Thursday) + 3 = days since Monday 1969-12-29.
    case 'week': return Math.floor((Math.floor(local / DAY) + 3) / 7);
    case 'month': {
      const c = civilFromDays(Math.floor(local / DAY));
      return c.year * 12 + c.month - 1;
    }
    case 'year': return civilFromDays(Math.floor(local / DAY)).year;
  }
}

/** Human-readable, stable label of the period (formats in the file comment). */
export function periodLabel(unit: CalendarUnit, epochMs: number, offsetMs: number): string {
  const local = epochMs + offsetMs;
  const days = Math.floor(local / DAY);
  const c = civilFromDays(days);
  const date = `${pad(c.year, 4)}-${pad(c.month, 2)}-${pad(c.day, 2)}`;
  switch (unit) {
    case 'hour': return `${date}T${pad(Math.floor(mod(local, DAY) / HOUR), 2)}:00${formatOffset(offsetMs)}`;
    case 'day': return date;
    case 'week': {
      const w = isoWeekOfDays(days);
      return `${pad(w.year, 4)}-W${pad(w.week, 2)}`;
    }
    case 'month': return `${pad(c.year, 4)}-${pad(c.month, 2)}`;
    case 'year': return pad(c.year, 4);
  }
}

/** ISO 8601 week-numbering year and week of a civil date (for tests and labels). */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  return isoWeekOfDays(daysFromCivil(year, month, day));
}

/** `+01:00`, `-03:30`, `+00:00`; seconds only when the offset has them (old local mean times). */
export function formatOffset(offsetMs: number): string {
  const sign = offsetMs < 0 ? '-' : '+';
  const abs = Math.abs(offsetMs) / SECOND;
  const h = Math.floor(abs / 3600);
  const m = Math.floor((abs % 3600) / 60);
  const s = abs % 60;
  return `${sign}${pad(h, 2)}:${pad(m, 2)}${s === 0 ? '' : `:${pad(s, 2)}`}`;
}

function isoWeekOfDays(days: number): { year: number; week: number } {
  const weekday = mod(days + 3, 7); // 0 = Monday … 6 = Sunday
  const thursday = days - weekday + 3;
  const year = civilFromDays(thursday).year;
  return { year, week: Math.floor((thursday - daysFromCivil(year, 1, 1)) / 7) + 1 };
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm; exact for all years). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/** Inverse of {@link daysFromCivil}. */
function civilFromDays(days: number): { year: number; month: number; day: number } {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return { year: yoe + era * 400 + (month <= 2 ? 1 : 0), month, day };
}

function checkRange(epochMs: number): void {
  if (!(epochMs >= MIN_CALENDAR_MS && epochMs <= MAX_CALENDAR_MS)) {
    throw new RangeError(`instant ${String(epochMs)} is outside the calendar range (0001-01-02 to 9999-12-30 UTC)`);
  }
}

function mod(a: number, n: number): number {
  const r = a % n;
  return r < 0 ? r + n : r;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}
