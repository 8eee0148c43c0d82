/**
 * The delete queue as operators see it: a filtered, keyset-paginated list of
 * delete tasks across jobs (the maintenance view), a task's events page by
 * page, and the operator actions retry-now, ignore and unignore (SQL
 * functions of sql/migrations/0004 with the seeds' 409 rules: task_running,
 * not_retryable, not_ignorable, not_ignored; 404 delete_task_not_found).
 *
 * The task list is ordered by (created_at desc, run_id desc) — fixed per task,
 * so paging never skips or repeats a task whose status changes meanwhile.
 */
import type pg from 'pg';
import { z } from 'zod';
import { sqlCall } from '../../core/database-error.ts';
import { BastionError } from '../../core/errors.ts';
import { isNodeId, isUuid } from '../../core/ids.ts';
import { TASK_STATUSES } from '../../core/task-status.ts';
import type { DeleteEventRow, DeleteTaskRow } from './snapshots.ts';

export type { DeleteEventRow, DeleteTaskRow } from './snapshots.ts';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

function requireUuid(value: unknown, field: string): string {
  if (!isUuid(value)) throw new BastionError('invalid_input', `${field} must be a lower-case UUID`, { details: { field, reason: 'not_uuid' } });
  return value;
}

function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue && issue.path.length > 0 ? issue.path.map(String).join('.') : 'input';
  throw new BastionError('invalid_input', `${field}: ${issue?.message ?? 'invalid'}`, { details: { field, reason: issue?.code ?? 'invalid' } });
}

/** Filters and paging of {@link listDeleteTasks}. */
export const deleteTaskListQuerySchema = z.strictObject({
  status: z.array(z.enum(TASK_STATUSES)).max(TASK_STATUSES.length).optional(),
  job_id: z.string().refine(isUuid, 'must be a lower-case UUID').optional(),
  node_id: z.string().max(64).refine(isNodeId, "must be 'hub' or an agent UUID").optional(),
  target_type: z.enum(['local_dir', 'webdav']).optional(),
  /** Clamped to 1…200 (default 50). */
  limit: z.number().int().optional(),
  cursor: z.string().max(1024).optional(),
});
/** What callers pass; {@link deleteTaskListQuerySchema} validates it. */
export interface DeleteTaskListQuery {
  status?: readonly string[] | undefined;
  job_id?: string | undefined;
  node_id?: string | undefined;
  target_type?: string | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
}

const CURSOR_TS_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

function cursorError(reason: 'invalid_encoding' | 'invalid_payload'): BastionError {
  return new BastionError('invalid_cursor', undefined, { details: { field: 'cursor', reason } });
}

function decodeCursor(text: string): { createdAt: string; runId: string } {
  if (!/^[A-Za-z0-9_-]{1,1024}$/.test(text)) throw cursorError('invalid_encoding');
  let v: { c?: unknown; r?: unknown } | null;
  try {
    v = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as { c?: unknown; r?: unknown } | null;
  } catch {
    throw cursorError('invalid_encoding');
  }
  if (typeof v !== 'object' || v === null || typeof v.c !== 'string' || typeof v.r !== 'string' || !CURSOR_TS_RE.test(v.c) || !isUuid(v.r)) throw cursorError('invalid_payload');
  return { createdAt: v.c, runId: v.r };
}

