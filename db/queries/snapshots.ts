/**
 * The snapshot index (bastion.run_artifacts) as the API reads and changes it:
 * a keyset-paginated, filtered list per job, one snapshot with its delete task
 * and latest events, and typed calls of the SQL functions that pin, unpin,
 * request deletes and hold leases (sql/migrations/0004). Every input is
 * validated with zod here, so a bad value is an `invalid_input` naming the
 * field before any SQL runs; SQL domain errors come back as BastionErrors.
 *
 * Run these on the connection (or transaction) that carries the caller's role:
 * row-level security decides what a role may read, EXECUTE grants what it may
 * call.
 *
 * Pagination: ordered by (ended_at desc, run_id desc). Both never change for
 * a snapshot, so a row whose status changes while a client pages is neither
 * skipped nor repeated (with a status filter it may leave or enter the set, as
 * it should). The cursor is base64url JSON {e: ended_at with microseconds,
 * r: run_id} — opaque to clients; a malformed one is `invalid_cursor` with
 * details {field: 'cursor', reason: 'invalid_encoding' | 'invalid_payload'}.
 */
import type pg from 'pg';
import { z } from 'zod';
import { sqlCall } from '../../core/database-error.ts';
import { BastionError } from '../../core/errors.ts';
import { isNodeId, isUuid, UUID_RE } from '../../core/ids.ts';
import { SNAPSHOT_STATUSES, type SnapshotStatus, type TaskErrorKind, type TaskStatus } from '../../core/task-status.ts';
import type { TargetSnapshot } from '../../core/target-snapshot.ts';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** Default and largest page sizes. */
export const DEFAULT_SNAPSHOT_PAGE = 50;
export const MAX_SNAPSHOT_PAGE = 200;

/** The delete task of a snapshot, as lists show it. */
export interface SnapshotDeleteTaskSummary {
  status: TaskStatus;
  attempts: number;
  last_attempt_at: Date | null;
  next_attempt_at: Date | null;
  last_error_kind: TaskErrorKind | null;
  last_error: string | null;
  ignored_at: Date | null;
}

/** One snapshot (a run_artifacts row, plus `pinned`: pinned now, expiry considered). */
export interface SnapshotRow {
  run_id: string;
  job_id: string;
  node_id: string;
  target_type: 'local_dir' | 'webdav';
  target_snapshot: TargetSnapshot;
  artifact_format: 'archive_v1' | 'raw_tree_v1';
  status: SnapshotStatus;
  started_at: Date;
  ended_at: Date;
  source_files: number | null;
  source_dirs: number | null;
  source_bytes: number | null;
  transfer_bytes: number | null;
  pinned: boolean;
  pinned_at: Date | null;
  pinned_by: string | null;
  pin_reason: string | null;
  pin_expires_at: Date | null;
  deleted_at: Date | null;
  deleted_by: string | null;
  delete_reason: string | null;
  last_error_kind: string | null;
  last_error: string | null;
  last_attempt_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

/** A list item: the snapshot and its delete task when it has one. */
export interface SnapshotListItem extends SnapshotRow {
  delete_task: SnapshotDeleteTaskSummary | null;
}

/** A page of snapshots. */
export interface SnapshotPage {
  items: SnapshotListItem[];
  /** Present when more rows follow. */
  next_cursor: string | null;
}

const dateInput = z.union([z.date(), z.string().max(64)]).transform((v, ctx) => {
  const d = v instanceof Date ? v : new Date(v);
  if (Number.isNaN(d.getTime()) || (typeof v === 'string' && !/^\d{4}-\d{2}-\d{2}(?:[Tt ][\d:.]+(?:[Zz]|[+-]\d{2}:?\d{2})?)?$/.test(v))) {
    ctx.addIssue({ code: 'custom', message: 'must be an ISO 8601 date or date-time' });
    return z.NEVER;
  }
  return d;
});

/** Filters and paging of {@link listSnapshots} (what the API parsed from the query string). */
export const snapshotListQuerySchema = z.strictObject({
  status: z.array(z.enum(SNAPSHOT_STATUSES)).max(SNAPSHOT_STATUSES.length).optional(),
  pinned: z.boolean().optional(),
  /** ended_at ≥ from. */
  from: dateInput.optional(),
  /** ended_at < to. */
  to: dateInput.optional(),
  target_type: z.enum(['local_dir', 'webdav']).optional(),
  artifact_format: z.enum(['archive_v1', 'raw_tree_v1']).optional(),
  node_id: z.string().max(64).refine(isNodeId, "must be 'hub' or an agent UUID").optional(),
  /** Clamped to 1…200 (default 50), like the reference. */
  limit: z.number().int().optional(),
  cursor: z.string().max(1024).optional(),
});
/** What callers pass (typically strings parsed from a query string); {@link snapshotListQuerySchema} validates it. */
export interface SnapshotListQuery {
  status?: readonly string[] | undefined;
  pinned?: boolean | undefined;
  from?: string | Date | undefined;
  to?: string | Date | undefined;
  target_type?: string | undefined;
  artifact_format?: string | undefined;
  node_id?: string | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
}

/** Throw invalid_input naming the first field zod complained about. */
function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue && issue.path.length > 0 ? issue.path.map(String).join('.') : 'input';
  throw new BastionError('invalid_input', `${field}: ${issue?.message ?? 'invalid'}`, { details: { field, reason: issue?.code ?? 'invalid' } });
}

