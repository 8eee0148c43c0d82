/**
 * The retention selection: given a job's present snapshots and its policy,
 * decide for every snapshot whether retention keeps it, deletes it now, or
 * would delete it but a safety limit holds it back this time. Preview, apply
 * and the hourly tick all call {@link selectRetention}, so what an operator
 * previews is exactly what the tick does. Pure: no clock, no database.
 *
 * Rules (issue 5; DESIGN §7). Only present snapshots are passed in.
 * - Pinned snapshots (unexpired pins) are outside retention: never deleted and
 *   invisible to every rule and floor below (the Rust reference counted them
 *   toward keep_last; the seeds and DESIGN say "present and not pinned").
 *   The "universe" below is the present, unpinned snapshots, newest first by
 *   (ended_at desc, run_id desc). run_ids compare as JS strings, which for
 *   canonical lower-case UUIDs is PostgreSQL's uuid order; ended_at compares
 *   in milliseconds (a Date), so two snapshots within one millisecond are
 *   ordered by run_id even where timestamptz's microseconds differ.
 * - keep_last N: the first N of the universe.
 * - keep_days D: every snapshot with ended_at ≥ reference − D × 86,400 s
 *   (inclusive; exact 24-hour days as in the seeds, not calendar days). The
 *   reference is `now`, or with age_reference `newest` the newest snapshot of
 *   the universe, so a job that stopped producing backups keeps its history.
 * - keep_hourly/daily/weekly/monthly/yearly N: walking the universe newest
 *   first, the newest snapshot of each of the N most recent periods that hold
 *   a snapshot (periods in the job's time zone: see retention-calendar.ts).
 * - Leased snapshots (a restore or verify is reading them) are kept. They are
 *   part of the universe, so they count toward every rule like any other.
 * Keep set = union of the above. Then two floors, which rescue snapshots the
 * rules did not keep:
 * - min_keep M: if fewer than M universe snapshots are kept, the newest
 *   not-yet-kept ones are kept until M are (or the universe is exhausted).
 *   It is a floor on the count, not a second keep_last: when the rules
 *   already keep M or more it keeps nothing more.
 * - last_snapshot: an enabled policy always keeps the newest universe
 *   snapshot, so a job never loses its latest backup to retention (it only
 *   matters for keep_days with age_reference `now` on a job that stopped).
 * Reasons. A kept snapshot lists every reason that keeps it, in this order:
 * `pinned`, `leased`, `keep_last`, `keep_days`, `hourly:<label>`,
 * `daily:<label>`, `weekly:<label>`, `monthly:<label>`, `yearly:<label>`;
 * the floors `min_keep` and `last_snapshot` appear only on snapshots no rule
 * or lease kept (they are what keeps them). A disabled policy keeps everything
 * with `retention_disabled` (plus `pinned` / `leased` where they apply).
 * Delete candidates carry no reason; those held back by a limit carry the
 * limit that bound: `max_delete_per_tick` and/or `max_delete_per_day`.
 *
 * Limits. allowed = min(max_delete_per_tick, max(0, max_delete_per_day −
 * already_enqueued_today)). The OLDEST `allowed` candidates become `delete`
 * and the newer rest `skipped_by_limit`. The Rust reference cut newest first;
 * we cut oldest first because (1) when a policy is tightened by mistake, the
 * snapshots just outside the keep set — the recent ones an operator is most
 * likely to restore — survive the longest while the operator notices, and
 * (2) when backups outpace the daily limit, newest-first would delete the
 * freshly expired snapshots every day and never reach the oldest ones, while
 * oldest-first drains the backlog in age order. In steady state (candidates ≤
 * allowed) both orders delete the same set.
 */
import { BastionError } from './errors.ts';
import { MAX_CALENDAR_MS, MIN_CALENDAR_MS, periodKey, periodLabel, zoneClock, type CalendarUnit } from './retention-calendar.ts';
import { policyHash, retentionPolicySchema, type RetentionPolicy } from './retention-policy.ts';

