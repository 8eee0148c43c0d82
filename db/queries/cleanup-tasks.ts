/**
 * The incomplete-cleanup queue as operators see it (seed 004 "HTTP API",
 * reference §3.4): a filtered, paged list of tasks ordered by next attempt,
 * with the job's name; one task with its run, its target snapshot (redacted)
 * and its events; the operator actions retry-now, ignore and unignore (SQL
 * functions of sql/migrations/0006 with the shared 409 rules: task_running,
 * not_retryable, not_ignorable, not_ignored; 404 cleanup_task_not_found); and
 * the setting that turns cleanup on and off.
 *
 * Paging is by page number (the seed's page/page_size with a total), not a
 * keyset: the list is ordered by next_attempt_at, which changes as tasks run,
 * so a cursor would be no more stable; an operator's screen reloads it.
 * Order: next_attempt_at ascending (what runs next first), tasks without a
 * next attempt (running, done, ignored, abandoned) after them, most recently
 * changed first; run_id breaks ties so pages never overlap between two reads
 * of an unchanged queue.
 *
 * Run these on the connection (or transaction) that carries the caller's role:
 * row-level security decides what a role may read, EXECUTE grants what it may
 * call.
 */
import type pg from 'pg';
import { z } from 'zod';
import { sqlCall } from '../../core/database-error.ts';
import { BastionError } from '../../core/errors.ts';
import { isNodeId, isUuid } from '../../core/ids.ts';
import { redactUrl } from '../../core/redact.ts';
import { TASK_STATUSES, type TaskErrorKind, type TaskStatus } from '../../core/task-status.ts';
import type { TargetSnapshot } from '../../core/target-snapshot.ts';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** Default and largest page sizes (seed 004). */
export const DEFAULT_CLEANUP_PAGE_SIZE = 20;
export const MAX_CLEANUP_PAGE_SIZE = 100;
/** Events returned with one task (the newest ones). */
export const CLEANUP_DETAIL_EVENTS = 200;

/** Outcomes of a done cleanup task. */
export type CleanupOutcome = 'skip_complete' | 'skip_not_found' | 'deleted';

/** A list item (reference §3.4 fields). */
export interface CleanupTaskListItem {
  run_id: string;
  job_id: string;
  job_name: string;
  node_id: string;
  target_type: 'local_dir' | 'webdav';
  status: TaskStatus;
  attempts: number;
  last_attempt_at: Date | null;
  next_attempt_at: Date | null;
  last_error_kind: TaskErrorKind | null;
  last_error: string | null;
  outcome: CleanupOutcome | null;
  created_at: Date;
  updated_at: Date;
}

/** A page of cleanup tasks. */
export interface CleanupTaskPage {
  items: CleanupTaskListItem[];
  page: number;
  page_size: number;
  total: number;
}

/** Every column of a cleanup task, plus the job's name. */
export interface CleanupTaskRow extends CleanupTaskListItem {
  target_snapshot: TargetSnapshot;
  target_snapshot_source: 'run' | 'job_spec';
  executor_node_id: string;
  cycle_started_at: Date;
  heartbeat_at: Date | null;
  claimed_by: string | null;
  ignored_at: Date | null;
  ignored_by: string | null;
  ignore_reason: string | null;
  event_seq: number;
}

/** One event of a cleanup task. */
export interface CleanupEventRow {
  run_id: string;
  seq: number;
  ts: Date;
  level: 'info' | 'warn' | 'error';
  kind: string;
  message: string;
  fields: Record<string, unknown> | null;
}

/** The run a task cleans up after (what an operator needs to judge it). */
export interface CleanupRunSummary {
  status: 'failed' | 'canceled' | 'rejected' | 'queued' | 'running' | 'success';
  trigger: 'manual' | 'schedule';
  created_at: Date;
  started_at: Date | null;
  ended_at: Date | null;
  error_code: string | null;
  error: string | null;
}

/** A task with its run and its latest events (ascending). */
export interface CleanupTaskDetail {
  task: CleanupTaskRow;
  run: CleanupRunSummary | null;
  events: CleanupEventRow[];
  /** True when older events exist than the ones returned. */
  events_truncated: boolean;
}

const TARGET_TYPES = ['local_dir', 'webdav'] as const;