// --- cursor ------------------------------------------------------------------

/** The decoded cursor: the last row of the previous page. */
export interface SnapshotCursor {
  /** ended_at as UTC text with microseconds (exact; a JS Date would lose them). */
  endedAt: string;
  runId: string;
}

const CURSOR_TS_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

/** Encode a cursor. */
export function encodeSnapshotCursor(c: SnapshotCursor): string {
  return Buffer.from(JSON.stringify({ e: c.endedAt, r: c.runId }), 'utf8').toString('base64url');
}

function cursorError(reason: 'invalid_encoding' | 'invalid_payload'): BastionError {
  return new BastionError('invalid_cursor', undefined, { details: { field: 'cursor', reason } });
}

/** Decode a cursor; `invalid_cursor` (400) with reason invalid_encoding or invalid_payload. */
export function decodeSnapshotCursor(text: string): SnapshotCursor {
  if (!/^[A-Za-z0-9_-]{1,1024}$/.test(text)) throw cursorError('invalid_encoding');
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw cursorError('invalid_encoding');
  }
  const v = value as { e?: unknown; r?: unknown } | null;
  if (typeof v !== 'object' || v === null || typeof v.e !== 'string' || typeof v.r !== 'string') throw cursorError('invalid_payload');
  if (!CURSOR_TS_RE.test(v.e) || Number.isNaN(Date.parse(v.e)) || !isUuid(v.r)) throw cursorError('invalid_payload');
  return { endedAt: v.e, runId: v.r };
}

// --- reading -------------------------------------------------------------------

const SNAPSHOT_COLUMNS = `
  a.run_id, a.job_id, a.node_id, a.target_type, a.target_snapshot, a.artifact_format, a.status, a.started_at, a.ended_at,
  a.source_files, a.source_dirs, a.source_bytes, a.transfer_bytes,
  (a.pinned_at is not null and (a.pin_expires_at is null or a.pin_expires_at > now())) as pinned,
  a.pinned_at, a.pinned_by, a.pin_reason, a.pin_expires_at, a.deleted_at, a.deleted_by, a.delete_reason,
  a.last_error_kind, a.last_error, a.last_attempt_at, a.created_at, a.updated_at`;

const TASK_SUMMARY = `
  case when t.run_id is null then null else json_build_object(
    'status', t.status, 'attempts', t.attempts, 'last_attempt_at', t.last_attempt_at, 'next_attempt_at', t.next_attempt_at,
    'last_error_kind', t.last_error_kind, 'last_error', t.last_error, 'ignored_at', t.ignored_at) end as delete_task`;

function reviveTask(raw: unknown): SnapshotDeleteTaskSummary | null {
  if (raw === null || raw === undefined) return null;
  const t = raw as Record<string, unknown>;
  const date = (v: unknown) => (v === null || v === undefined ? null : new Date(v as string));
  return {
    status: t['status'] as TaskStatus,
    attempts: t['attempts'] as number,
    last_attempt_at: date(t['last_attempt_at']),
    next_attempt_at: date(t['next_attempt_at']),
    last_error_kind: (t['last_error_kind'] ?? null) as TaskErrorKind | null,
    last_error: (t['last_error'] ?? null) as string | null,
    ignored_at: date(t['ignored_at']),
  };
}