const DAY_MS = 86_400_000;

/** One present snapshot of the job, as the selection needs it. */
export interface RetentionSnapshot {
  run_id: string;
  ended_at: Date;
  /** An unexpired pin (the caller evaluates pin_expires_at against `now`). */
  pinned: boolean;
  /** Held by a running restore, verify or relay (snapshot_leases). */
  leased: boolean;
  /** Bytes of source data the snapshot holds (informational). */
  source_bytes?: number | null;
  /** Bytes stored on the target; deleting the snapshot frees these. */
  transfer_bytes?: number | null;
}

/** Input of {@link selectRetention}. */
export interface RetentionSelectInput {
  policy: RetentionPolicy;
  /** The job's present snapshots, in any order; run_ids must be distinct. */
  snapshots: readonly RetentionSnapshot[];
  now: Date;
  /** The job's IANA time zone (calendar periods). */
  timeZone: string;
  /** Retention deletes already enqueued for this job since 00:00 UTC today. */
  already_enqueued_today: number;
}

/** What happens to one snapshot. */
export type RetentionDecisionKind = 'keep' | 'delete' | 'skipped_by_limit';

/** A calendar-bucket reason, e.g. `daily:2026-11-19`, `weekly:2026-W47`. */
export type RetentionBucketReason =
  | `hourly:${string}`
  | `daily:${string}`
  | `weekly:${string}`
  | `monthly:${string}`
  | `yearly:${string}`;

/** Why a snapshot is kept, or which limit held its deletion back. */
export type RetentionReason =
  | 'retention_disabled'
  | 'pinned'
  | 'leased'
  | 'keep_last'
  | 'keep_days'
  | RetentionBucketReason
  | 'min_keep'
  | 'last_snapshot'
  | 'max_delete_per_tick'
  | 'max_delete_per_day';

/** The decision about one snapshot. */
export interface RetentionDecision {
  run_id: string;
  ended_at: Date;
  pinned: boolean;
  leased: boolean;
  source_bytes: number | null;
  transfer_bytes: number | null;
  decision: RetentionDecisionKind;
  /**
   * Keep: every reason that keeps it. Skipped: the binding limit(s). Delete:
   * empty. Lists without a bucket label are frozen and shared between
   * decisions (with 100,000 snapshots, one array each cost about half the
   * selection's time, most of it in GC).
   */
  reasons: readonly RetentionReason[];
}

/** Counts over a selection. */
export interface RetentionTotals {
  snapshots: number;
  keep: number;
  delete: number;
  skipped: number;
  pinned: number;
  leased: number;
  /** Sum of transfer_bytes over `delete` decisions (a lower bound when some sizes are unknown). */
  bytes_freed: number;
  /** Sum of transfer_bytes over `skipped_by_limit` decisions. */
  bytes_skipped: number;
  /** `delete` and `skipped_by_limit` decisions whose transfer_bytes is unknown. */
  unknown_size: number;
}

/** The safety limits as they applied to this selection. */
export interface RetentionLimits {
  max_delete_per_tick: number;
  max_delete_per_day: number;
  already_enqueued_today: number;
  /** max(0, max_delete_per_day − already_enqueued_today). */
  day_remaining: number;
  /** How many candidates may be deleted now. */
  allowed: number;
  /** The limit(s) that held candidates back; empty when nothing was skipped. */
  binding: ('max_delete_per_tick' | 'max_delete_per_day')[];
}

/** Result of {@link selectRetention}. */
export interface RetentionSelection {
  /** The validated policy (defaults filled in). */
  policy: RetentionPolicy;
  /** policyHash(policy): retention events record it. */
  policy_hash: string;
  /** The canonical zone name the calendar periods used. */
  time_zone: string;
  /** The instant keep_days counts back from (`now`, or the newest unpinned snapshot; null if there is none). */
  age_reference_at: Date | null;
  /** Oldest ended_at keep_days keeps (inclusive); null when keep_days is off or nothing to count from. */
  keep_days_cutoff: Date | null;
  /** Every snapshot, newest first by (ended_at desc, run_id desc). */
  decisions: RetentionDecision[];
  totals: RetentionTotals;
  limits: RetentionLimits;
}