/** Filters and paging of {@link listCleanupTasks}; every filter takes several values (OR within a filter, AND across). */
export const cleanupTaskListQuerySchema = z.strictObject({
  status: z.array(z.enum(TASK_STATUSES)).max(TASK_STATUSES.length * 4).optional(),
  target_type: z.array(z.enum(TARGET_TYPES)).max(8).optional(),
  node_id: z.array(z.string().max(64).refine(isNodeId, "must be 'hub' or an agent UUID")).max(100).optional(),
  job_id: z.array(z.string().refine(isUuid, 'must be a lower-case UUID')).max(100).optional(),
  page: z.number().int().min(1).max(1_000_000).optional(),
  page_size: z.number().int().min(1).max(MAX_CLEANUP_PAGE_SIZE).optional(),
});
/** What callers pass; {@link cleanupTaskListQuerySchema} validates it. */
export type CleanupTaskListQuery = z.input<typeof cleanupTaskListQuerySchema>;

function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue && issue.path.length > 0 ? String(issue.path[0]) : 'input';
  const reason = issue?.code === 'too_small' ? 'too_small' : issue?.code === 'too_big' ? 'too_big' : issue?.code === 'invalid_value' ? 'unsupported_value' : (issue?.code ?? 'invalid');
  throw new BastionError('invalid_input', `${field}: ${issue?.message ?? 'invalid'}`, { details: { field, reason } });
}

function requireRunId(value: unknown): string {
  if (!isUuid(value)) throw new BastionError('invalid_input', 'run_id must be a lower-case UUID', { details: { field: 'run_id', reason: 'not_uuid' } });
  return value;
}

const LIST_COLUMNS = `t.run_id, t.job_id, j.name as job_name, t.node_id, t.target_type, t.status, t.attempts, t.last_attempt_at,
  t.next_attempt_at, t.last_error_kind, t.last_error, t.outcome, t.created_at, t.updated_at`;

/** A page of cleanup tasks with the total matching the filters. */
export async function listCleanupTasks(db: Queryable, query: CleanupTaskListQuery = {}): Promise<CleanupTaskPage> {
  const q = parseOrThrow(cleanupTaskListQuerySchema, query);
  const page = q.page ?? 1;
  const pageSize = q.page_size ?? DEFAULT_CLEANUP_PAGE_SIZE;
  const where: string[] = ['true'];
  const values: unknown[] = [];
  const add = (clause: (p: string) => string, value: readonly unknown[] | undefined) => {
    if (value === undefined || value.length === 0) return;
    values.push([...new Set(value)]);
    where.push(clause(`$${values.length}`));
  };
  add((p) => `t.status = any(${p}::bastion.task_status[])`, q.status);
  add((p) => `t.target_type = any(${p}::bastion.target_type[])`, q.target_type);
  add((p) => `t.node_id = any(${p}::text[])`, q.node_id);
  add((p) => `t.job_id = any(${p}::uuid[])`, q.job_id);
  const filter = where.join(' and ');
  const { rows: counted } = await db.query<{ n: number }>(`select count(*)::int as n from bastion.incomplete_cleanup_tasks t where ${filter}`, values);
  const { rows } = await db.query<CleanupTaskListItem>(
    `select ${LIST_COLUMNS}
       from bastion.incomplete_cleanup_tasks t join bastion.jobs j on j.id = t.job_id
      where ${filter}
      order by t.next_attempt_at asc nulls last, t.updated_at desc, t.run_id
      limit $${values.length + 1} offset $${values.length + 2}`,
    [...values, pageSize, (page - 1) * pageSize],
  );
  return { items: rows, page, page_size: pageSize, total: counted[0]?.n ?? 0 };
}

/** A stored snapshot as shown to clients: a WebDAV URL redacted again (defence in depth: the stored one already is). */
export function redactTargetSnapshot(snapshot: TargetSnapshot): TargetSnapshot {
  if (snapshot?.target?.type !== 'webdav' || typeof snapshot.target.base_url !== 'string') return snapshot;
  return { ...snapshot, target: { ...snapshot.target, base_url: redactUrl(snapshot.target.base_url) } };
}

/** One task with its run and its newest {@link CLEANUP_DETAIL_EVENTS} events (ascending); cleanup_task_not_found. */
export async function getCleanupTask(db: Queryable, runId: string, options: { events?: number } = {}): Promise<CleanupTaskDetail> {
  requireRunId(runId);
  const limit = parseOrThrow(z.number().int().min(0).max(1000), options.events ?? CLEANUP_DETAIL_EVENTS);
  const { rows } = await db.query<CleanupTaskRow>(
    'select t.*, j.name as job_name from bastion.incomplete_cleanup_tasks t join bastion.jobs j on j.id = t.job_id where t.run_id = $1',
    [runId],
  );
  const task = rows[0];
  if (!task) throw new BastionError('cleanup_task_not_found', undefined, { details: { run_id: runId } });
  task.target_snapshot = redactTargetSnapshot(task.target_snapshot);
  const { rows: run } = await db.query<CleanupRunSummary>('select status, trigger, created_at, started_at, ended_at, error_code, error from bastion.runs where id = $1', [runId]);
  const { rows: events } =
    limit === 0
      ? { rows: [] as CleanupEventRow[] }
      : await db.query<CleanupEventRow>(
          'select * from (select run_id, seq, ts, level, kind, message, fields from bastion.incomplete_cleanup_events where run_id = $1 order by seq desc limit $2) e order by seq',
          [runId, limit],
        );
  return { task, run: run[0] ?? null, events, events_truncated: task.event_seq > events.length };
}