async function requireJob(db: Queryable, jobId: string): Promise<void> {
  const { rows } = await db.query('select 1 from bastion.jobs where id = $1', [jobId]);
  if (rows.length === 0) throw new BastionError('job_not_found', undefined, { details: { job_id: jobId } });
}

function requireUuid(value: unknown, field: string): string {
  if (!isUuid(value)) throw new BastionError('invalid_input', `${field} must be a lower-case UUID`, { details: { field, reason: 'not_uuid' } });
  return value;
}

/** One page of a job's snapshots, newest first. `job_not_found` for an unknown job (archived jobs exist). */
export async function listSnapshots(db: Queryable, jobId: string, query: SnapshotListQuery = {}): Promise<SnapshotPage> {
  requireUuid(jobId, 'job_id');
  const q = parseOrThrow(snapshotListQuerySchema, query);
  const limit = Math.min(Math.max(q.limit ?? DEFAULT_SNAPSHOT_PAGE, 1), MAX_SNAPSHOT_PAGE);
  const cursor = q.cursor !== undefined ? decodeSnapshotCursor(q.cursor) : undefined;
  await requireJob(db, jobId);

  const where: string[] = ['a.job_id = $1'];
  const values: unknown[] = [jobId];
  const add = (clause: (p: string) => string, value: unknown) => {
    values.push(value);
    where.push(clause(`$${values.length}`));
  };
  if (q.status !== undefined && q.status.length > 0) add((p) => `a.status = any(${p}::bastion.snapshot_status[])`, q.status);
  if (q.pinned !== undefined) where.push(`(a.pinned_at is not null and (a.pin_expires_at is null or a.pin_expires_at > now())) = ${q.pinned ? 'true' : 'false'}`);
  if (q.from !== undefined) add((p) => `a.ended_at >= ${p}`, q.from);
  if (q.to !== undefined) add((p) => `a.ended_at < ${p}`, q.to);
  if (q.target_type !== undefined) add((p) => `a.target_type = ${p}`, q.target_type);
  if (q.artifact_format !== undefined) add((p) => `a.artifact_format = ${p}`, q.artifact_format);
  if (q.node_id !== undefined) add((p) => `a.node_id = ${p}`, q.node_id);
  if (cursor !== undefined) {
    values.push(cursor.endedAt, cursor.runId);
    where.push(`(a.ended_at, a.run_id) < ($${values.length - 1}::timestamptz, $${values.length}::uuid)`);
  }
  values.push(limit + 1);
  const { rows } = await db.query<SnapshotRow & { delete_task: unknown; cursor_ts: string }>(
    `select ${SNAPSHOT_COLUMNS}, ${TASK_SUMMARY},
            to_char(a.ended_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as cursor_ts
       from bastion.run_artifacts a
       left join bastion.artifact_delete_tasks t on t.run_id = a.run_id
      where ${where.join(' and ')}
      order by a.ended_at desc, a.run_id desc
      limit $${values.length}`,
    values,
  );
  const more = rows.length > limit;
  const page = more ? rows.slice(0, limit) : rows;
  const last = page[page.length - 1];
  return {
    items: page.map(({ cursor_ts: _c, delete_task, ...row }) => ({ ...row, delete_task: reviveTask(delete_task) })),
    next_cursor: more && last ? encodeSnapshotCursor({ endedAt: last.cursor_ts, runId: last.run_id }) : null,
  };
}

/** A delete task row (all columns). */
export interface DeleteTaskRow {
  run_id: string;
  job_id: string;
  node_id: string;
  executor_node_id: string;
  target_type: 'local_dir' | 'webdav';
  target_snapshot: TargetSnapshot;
  status: TaskStatus;
  attempts: number;
  created_at: Date;
  updated_at: Date;
  cycle_started_at: Date;
  next_attempt_at: Date | null;
  last_attempt_at: Date | null;
  heartbeat_at: Date | null;
  claimed_by: string | null;
  last_error_kind: TaskErrorKind | null;
  last_error: string | null;
  outcome: 'deleted' | 'not_found' | null;
  ignored_at: Date | null;
  ignored_by: string | null;
  ignore_reason: string | null;
  requested_by: string | null;
  delete_reason: string | null;
  force: boolean;
  event_seq: number;
}

