/**
 * Retention as the database holds it (sql/migrations/0005_retention.sql):
 * the stored policies, the inputs the selection needs (a job's present
 * snapshots with pinned and leased flags, today's retention enqueues), the
 * atomic enqueue, the tick's candidate jobs and batch write, and the ledger.
 *
 * Reads run on the caller's connection, so a viewer's REST transaction reads
 * under row-level security and an operator's apply is refused by EXECUTE
 * grants if the role is too low. Bulk reads come back in array row mode with
 * ended_at as epoch milliseconds: at 1,000,000 rows, building a Date per
 * row in the driver and an object per row cost more than the selection.
 */
import type pg from 'pg';
import { sqlCall } from '../../core/database-error.ts';
import { BastionError } from '../../core/errors.ts';
import { isUuid } from '../../core/ids.ts';
import type { RetentionSnapshot } from '../../core/retention-select.ts';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** Most present snapshots one selection reads per job (newest first); beyond it the result says `truncated`. */
export const RETENTION_SCAN_LIMIT = 100_000;

function requireUuid(value: unknown, field: string): string {
  if (!isUuid(value)) throw new BastionError('invalid_input', `${field} must be a lower-case UUID`, { details: { field, reason: 'not_uuid' } });
  return value;
}

/** What the tick last did for a job (bastion.retention_job_state). */
export interface RetentionJobState {
  round_at: Date;
  ticked_at: Date;
  policy_hash: string | null;
  policy_source: 'job' | 'hub_default' | null;
  snapshots: number;
  truncated: boolean;
  enqueued: number;
  already_queued: number;
  skipped_by_limits: number;
  skipped: number;
  error_code: string | null;
  error: string | null;
}

/** A job's retention inputs as stored. */
export interface RetentionJobRow {
  id: string;
  name: string;
  schedule_timezone: string;
  archived_at: Date | null;
  /** spec.retention as stored (null = inherit). */
  spec_retention: unknown;
  /** settings.default_retention as stored. */
  hub_default: unknown;
  /** The stored JSON of the effective policy (the SQL enqueue compares it to detect a concurrent change). */
  effective_raw: unknown;
  state: RetentionJobState | null;
  /** The database's transaction time: the selection's `now`. */
  now: Date;
}

/** A job with its stored policies and tick state; `job_not_found` when it does not exist. */
export async function loadRetentionJob(db: Queryable, jobId: string): Promise<RetentionJobRow> {
  requireUuid(jobId, 'job_id');
  const { rows } = await db.query<RetentionJobRow>(
    `select j.id, j.name, j.schedule_timezone, j.archived_at,
            nullif(j.spec -> 'retention', 'null'::jsonb) as spec_retention,
            s.default_retention as hub_default,
            bastion_private.effective_retention(j.spec, s.default_retention) as effective_raw,
            (select to_jsonb(st) - 'job_id' from bastion.retention_job_state st where st.job_id = j.id) as state,
            now() as now
       from bastion.jobs j cross join bastion.settings s
      where j.id = $1`,
    [jobId],
  );
  const row = rows[0];
  if (!row) throw new BastionError('job_not_found', undefined, { details: { job_id: jobId } });
  return { ...row, state: reviveState(row.state) };
}

function reviveState(raw: unknown): RetentionJobState | null {
  if (raw === null || raw === undefined) return null;
  const s = raw as Record<string, unknown> & RetentionJobState;
  return { ...s, round_at: new Date(s.round_at as unknown as string), ticked_at: new Date(s.ticked_at as unknown as string) };
}

/** A job's present snapshots for the selection. */
export interface PresentSnapshots {
  snapshots: RetentionSnapshot[];
  /** More than `limit` present snapshots exist; only the newest `limit` are in `snapshots`. */
  truncated: boolean;
}

/**
 * The present snapshots of `jobIds` (at most `limit` per job, newest first),
 * with `pinned` (an unexpired pin) and `leased` (an unexpired lease) as of
 * the database's now. One query for all the jobs, plus one for the leases.
 */