// Reason flags, in the order reasons are listed.
const PINNED = 1 << 0;
const LEASED = 1 << 1;
const KEEP_LAST = 1 << 2;
const KEEP_DAYS = 1 << 3;
const MIN_KEEP = 1 << 9;
const LAST_SNAPSHOT = 1 << 10;

/** The bucket rules: policy field, calendar unit, reason prefix, flag. */
const BUCKETS = [
  { rule: 'keep_hourly', unit: 'hour', prefix: 'hourly', flag: 1 << 4 },
  { rule: 'keep_daily', unit: 'day', prefix: 'daily', flag: 1 << 5 },
  { rule: 'keep_weekly', unit: 'week', prefix: 'weekly', flag: 1 << 6 },
  { rule: 'keep_monthly', unit: 'month', prefix: 'monthly', flag: 1 << 7 },
  { rule: 'keep_yearly', unit: 'year', prefix: 'yearly', flag: 1 << 8 },
] as const satisfies readonly { rule: keyof RetentionPolicy; unit: CalendarUnit; prefix: string; flag: number }[];

/** Not a state of the snapshot: marks the reason list of a disabled policy. */
const DISABLED = 1 << 11;
const NO_REASONS: readonly RetentionReason[] = Object.freeze([]);

/** Flags that mean "kept" for an unpinned snapshot. */
const KEPT = LEASED | KEEP_LAST | KEEP_DAYS | BUCKETS.reduce((m, b) => m | b.flag, 0) | MIN_KEEP | LAST_SNAPSHOT;

interface Item {
  readonly s: RetentionSnapshot;
  readonly t: number;
  flags: number;
  /** Bucket labels in BUCKETS order, only for the buckets that picked it. */
  labels: RetentionBucketReason[] | null;
}

/**
 * Decide every snapshot's fate under `input.policy` (rules in the file
 * comment). Throws `invalid_retention_policy` for a policy that does not
 * validate, `invalid_retention_time_zone` for an unknown zone, and a
 * TypeError/RangeError naming the field for malformed snapshot input (a bug
 * in the caller, not a client error).
 */