/** One delete event. */
export interface DeleteEventRow {
  run_id: string;
  seq: number;
  ts: Date;
  level: 'info' | 'warn' | 'error';
  kind: string;
  message: string;
  fields: Record<string, unknown> | null;
}

/** A snapshot with its delete task and the latest events of that task (ascending). */
export interface SnapshotDetail {
  snapshot: SnapshotRow;
  delete_task: DeleteTaskRow | null;
  events: DeleteEventRow[];
}

/** Events shown with a snapshot by default. */
export const DETAIL_EVENTS = 50;

/** One snapshot of a job with its delete task and latest events; job_not_found / snapshot_not_found. */
export async function getSnapshot(db: Queryable, jobId: string, runId: string, options: { events?: number } = {}): Promise<SnapshotDetail> {
  requireUuid(jobId, 'job_id');
  requireUuid(runId, 'run_id');
  const events = Math.min(Math.max(Math.trunc(options.events ?? DETAIL_EVENTS), 0), 500);
  await requireJob(db, jobId);
  const { rows } = await db.query<SnapshotRow>(`select ${SNAPSHOT_COLUMNS} from bastion.run_artifacts a where a.job_id = $1 and a.run_id = $2`, [jobId, runId]);
  const snapshot = rows[0];
  if (!snapshot) throw new BastionError('snapshot_not_found', undefined, { details: { job_id: jobId, run_id: runId } });
  const task = (await db.query<DeleteTaskRow>('select * from bastion.artifact_delete_tasks where run_id = $1', [runId])).rows[0] ?? null;
  const ev = task
    ? (await db.query<DeleteEventRow>('select * from (select * from bastion.artifact_delete_events where run_id = $1 order by seq desc limit $2) e order by seq', [runId, events])).rows
    : [];
  return { snapshot, delete_task: task, events: ev };
}

// --- changes (SQL functions) ------------------------------------------------------

/** Outcome of a delete request per snapshot. */
export type DeleteRequestOutcome = 'enqueued' | 'requeued' | 'already_queued' | 'noop_deleted' | 'noop_missing';

/** Largest bulk request. */
export const MAX_DELETE_RUN_IDS = 1000;

const reasonSchema = z.string().max(10_000).nullable().optional();

/** A bulk delete request. run_ids are validated as a whole: one bad id refuses the request. */
export const deleteRequestSchema = z.strictObject({
  run_ids: z.array(z.string().regex(UUID_RE, 'must be a lower-case UUID')).max(MAX_DELETE_RUN_IDS * 10),
  force: z.boolean().optional(),
  /** Free text, stored one-line and cut to 200 characters. */
  reason: reasonSchema,
});
/** A bulk delete request as callers pass it; {@link deleteRequestSchema} validates it. */
export interface DeleteRequest {
  run_ids: readonly string[];
  force?: boolean | undefined;
  reason?: string | null | undefined;
}

/**
 * Request deletes of up to 1000 snapshots of a job, all or nothing
 * (empty_run_ids, too_many_run_ids, job_not_found, snapshot_not_found,
 * snapshot_pinned, snapshot_in_use). Returns each run id's outcome.
 */
export async function requestSnapshotDeletes(db: Queryable, jobId: string, request: DeleteRequest): Promise<Array<{ run_id: string; outcome: DeleteRequestOutcome }>> {
  requireUuid(jobId, 'job_id');
  const r = parseOrThrow(deleteRequestSchema, request);
  const unique = [...new Set(r.run_ids)];
  if (unique.length === 0) throw new BastionError('empty_run_ids', undefined, { details: { field: 'run_ids', reason: 'empty' } });
  if (unique.length > MAX_DELETE_RUN_IDS) throw new BastionError('too_many_run_ids', undefined, { details: { field: 'run_ids', reason: 'too_many', max: MAX_DELETE_RUN_IDS, count: unique.length } });
  const { rows } = await sqlCall(
    db.query<{ run_id: string; outcome: DeleteRequestOutcome }>('select run_id, outcome from bastion.request_snapshot_deletes($1, $2::uuid[], $3, $4)', [jobId, unique, r.force ?? false, r.reason ?? null]),
  );
  return rows;
}