export async function loadPresentSnapshots(db: Queryable, jobIds: readonly string[], limit = RETENTION_SCAN_LIMIT): Promise<Map<string, PresentSnapshots>> {
  for (const id of jobIds) requireUuid(id, 'job_id');
  const out = new Map<string, PresentSnapshots>();
  for (const id of jobIds) out.set(id, { snapshots: [], truncated: false });
  if (jobIds.length === 0) return out;
  // Leases are few (one per running restore/verify/relay): fetch them apart
  // instead of probing the lease index once per snapshot.
  const leases = await db.query<{ run_id: string }>(
    `select distinct l.run_id from bastion.snapshot_leases l
      where l.expires_at > now()
        and exists (select 1 from bastion.run_artifacts a where a.run_id = l.run_id and a.job_id = any($1::uuid[]) and a.status = 'present')`,
    [jobIds],
  );
  const leased = new Set(leases.rows.map((r) => r.run_id));
  const { rows } = await db.query<[string, string, number, boolean, number | null, number | null]>({
    text: `select j.id, a.run_id, a.t, a.pinned, a.source_bytes, a.transfer_bytes
             from unnest($1::uuid[]) j(id)
             cross join lateral (
               select a.run_id, floor(extract(epoch from a.ended_at) * 1000)::float8 as t,
                      (a.pinned_at is not null and (a.pin_expires_at is null or a.pin_expires_at > now())) as pinned,
                      a.source_bytes, a.transfer_bytes
                 from bastion.run_artifacts a
                where a.job_id = j.id and a.status = 'present'
                order by a.ended_at desc, a.run_id desc
                limit $2
             ) a`,
    values: [jobIds, limit + 1],
    rowMode: 'array',
  });
  let current: PresentSnapshots | undefined;
  let currentId = '';
  for (const r of rows) {
    if (r[0] !== currentId) {
      currentId = r[0];
      current = out.get(currentId);
    }
    current!.snapshots.push({ run_id: r[1], ended_at: new Date(r[2]), pinned: r[3], leased: leased.has(r[1]), source_bytes: r[4], transfer_bytes: r[5] });
  }
  // The lateral query read limit + 1 rows of a job to detect truncation; the
  // extra one is its oldest (row order across jobs is not promised, so sort).
  for (const entry of out.values()) {
    if (entry.snapshots.length > limit) {
      entry.snapshots.sort((a, b) => b.ended_at.getTime() - a.ended_at.getTime() || (a.run_id < b.run_id ? 1 : a.run_id > b.run_id ? -1 : 0));
      entry.snapshots.length = limit;
      entry.truncated = true;
    }
  }
  return out;
}

/** Retention enqueues of each job since `dayStart` (the per-day limit's count); jobs without any are 0. */
export async function countEnqueuedSince(db: Queryable, jobIds: readonly string[], dayStart: Date): Promise<Map<string, number>> {
  const out = new Map<string, number>(jobIds.map((id) => [id, 0]));
  if (jobIds.length === 0) return out;
  const { rows } = await db.query<{ job_id: string; n: number }>(
    `select job_id, count(*)::integer as n from bastion.retention_enqueues where job_id = any($1::uuid[]) and enqueued_at >= $2 group by job_id`,
    [jobIds, dayStart],
  );
  for (const r of rows) out.set(r.job_id, r.n);
  return out;
}

/** What the atomic enqueue did for one job. */
export interface RetentionEnqueueResult {
  job_id: string;
  /** done; for ticks also already_ticked (another worker did this round), archived, policy_changed, error. */
  status: 'done' | 'already_ticked' | 'archived' | 'policy_changed' | 'error';
  enqueued: string[];
  already_queued: string[];
  /** Candidates the recount of today's enqueues held back (beyond what the selection already held back). */
  skipped_by_limits: string[];
  /** Candidates the final re-check refused. */
  skipped: Array<{ run_id: string; reason: 'not_in_job' | 'not_present' | 'pinned' | 'leased' | 'last_snapshot' }>;
  already_enqueued_today: number;
  allowed: number;
  day_start: Date;
  error_code?: string;
  error?: string;
}

function reviveResult(raw: Record<string, unknown>): RetentionEnqueueResult {
  return {
    job_id: raw['job_id'] as string,
    status: raw['status'] as RetentionEnqueueResult['status'],
    enqueued: (raw['enqueued'] as string[] | undefined) ?? [],
    already_queued: (raw['already_queued'] as string[] | undefined) ?? [],
    skipped_by_limits: (raw['skipped_by_limits'] as string[] | undefined) ?? [],
    skipped: (raw['skipped'] as RetentionEnqueueResult['skipped'] | undefined) ?? [],
    already_enqueued_today: (raw['already_enqueued_today'] as number | undefined) ?? 0,
    allowed: (raw['allowed'] as number | undefined) ?? 0,
    day_start: new Date((raw['day_start'] as string | undefined) ?? 0),
    ...(typeof raw['error_code'] === 'string' ? { error_code: raw['error_code'] } : {}),
    ...(typeof raw['error'] === 'string' ? { error: raw['error'] } : {}),
  };
}

/** An operator's apply: the atomic enqueue of the selection's delete candidates (bastion_private.retention_apply). */
export async function callRetentionApply(
  db: Queryable,
  args: { jobId: string; policy: object; policyHash: string; policySource: 'job' | 'hub_default' | 'proposed'; runIds: readonly string[]; expectedPolicy: unknown },
): Promise<RetentionEnqueueResult> {
  const { rows } = await sqlCall(
    db.query<{ r: Record<string, unknown> }>('select bastion_private.retention_apply($1, $2::jsonb, $3, $4, $5::uuid[], $6::jsonb) as r', [
      args.jobId,
      JSON.stringify(args.policy),
      args.policyHash,
      args.policySource,
      args.runIds,
      args.expectedPolicy === null || args.expectedPolicy === undefined ? null : JSON.stringify(args.expectedPolicy),
    ]),
  );
  return reviveResult(rows[0]!.r);
}

