/**
 * Runs: reading (lists, one run with its events) and every state change,
 * each a call of one SQL function of sql/migrations/0003 (request, schedule,
 * start, heartbeat, finish, fail, requeue, recover). SQL domain errors come
 * back as BastionErrors (`run_not_running`, `job_archived`, …).
 */
import type pg from 'pg';
import { sqlCall } from '../../core/database-error.ts';
import { BastionError } from '../../core/errors.ts';
import { isUuid } from '../../core/ids.ts';
import type { TargetSnapshot } from '../../core/target-snapshot.ts';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** Run statuses. */
export type RunStatus = 'queued' | 'running' | 'success' | 'failed' | 'canceled' | 'rejected';

/** A run row. */
export interface RunRow {
  id: string;
  job_id: string;
  node_id: string;
  status: RunStatus;
  trigger: 'manual' | 'schedule';
  scheduled_for: Date | null;
  requested_by: string | null;
  created_at: Date;
  started_at: Date | null;
  ended_at: Date | null;
  heartbeat_at: Date | null;
  progress: Record<string, unknown> | null;
  summary: Record<string, unknown> | null;
  error_code: string | null;
  error: string | null;
  target_snapshot: TargetSnapshot | null;
  event_seq: number;
}

/** One run event. */
export interface RunEventRow {
  run_id: string;
  seq: number;
  ts: Date;
  level: 'info' | 'warn' | 'error';
  kind: string;
  message: string;
  fields: Record<string, unknown> | null;
}

/** True for statuses a run never leaves. */
export function isFinalRunStatus(status: RunStatus): boolean {
  return status === 'success' || status === 'failed' || status === 'canceled' || status === 'rejected';
}

const RUN_COLUMNS =
  'r.id, r.job_id, r.node_id, r.status, r.trigger, r.scheduled_for, r.requested_by, r.created_at, r.started_at, r.ended_at, r.heartbeat_at, r.progress, r.summary, r.error_code, r.error, r.target_snapshot, r.event_seq';

/** A run by id, or undefined. */
export async function getRun(db: Queryable, runId: string): Promise<RunRow | undefined> {
  if (!isUuid(runId)) return undefined;
  const { rows } = await db.query<RunRow>(`select ${RUN_COLUMNS} from bastion.runs r where r.id = $1`, [runId]);
  return rows[0];
}

/** Events of a run after `afterSeq`, ascending, at most `limit` (default 500). */
export async function listRunEvents(db: Queryable, runId: string, options: { afterSeq?: number; limit?: number } = {}): Promise<RunEventRow[]> {
  const limit = Math.min(Math.max(options.limit ?? 500, 1), 5000);
  const { rows } = await db.query<RunEventRow>(
    'select run_id, seq, ts, level, kind, message, fields from bastion.run_events where run_id = $1 and seq > $2 order by seq limit $3',
    [runId, options.afterSeq ?? 0, limit],
  );
  return rows;
}

/** One run and its events (the first `eventLimit`, default 500). Throws `run_not_found`. */
export async function getRunDetail(db: Queryable, runId: string, eventLimit = 500): Promise<{ run: RunRow; events: RunEventRow[] }> {
  const run = await getRun(db, runId);
  if (!run) throw new BastionError('run_not_found', undefined, { details: { run_id: runId } });
  return { run, events: await listRunEvents(db, runId, { limit: eventLimit }) };
}

/**
 * Runs newest first (created_at, id), optionally of one job and/or in some
 * statuses; keyset pagination with `before` = the last row of the previous page.
 */