/** Request the delete of one snapshot; returns its outcome. */
export async function requestSnapshotDelete(db: Queryable, jobId: string, runId: string, options: { force?: boolean; reason?: string | null } = {}): Promise<DeleteRequestOutcome> {
  requireUuid(jobId, 'job_id');
  requireUuid(runId, 'run_id');
  const o = parseOrThrow(z.strictObject({ force: z.boolean().optional(), reason: reasonSchema }), options);
  const { rows } = await sqlCall(db.query<{ outcome: DeleteRequestOutcome }>('select bastion.request_snapshot_delete($1, $2, $3, $4) as outcome', [jobId, runId, o.force ?? false, o.reason ?? null]));
  return rows[0]!.outcome;
}

/** Pin options. */
export const pinSchema = z.strictObject({
  reason: reasonSchema,
  expires_at: dateInput.nullable().optional(),
});

/** Pin a present snapshot (snapshot_not_present otherwise); returns the snapshot. */
export async function pinSnapshot(db: Queryable, jobId: string, runId: string, options: z.input<typeof pinSchema> = {}): Promise<SnapshotRow> {
  requireUuid(jobId, 'job_id');
  requireUuid(runId, 'run_id');
  const o = parseOrThrow(pinSchema, options);
  await sqlCall(db.query('select bastion.pin_snapshot($1, $2, $3, $4)', [jobId, runId, o.reason ?? null, o.expires_at ?? null]));
  return (await getSnapshot(db, jobId, runId, { events: 0 })).snapshot;
}

/** Unpin a snapshot (no-op when not pinned); returns the snapshot. */
export async function unpinSnapshot(db: Queryable, jobId: string, runId: string): Promise<SnapshotRow> {
  requireUuid(jobId, 'job_id');
  requireUuid(runId, 'run_id');
  await sqlCall(db.query('select bastion.unpin_snapshot($1, $2)', [jobId, runId]));
  return (await getSnapshot(db, jobId, runId, { events: 0 })).snapshot;
}

/** A snapshot lease (restore, verify, relay). */
export interface SnapshotLeaseRow {
  id: string;
  run_id: string;
  holder_kind: 'restore' | 'verify' | 'relay';
  operation_id: string;
  acquired_at: Date;
  expires_at: Date;
  acquired_by: string | null;
}

/** Hold a present snapshot for an operation (snapshot_not_present otherwise). */
export async function acquireSnapshotLease(db: Queryable, runId: string, holderKind: SnapshotLeaseRow['holder_kind'], operationId: string, ttlSeconds = 300): Promise<SnapshotLeaseRow> {
  requireUuid(runId, 'run_id');
  requireUuid(operationId, 'operation_id');
  parseOrThrow(z.strictObject({ holder_kind: z.enum(['restore', 'verify', 'relay']), ttl_seconds: z.number().int().min(10).max(86_400) }), { holder_kind: holderKind, ttl_seconds: ttlSeconds });
  const { rows } = await sqlCall(db.query<SnapshotLeaseRow>('select * from bastion.acquire_snapshot_lease($1, $2, $3, $4)', [runId, holderKind, operationId, ttlSeconds]));
  return rows[0]!;
}

/** Extend a lease (lease_not_found, snapshot_not_present). */
export async function renewSnapshotLease(db: Queryable, leaseId: string, ttlSeconds = 300): Promise<SnapshotLeaseRow> {
  requireUuid(leaseId, 'lease_id');
  parseOrThrow(z.number().int().min(10).max(86_400), ttlSeconds);
  const { rows } = await sqlCall(db.query<SnapshotLeaseRow>('select * from bastion.renew_snapshot_lease($1, $2)', [leaseId, ttlSeconds]));
  return rows[0]!;
}

/** Release a lease; false when it did not exist. */
export async function releaseSnapshotLease(db: Queryable, leaseId: string): Promise<boolean> {
  requireUuid(leaseId, 'lease_id');
  const { rows } = await sqlCall(db.query<{ released: boolean }>('select bastion.release_snapshot_lease($1) as released', [leaseId]));
  return rows[0]?.released === true;
}
