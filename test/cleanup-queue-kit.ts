/**
 * Helpers shared by the incomplete-cleanup suites: runs that never completed,
 * aged past the cutoff, and the cleanup task, events and graphile-worker jobs
 * read the way an operator would.
 */
import type pg from 'pg';
import type { Db } from '../db/kysely.ts';
import type { TargetSnapshot } from '../core/target-snapshot.ts';
import { makeJob, makeRun, makeSpec } from './factories.ts';

/** A job on the hub (or `nodeId`) writing to a local directory or a WebDAV server. */
export async function cleanupJob(db: Db, options: { baseDir?: string; nodeId?: string; webdav?: { base_url: string; secret_name: string } } = {}) {
  const spec = options.webdav
    ? makeSpec({ target: { type: 'webdav', base_url: options.webdav.base_url, secret_name: options.webdav.secret_name } } as never)
    : makeSpec({ target: { type: 'local_dir', base_dir: options.baseDir ?? '/var/backups/bastion' } });
  return makeJob(db, { spec, ...(options.nodeId ? { node_id: options.nodeId } : {}) });
}

const DAY = 86_400_000;

/**
 * A run of `job` in `status` that ended `ageDays` days ago (started a minute
 * before), with the target snapshot of the job's spec unless told otherwise
 * (`null`: a run that recorded none; `neverStarted`: no started_at either).
 */
export async function oldRun(
  db: Db,
  job: { id: string; node_id: string; spec: unknown },
  options: { status?: 'failed' | 'canceled' | 'rejected' | 'success' | 'queued' | 'running'; ageDays?: number; targetSnapshot?: TargetSnapshot | null; neverStarted?: boolean } = {},
) {
  const endedAt = new Date(Date.now() - (options.ageDays ?? 10) * DAY);
  const run = await makeRun(db, job, {
    status: options.status ?? 'failed',
    endedAt,
    startedAt: new Date(endedAt.getTime() - 60_000),
    ...(options.targetSnapshot !== undefined ? { targetSnapshot: options.targetSnapshot } : {}),
  });
  if (options.neverStarted) {
    await db.updateTable('bastion.runs').set({ started_at: null, created_at: new Date(endedAt.getTime() - 60_000) }).where('id', '=', run.id).execute();
  } else if (options.status === 'queued') {
    await db.updateTable('bastion.runs').set({ created_at: new Date(endedAt.getTime() - 60_000) }).where('id', '=', run.id).execute();
  }
  return run;
}

/** The cleanup task of a run. */
export async function cleanupTask(pool: pg.Pool, runId: string) {
  const { rows } = await pool.query('select * from bastion.incomplete_cleanup_tasks where run_id = $1', [runId]);
  return rows[0] as Record<string, any> | undefined;
}

/** A cleanup task's events, ascending. */
export async function cleanupEvents(pool: pg.Pool, runId: string) {
  const { rows } = await pool.query('select seq, level, kind, message, fields from bastion.incomplete_cleanup_events where run_id = $1 order by seq', [runId]);
  return rows as Array<{ seq: number; level: string; kind: string; message: string; fields: Record<string, any> | null }>;
}

/** graphile-worker jobs of a cleanup task (by key). */
export async function cleanupJobs(pool: pg.Pool, runId: string) {
  const { rows } = await pool.query(
    `select id, key, queue_name, run_at, locked_at, locked_by, attempts, max_attempts from graphile_worker.jobs where task_identifier = 'incomplete-cleanup' and key = 'incomplete-cleanup:' || $1 order by id`,
    [runId],
  );
  return rows as Array<{ id: string; key: string | null; queue_name: string | null; run_at: Date; locked_at: Date | null; locked_by: string | null; attempts: number }>;
}

/** Claim through the generic function (as a worker). */
export async function claimCleanup(pool: pg.Pool | pg.PoolClient, runId: string, worker = 'w-test', limit = 1) {
  const { rows } = await pool.query<{ t: Record<string, any> }>('select t from bastion_private.task_claim($1, $2, $3, $4) t', ['incomplete_cleanup', runId, worker, limit]);
  return rows.map((r) => r.t);
}

/** Record outcomes through the generic function (as a worker). */
export async function finishCleanup(pool: pg.Pool, results: unknown[], worker = 'w-test') {
  const { rows } = await pool.query<{ run_id: string; status: string }>('select * from bastion_private.task_finish($1, $2, $3::jsonb)', ['incomplete_cleanup', worker, JSON.stringify(results)]);
  return rows;
}

/** Push every waiting cleanup task a day out, so batch claims and reconcile counts see only a test's own tasks. */
export async function parkCleanupTasks(pool: pg.Pool): Promise<void> {
  await pool.query("update bastion.incomplete_cleanup_tasks set next_attempt_at = now() + interval '1 day' where next_attempt_at is not null");
}

/** Give every eligible run that has no cleanup task yet one, so the next reconcile sees only a test's new runs. */
export async function settleReconcile(pool: pg.Pool): Promise<void> {
  // Runs that need the job spec fallback are skipped here; tests that want them reconcile through TypeScript.
  for (;;) {
    const { rows } = await pool.query<{ run_id: string; outcome: string }>('select run_id, outcome from bastion_private.incomplete_cleanup_reconcile(5000)');
    for (const r of rows) if (r.outcome === 'needs_snapshot') await pool.query("select bastion_private.incomplete_cleanup_skip($1, 'test_settled', 'settled by a test')", [r.run_id]);
    if (rows.length < 5000) break;
  }
}