/** A page of delete tasks (newest first). */
export async function listDeleteTasks(db: Queryable, query: DeleteTaskListQuery = {}): Promise<{ items: DeleteTaskRow[]; next_cursor: string | null }> {
  const q = parseOrThrow(deleteTaskListQuerySchema, query);
  const limit = Math.min(Math.max(q.limit ?? 50, 1), 200);
  const where: string[] = ['true'];
  const values: unknown[] = [];
  const add = (clause: (p: string) => string, value: unknown) => {
    values.push(value);
    where.push(clause(`$${values.length}`));
  };
  if (q.status !== undefined && q.status.length > 0) add((p) => `t.status = any(${p}::bastion.task_status[])`, q.status);
  if (q.job_id !== undefined) add((p) => `t.job_id = ${p}`, q.job_id);
  if (q.node_id !== undefined) add((p) => `t.node_id = ${p}`, q.node_id);
  if (q.target_type !== undefined) add((p) => `t.target_type = ${p}`, q.target_type);
  if (q.cursor !== undefined) {
    const c = decodeCursor(q.cursor);
    values.push(c.createdAt, c.runId);
    where.push(`(t.created_at, t.run_id) < ($${values.length - 1}::timestamptz, $${values.length}::uuid)`);
  }
  values.push(limit + 1);
  const { rows } = await db.query<DeleteTaskRow & { cursor_ts: string }>(
    `select t.*, to_char(t.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as cursor_ts
       from bastion.artifact_delete_tasks t
      where ${where.join(' and ')}
      order by t.created_at desc, t.run_id desc
      limit $${values.length}`,
    values,
  );
  const more = rows.length > limit;
  const page = more ? rows.slice(0, limit) : rows;
  const last = page[page.length - 1];
  return {
    items: page.map(({ cursor_ts: _c, ...row }) => row),
    next_cursor: more && last ? Buffer.from(JSON.stringify({ c: last.cursor_ts, r: last.run_id }), 'utf8').toString('base64url') : null,
  };
}

/** Events of a snapshot's delete task after `afterSeq`, ascending (at most 200 per page); delete_task_not_found. */
export async function listDeleteEvents(db: Queryable, jobId: string, runId: string, options: { afterSeq?: number; limit?: number } = {}): Promise<DeleteEventRow[]> {
  requireUuid(jobId, 'job_id');
  requireUuid(runId, 'run_id');
  const o = parseOrThrow(z.strictObject({ afterSeq: z.number().int().min(0).optional(), limit: z.number().int().min(1).max(200).optional() }), options);
  const { rows: task } = await db.query('select 1 from bastion.artifact_delete_tasks where run_id = $1 and job_id = $2', [runId, jobId]);
  if (task.length === 0) throw new BastionError('delete_task_not_found', undefined, { details: { job_id: jobId, run_id: runId } });
  const { rows } = await db.query<DeleteEventRow>('select * from bastion.artifact_delete_events where run_id = $1 and seq > $2 order by seq limit $3', [runId, o.afterSeq ?? 0, o.limit ?? 200]);
  return rows;
}

async function action(db: Queryable, fn: 'retry_artifact_delete_now' | 'ignore_artifact_delete' | 'unignore_artifact_delete', args: unknown[]): Promise<DeleteTaskRow> {
  const placeholders = args.map((_, i) => `$${i + 1}`).join(', ');
  const { rows } = await sqlCall(db.query<DeleteTaskRow>(`select * from bastion.${fn}(${placeholders})`, args));
  return rows[0]!;
}

/** Retry now with a fresh attempt budget (task_running, not_retryable). */
export function retryDeleteTaskNow(db: Queryable, jobId: string, runId: string): Promise<DeleteTaskRow> {
  return action(db, 'retry_artifact_delete_now', [requireUuid(jobId, 'job_id'), requireUuid(runId, 'run_id')]);
}

/** Stop retrying; reason is stored one-line, cut to 200 characters (task_running, not_ignorable). */
export function ignoreDeleteTask(db: Queryable, jobId: string, runId: string, reason?: string | null): Promise<DeleteTaskRow> {
  const r = parseOrThrow(z.string().max(10_000).nullable().optional(), reason);
  return action(db, 'ignore_artifact_delete', [requireUuid(jobId, 'job_id'), requireUuid(runId, 'run_id'), r ?? null]);
}

/** Back to the queue, due now (not_ignored). */
export function unignoreDeleteTask(db: Queryable, jobId: string, runId: string): Promise<DeleteTaskRow> {
  return action(db, 'unignore_artifact_delete', [requireUuid(jobId, 'job_id'), requireUuid(runId, 'run_id')]);
}