/** One job of a tick batch (bastion_private.retention_tick_jobs). */
export type TickItem =
  | {
      job_id: string;
      policy: object;
      policy_hash: string;
      policy_source: 'job' | 'hub_default';
      expected_policy: unknown;
      run_ids: string[];
      snapshots: number;
      truncated: boolean;
      /** Candidates the selection held back by the limits. */
      skipped_by_limits: number;
    }
  | { job_id: string; error_code: string; error: string; snapshots?: number; truncated?: boolean };

/** Write one tick batch in one statement (bastion_private.retention_tick_jobs): jobs locked in id order, all or nothing. */
export async function callTickJobs(db: Queryable, roundAt: Date, items: readonly TickItem[]): Promise<RetentionEnqueueResult[]> {
  if (items.length === 0) return [];
  const { rows } = await sqlCall(db.query<{ r: Array<Record<string, unknown>> }>('select bastion_private.retention_tick_jobs($1, $2::jsonb) as r', [roundAt, JSON.stringify(items)]));
  return rows[0]!.r.map(reviveResult);
}

/** A job the tick of a round still has to process. */
export interface TickJob {
  id: string;
  schedule_timezone: string;
  spec_retention: unknown;
  hub_default: unknown;
  effective_raw: unknown;
  /** Present snapshots, counted up to RETENTION_SCAN_LIMIT + 1 (to size batches). */
  present: number;
}

/**
 * Up to `limit` jobs after `afterId` (id order) that the round `roundAt`
 * still has to process: not archived, effective policy enabled (as stored;
 * the tick validates it), and not yet processed in this round or a later one.
 */
export async function listTickJobs(db: Queryable, roundAt: Date, afterId: string | null, limit: number): Promise<TickJob[]> {
  const { rows } = await db.query<TickJob>(
    `select j.id, j.schedule_timezone, nullif(j.spec -> 'retention', 'null'::jsonb) as spec_retention, s.default_retention as hub_default,
            bastion_private.effective_retention(j.spec, s.default_retention) as effective_raw,
            (select count(*)::integer from (select 1 from bastion.run_artifacts a where a.job_id = j.id and a.status = 'present' limit $4) x) as present
       from bastion.jobs j
      cross join bastion.settings s
       left join bastion.retention_job_state st on st.job_id = j.id
      where j.archived_at is null
        and bastion_private.effective_retention(j.spec, s.default_retention) ->> 'enabled' = 'true'
        and (st.round_at is null or st.round_at < $1)
        and ($2::uuid is null or j.id > $2::uuid)
      order by j.id
      limit $3`,
    [roundAt, afterId, limit, RETENTION_SCAN_LIMIT + 1],
  );
  return rows;
}

/** The hub's retention settings. */
export interface RetentionSettings {
  default_retention: unknown;
  retention_schedule: string;
  updated_at: Date;
  updated_by: string | null;
  now: Date;
}

/** Read the hub's retention settings (every role). */
export async function getRetentionSettings(db: Queryable): Promise<RetentionSettings> {
  const { rows } = await db.query<RetentionSettings>('select default_retention, retention_schedule, updated_at, updated_by, now() as now from bastion.settings');
  return rows[0]!;
}

/** Store a job's policy (admin; NULL inherits). Validate it first (engine/retention/policy-input.ts). */
export async function setJobRetention(db: Queryable, jobId: string, policy: object | null): Promise<void> {
  requireUuid(jobId, 'job_id');
  await sqlCall(db.query('select bastion.set_job_retention($1, $2::jsonb)', [jobId, policy === null ? null : JSON.stringify(policy)]));
}

/** Store the hub default policy (admin). */
export async function setDefaultRetention(db: Queryable, policy: object): Promise<void> {
  await sqlCall(db.query('select bastion.set_default_retention($1::jsonb)', [JSON.stringify(policy)]));
}

/** Store the tick schedule (admin). Validate it first with core/cron-schedule.ts. */
export async function setRetentionSchedule(db: Queryable, schedule: string): Promise<void> {
  await sqlCall(db.query('select bastion.set_retention_schedule($1)', [schedule]));
}

/** Jobs that follow the hub default (not archived). */
export async function countInheritingJobs(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`select count(*)::integer as n from bastion.jobs where archived_at is null and nullif(spec -> 'retention', 'null'::jsonb) is null`);
  return rows[0]!.n;
}

/** Drop ledger rows older than the run-history period; returns how many. */
export async function pruneRetentionLedger(db: Queryable, batch = 10_000): Promise<number> {
  const { rows } = await db.query<{ n: number }>('select bastion_private.retention_prune_ledger($1) as n', [batch]);
  return rows[0]!.n;
}