export function selectRetention(input: RetentionSelectInput): RetentionSelection {
  const policy = validPolicy(input.policy);
  const nowMs = validInstant(input.now, 'now');
  const already = input.already_enqueued_today;
  if (!Number.isSafeInteger(already) || already < 0) {
    throw new RangeError('already_enqueued_today: expected an integer ≥ 0');
  }
  const clock = zoneClock(input.timeZone);
  const items = toItems(input.snapshots);
  items.sort(newestFirst);

  const dayRemaining = Math.max(0, policy.max_delete_per_day - already);
  const allowed = Math.min(policy.max_delete_per_tick, dayRemaining);
  const limits: RetentionLimits = {
    max_delete_per_tick: policy.max_delete_per_tick,
    max_delete_per_day: policy.max_delete_per_day,
    already_enqueued_today: already,
    day_remaining: dayRemaining,
    allowed,
    binding: [],
  };

  for (const x of items) {
    if (x.s.pinned) x.flags |= PINNED;
    if (x.s.leased) x.flags |= LEASED;
  }
  const universe = items.filter((x) => !x.s.pinned);
  const newest = universe[0];

  let ageReference: number | null = null;
  let cutoff: number | null = null;
  if (!policy.enabled) {
    ageReference = policy.age_reference === 'now' ? nowMs : (newest?.t ?? null);
  } else {
    // keep_last
    const last = Math.min(policy.keep_last, universe.length);
    for (let i = 0; i < last; i++) universe[i]!.flags |= KEEP_LAST;

    // keep_days (inclusive boundary; the universe is sorted, so stop at the first older one)
    ageReference = policy.age_reference === 'now' ? nowMs : (newest?.t ?? null);
    if (policy.keep_days > 0 && ageReference !== null) {
      cutoff = ageReference - policy.keep_days * DAY_MS;
      for (const x of universe) {
        if (x.t < cutoff) break;
        x.flags |= KEEP_DAYS;
      }
    }

    // Calendar buckets. Offsets are computed at most once per snapshot and
    // only as far as the longest bucket walk reaches.
    const offsets = new Float64Array(universe.length).fill(NaN);
    const offsetOf = (i: number): number => {
      let off = offsets[i]!;
      if (Number.isNaN(off)) {
        off = clock.offsetAt(universe[i]!.t);
        offsets[i] = off;
      }
      return off;
    };
    for (const b of BUCKETS) {
      const want = policy[b.rule];
      if (want === 0) continue;
      // A set, not "key changed since the previous snapshot": a zone that
      // turns its clock back across midnight revisits the previous date, and
      // that date must not count as a second period.
      const seen = new Set<number>();
      let previous = NaN;
      for (let i = 0; i < universe.length && seen.size < want; i++) {
        const x = universe[i]!;
        const off = offsetOf(i);
        const key = periodKey(b.unit, x.t, off);
        // most snapshots share the period of the one before: skip the set
        if (key === previous || seen.has(key)) continue;
        previous = key;
        seen.add(key);
        x.flags |= b.flag;
        (x.labels ??= []).push(`${b.prefix}:${periodLabel(b.unit, x.t, off)}` as RetentionBucketReason);
      }
    }

    // min_keep: a floor on how many universe snapshots remain.
    let kept = 0;
    for (const x of universe) if (x.flags & KEPT) kept++;
    for (const x of universe) {
      if (kept >= policy.min_keep) break;
      if (x.flags & KEPT) continue;
      x.flags |= MIN_KEEP;
      kept++;
    }

    // last_snapshot: never let retention take the newest backup.
    if (newest !== undefined && !(newest.flags & KEPT)) newest.flags |= LAST_SNAPSHOT;
  }

  // Candidates, newest first; the oldest `allowed` of them are deleted now.
  let candidates = 0;
  if (policy.enabled) for (const x of universe) if (!(x.flags & KEPT)) candidates++;
  const skipCount = Math.max(0, candidates - allowed);
  if (skipCount > 0) {
    if (policy.max_delete_per_tick <= dayRemaining) limits.binding.push('max_delete_per_tick');
    if (dayRemaining <= policy.max_delete_per_tick) limits.binding.push('max_delete_per_day');
  }
  const skipReasons: readonly RetentionReason[] = Object.freeze([...limits.binding]);
  // Reason lists without bucket labels depend on the flags alone: share them.
  const shared = new Map<number, readonly RetentionReason[]>();
  const reasonsOf = (x: Item): readonly RetentionReason[] => {
    const key = policy.enabled ? x.flags : x.flags | DISABLED;
    if (x.labels !== null) return flagReasons(key, x.labels);
    let r = shared.get(key);
    if (r === undefined) {
      r = Object.freeze(flagReasons(key, null));
      shared.set(key, r);
    }
    return r;
  };

  const totals: RetentionTotals = {
    snapshots: items.length,
    keep: 0,
    delete: 0,
    skipped: 0,
    pinned: 0,
    leased: 0,
    bytes_freed: 0,
    bytes_skipped: 0,
    unknown_size: 0,
  };
  const decisions: RetentionDecision[] = [];
  let candidateIndex = 0;
  for (let i = 0; i < items.length; i++) {
    const x = items[i]!;
    const s = x.s;
    const transfer = s.transfer_bytes ?? null;
    let decision: RetentionDecisionKind;
    let reasons: readonly RetentionReason[];
    if (!policy.enabled || x.flags & (PINNED | KEPT)) {
      decision = 'keep';
      reasons = reasonsOf(x);
    } else {
      decision = candidateIndex < skipCount ? 'skipped_by_limit' : 'delete';
      reasons = decision === 'skipped_by_limit' ? skipReasons : NO_REASONS;
      candidateIndex++;
    }
    if (s.pinned) totals.pinned++;
    if (s.leased) totals.leased++;
    if (decision === 'keep') totals.keep++;
    else {
      if (transfer === null) totals.unknown_size++;
      if (decision === 'delete') {
        totals.delete++;
        totals.bytes_freed += transfer ?? 0;
      } else {
        totals.skipped++;
        totals.bytes_skipped += transfer ?? 0;
      }
    }
    decisions.push({
      run_id: s.run_id,
      ended_at: s.ended_at,
      pinned: s.pinned,
      leased: s.leased,
      source_bytes: s.source_bytes ?? null,
      transfer_bytes: transfer,
      decision,
      reasons,
    });
  }

  return {
    policy,
    policy_hash: policyHash(policy),
    time_zone: clock.timeZone,
    age_reference_at: ageReference === null ? null : new Date(ageReference),
    keep_days_cutoff: cutoff === null ? null : new Date(cutoff),
    decisions,
    totals,
    limits,
  };
}