export async function listRuns(
  db: Queryable,
  options: { jobId?: string; statuses?: RunStatus[]; limit?: number; before?: { created_at: Date; id: string } } = {},
): Promise<RunRow[]> {
  const limit = Math.min(Math.max(options.limit ?? 50, 1), 500);
  const { rows } = await db.query<RunRow>(
    `select ${RUN_COLUMNS} from bastion.runs r
      where ($1::uuid is null or r.job_id = $1)
        and ($2::bastion.run_status[] is null or r.status = any($2))
        and ($3::timestamptz is null or (r.created_at, r.id) < ($3, $4::uuid))
      order by r.created_at desc, r.id desc
      limit $5`,
    [options.jobId ?? null, options.statuses ?? null, options.before?.created_at ?? null, options.before?.id ?? null, limit],
  );
  return rows;
}

/** Request a manual run (bastion.request_run; operator). The run comes back queued or rejected. */
export async function requestRun(db: Queryable, jobId: string): Promise<RunRow> {
  const { rows } = await sqlCall(db.query<RunRow>(`select ${RUN_COLUMNS} from bastion.request_run($1) r`, [jobId]));
  return rows[0]!;
}

/** Scheduler: create the run of a slot; undefined when there was nothing to do. */
export async function scheduleRun(db: Queryable, jobId: string, slot: Date): Promise<RunRow | undefined> {
  const { rows } = await sqlCall(db.query<RunRow>(`select ${RUN_COLUMNS} from bastion.schedule_run($1, $2) r where r.id is not null`, [jobId, slot]));
  return rows[0];
}

/** Worker: claim a queued run; undefined when it is not queued any more. */
export async function startRun(db: Queryable, runId: string, targetSnapshot: TargetSnapshot): Promise<RunRow | undefined> {
  const { rows } = await sqlCall(db.query<RunRow>(`select ${RUN_COLUMNS} from bastion.start_run($1, $2::jsonb) r where r.id is not null`, [runId, JSON.stringify(targetSnapshot)]));
  return rows[0];
}

/** Worker: heartbeat with optional progress and progress event; false when the run is not running any more. */
export async function heartbeatRun(db: Queryable, runId: string, progress: Record<string, unknown> | null, progressMessage: string | null): Promise<boolean> {
  const { rows } = await sqlCall(
    db.query<{ alive: boolean }>('select bastion.heartbeat_run($1, $2::jsonb, $3) as alive', [runId, progress === null ? null : JSON.stringify(progress), progressMessage]),
  );
  return rows[0]?.alive === true;
}

/** Worker: the run succeeded (summary, complete event, snapshot index row). */
export async function finishRunSuccess(db: Queryable, runId: string, summary: object): Promise<RunRow> {
  const { rows } = await sqlCall(db.query<RunRow>(`select ${RUN_COLUMNS} from bastion.finish_run_success($1, $2::jsonb) r`, [runId, JSON.stringify(summary)]));
  return rows[0]!;
}

/** Worker: the run failed with a stable code and a clean one-line error. */
export async function failRun(db: Queryable, runId: string, errorCode: string, error: string, fields: Record<string, unknown> | null = null): Promise<RunRow> {
  const { rows } = await sqlCall(
    db.query<RunRow>(`select ${RUN_COLUMNS} from bastion.fail_run($1, $2, $3, $4::jsonb) r`, [runId, errorCode, error, fields === null ? null : JSON.stringify(fields)]),
  );
  return rows[0]!;
}

/** Worker: put a running run back in the queue (shutdown). */
export async function requeueRun(db: Queryable, runId: string, reason: string): Promise<RunRow> {
  const { rows } = await sqlCall(db.query<RunRow>(`select ${RUN_COLUMNS} from bastion.requeue_run($1, $2) r`, [runId, reason]));
  return rows[0]!;
}

/** What one watchdog pass did. */
export interface RecoverResult {
  lost: number;
  requeued: number;
  exhausted: number;
}

/** Watchdog: fail runs whose worker died, repair queued runs (bastion.recover_runs). */
export async function recoverRuns(db: Queryable, staleAfterSeconds: number): Promise<RecoverResult> {
  const { rows } = await sqlCall(db.query<{ r: RecoverResult }>('select bastion.recover_runs(make_interval(secs => $1)) as r', [staleAfterSeconds]));
  return rows[0]!.r;
}