/** Events of a task after `afterSeq`, ascending (at most 200 per page); cleanup_task_not_found. */
export async function listCleanupEvents(db: Queryable, runId: string, options: { afterSeq?: number; limit?: number } = {}): Promise<CleanupEventRow[]> {
  requireRunId(runId);
  const o = parseOrThrow(z.strictObject({ afterSeq: z.number().int().min(0).optional(), limit: z.number().int().min(1).max(200).optional() }), options);
  const { rows: task } = await db.query('select 1 from bastion.incomplete_cleanup_tasks where run_id = $1', [runId]);
  if (task.length === 0) throw new BastionError('cleanup_task_not_found', undefined, { details: { run_id: runId } });
  const { rows } = await db.query<CleanupEventRow>(
    'select run_id, seq, ts, level, kind, message, fields from bastion.incomplete_cleanup_events where run_id = $1 and seq > $2 order by seq limit $3',
    [runId, o.afterSeq ?? 0, o.limit ?? 200],
  );
  return rows;
}

async function action(db: Queryable, sql: string, args: unknown[]): Promise<CleanupTaskRow> {
  const { rows } = await sqlCall(db.query<CleanupTaskRow>(sql, args));
  return rows[0]!;
}

/** Retry now with a fresh attempt budget; a worker picks it up at once (task_running, not_retryable). */
export function retryCleanupTaskNow(db: Queryable, runId: string): Promise<CleanupTaskRow> {
  return action(db, 'select * from bastion.retry_incomplete_cleanup_now(run_id => $1)', [requireRunId(runId)]);
}

/** Stop cleaning this run; reason stored one-line, cut to 200 characters (task_running, not_ignorable). */
export function ignoreCleanupTask(db: Queryable, runId: string, reason?: string | null): Promise<CleanupTaskRow> {
  const r = parseOrThrow(z.string().max(10_000).nullable().optional(), reason);
  return action(db, 'select * from bastion.ignore_incomplete_cleanup(run_id => $1, reason => $2)', [requireRunId(runId), r ?? null]);
}

/** Back to the queue, due now (not_ignored). */
export function unignoreCleanupTask(db: Queryable, runId: string): Promise<CleanupTaskRow> {
  return action(db, 'select * from bastion.unignore_incomplete_cleanup(run_id => $1)', [requireRunId(runId)]);
}

/** The cleanup setting and what the queue holds, for the maintenance page header. */
export interface CleanupSettings {
  /** Runs that never completed are cleaned after this many days; 0 = off. */
  incomplete_cleanup_days: number;
  enabled: boolean;
  /** Task counts per status (every status present, 0 when none). */
  counts: Record<TaskStatus, number>;
}

/** The setting and the queue's counts per status. */
export async function getCleanupSettings(db: Queryable): Promise<CleanupSettings> {
  const { rows } = await db.query<{ days: number }>('select incomplete_cleanup_days as days from bastion.settings');
  const { rows: counts } = await db.query<{ status: TaskStatus; n: number }>('select status, count(*)::int as n from bastion.incomplete_cleanup_tasks group by status');
  const days = rows[0]?.days ?? 0;
  const byStatus = Object.fromEntries(TASK_STATUSES.map((s) => [s, 0])) as Record<TaskStatus, number>;
  for (const c of counts) byStatus[c.status] = c.n;
  return { incomplete_cleanup_days: days, enabled: days > 0, counts: byStatus };
}

/** Admin: set settings.incomplete_cleanup_days (0–3650; 0 turns cleanup off). */
export async function setIncompleteCleanupDays(db: Queryable, days: number): Promise<CleanupSettings> {
  parseOrThrow(z.strictObject({ days: z.number().int().min(0).max(3650) }), { days });
  await sqlCall(db.query('select bastion.set_incomplete_cleanup_days(days => $1)', [days]));
  return getCleanupSettings(db);
}