/**
 * Start of the UTC day that contains `now`: max_delete_per_day counts the
 * job's retention enqueue events at or after this instant (the reference's
 * `floor(now / 86400) * 86400`). Preview, apply and the tick must all use it.
 */
export function retentionDayStart(now: Date): Date {
  const t = validInstant(now, 'now');
  return new Date(t - (((t % DAY_MS) + DAY_MS) % DAY_MS));
}

/** One snapshot whose fate differs between two selections. */
export interface RetentionDiffEntry {
  run_id: string;
  ended_at: Date;
  saved: RetentionDecision;
  proposed: RetentionDecision;
}

/** What changes if the proposed policy replaces the saved one. */
export interface RetentionDiff {
  /** Kept under the saved policy, a delete candidate under the proposed one (`proposed.decision` says now or held back by a limit). Newest first. */
  newly_deleted: RetentionDiffEntry[];
  /** A delete candidate under the saved policy, kept under the proposed one (`proposed.reasons` says why). Newest first. */
  newly_kept: RetentionDiffEntry[];
  totals: {
    newly_deleted: number;
    newly_kept: number;
    /** transfer_bytes the proposed policy would free beyond the saved one (lower bound if sizes are unknown). */
    newly_deleted_bytes: number;
    newly_kept_bytes: number;
  };
}

/**
 * Compare two selections over the same snapshots (the saved policy's and a
 * proposed one's). The comparison is on intent — keep versus delete candidate
 * — so a snapshot that both policies would delete is not listed even when a
 * limit holds it back in only one of them. Throws when the two selections do
 * not cover the same run_ids (they must come from one snapshot list).
 */
export function diffSelections(saved: RetentionSelection, proposed: RetentionSelection): RetentionDiff {
  if (saved.decisions.length !== proposed.decisions.length) {
    throw new RangeError(`diffSelections: the selections cover different snapshots (${saved.decisions.length} vs ${proposed.decisions.length})`);
  }
  const byRun = new Map<string, RetentionDecision>();
  for (const d of saved.decisions) byRun.set(d.run_id, d);
  const diff: RetentionDiff = {
    newly_deleted: [],
    newly_kept: [],
    totals: { newly_deleted: 0, newly_kept: 0, newly_deleted_bytes: 0, newly_kept_bytes: 0 },
  };
  // proposed.decisions is already newest first.
  for (const p of proposed.decisions) {
    const s = byRun.get(p.run_id);
    if (s === undefined) throw new RangeError('diffSelections: the selections cover different snapshots (a run_id is missing from the saved one)');
    const wasKept = s.decision === 'keep';
    const isKept = p.decision === 'keep';
    if (wasKept === isKept) continue;
    const entry: RetentionDiffEntry = { run_id: p.run_id, ended_at: p.ended_at, saved: s, proposed: p };
    if (wasKept) {
      diff.newly_deleted.push(entry);
      diff.totals.newly_deleted_bytes += p.transfer_bytes ?? 0;
    } else {
      diff.newly_kept.push(entry);
      diff.totals.newly_kept_bytes += p.transfer_bytes ?? 0;
    }
  }
  diff.totals.newly_deleted = diff.newly_deleted.length;
  diff.totals.newly_kept = diff.newly_kept.length;
  return diff;
}

function flagReasons(f: number, labels: readonly RetentionBucketReason[] | null): RetentionReason[] {
  const r: RetentionReason[] = [];
  if (f & PINNED) r.push('pinned');
  if (f & LEASED) r.push('leased');
  if (f & KEEP_LAST) r.push('keep_last');
  if (f & KEEP_DAYS) r.push('keep_days');
  if (labels !== null) for (const l of labels) r.push(l);
  if (f & MIN_KEEP) r.push('min_keep');
  if (f & LAST_SNAPSHOT) r.push('last_snapshot');
  if (f & DISABLED) r.push('retention_disabled');
  return r;
}

function newestFirst(a: Item, b: Item): number {
  if (a.t !== b.t) return b.t - a.t;
  const x = a.s.run_id;
  const y = b.s.run_id;
  return x < y ? 1 : x > y ? -1 : 0;
}

function validPolicy(policy: RetentionPolicy): RetentionPolicy {
  const parsed = retentionPolicySchema.safeParse(policy);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = issue === undefined || issue.path.length === 0 ? 'retention' : `retention.${issue.path.join('.')}`;
  throw new BastionError('invalid_retention_policy', `${path}: ${issue?.message ?? 'invalid'}`, {
    details: { field: path, reason: 'invalid_policy' },
    cause: parsed.error,
  });
}

function validInstant(value: unknown, field: string): number {
  if (!(value instanceof Date)) throw new TypeError(`${field}: expected a Date`);
  const t = value.getTime();
  if (!(t >= MIN_CALENDAR_MS && t <= MAX_CALENDAR_MS)) {
    throw new RangeError(`${field}: expected a valid date between years 1 and 9999`);
  }
  return t;
}

const BYTES_EXPECTED = 'expected a non-negative safe integer or null (convert bigint text from the database first)';

function isBytes(value: unknown): boolean {
  return value === undefined || value === null || (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0);
}

function toItems(snapshots: readonly RetentionSnapshot[]): Item[] {
  if (!Array.isArray(snapshots)) throw new TypeError('snapshots: expected an array');
  // push, not new Array(n): V8 gives a preallocated array of 100,000 holes slow dictionary storage
  const items: Item[] = [];
  const runIds = new Set<string>();
  for (let i = 0; i < snapshots.length; i++) {
    const s = snapshots[i];
    if (typeof s !== 'object' || s === null) throw new TypeError(`snapshots[${i}]: expected an object`);
    if (typeof s.run_id !== 'string' || s.run_id === '') throw new TypeError(`snapshots[${i}].run_id: expected a non-empty string`);
    if (runIds.has(s.run_id)) throw new RangeError(`snapshots[${i}].run_id: duplicate run_id`);
    runIds.add(s.run_id);
    const t = s.ended_at instanceof Date ? s.ended_at.getTime() : NaN;
    if (!(t >= MIN_CALENDAR_MS && t <= MAX_CALENDAR_MS)) validInstant(s.ended_at, `snapshots[${i}].ended_at`);
    if (typeof s.pinned !== 'boolean') throw new TypeError(`snapshots[${i}].pinned: expected a boolean`);
    if (typeof s.leased !== 'boolean') throw new TypeError(`snapshots[${i}].leased: expected a boolean`);
    if (!isBytes(s.source_bytes)) throw new TypeError(`snapshots[${i}].source_bytes: ${BYTES_EXPECTED}`);
    if (!isBytes(s.transfer_bytes)) throw new TypeError(`snapshots[${i}].transfer_bytes: ${BYTES_EXPECTED}`);
    items.push({ s, t, flags: 0, labels: null });
  }
  return items;
}
