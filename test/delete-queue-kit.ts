/**
 * Helpers shared by the delete-queue suites: act as an application role and
 * user (what the gateway does per request), build jobs with snapshots, and
 * read tasks, events and graphile-worker jobs the way an operator would.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Db } from '../db/kysely.ts';
import { makeJob, makeSnapshot, makeSpec } from './factories.ts';

/** Run `fn` in a transaction as `role` acting for `userId` (NULL user = a worker or psql). */
export async function asRole<T>(pool: pg.Pool, role: 'bastion_viewer' | 'bastion_operator' | 'bastion_admin', userId: string | null, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query('begin');
    await c.query(`set local role ${role}`);
    await c.query("select set_config('bastion.user_id', $1, true)", [userId ?? '']);
    const r = await fn(c);
    await c.query('commit');
    return r;
  } catch (e) {
    await c.query('rollback').catch(() => {});
    throw e;
  } finally {
    c.release();
  }
}

/** Insert a user with `role`; returns its id. */
export async function makeUserRow(pool: pg.Pool, role: 'viewer' | 'operator' | 'admin' = 'operator'): Promise<string> {
  const { rows } = await pool.query<{ id: string }>('insert into bastion.users (username, role) values ($1, $2) returning id', [`u-${randomUUID().slice(0, 8)}`, role]);
  return rows[0]!.id;
}

/** A job on the hub backing up to a local directory, with `n` present snapshots (newest first by ended_at). */
export async function jobWithSnapshots(db: Db, n: number, options: { baseDir?: string; nodeId?: string; webdav?: { base_url: string; secret_name: string } } = {}) {
  const spec = options.webdav
    ? makeSpec({ target: { type: 'webdav', base_url: options.webdav.base_url, secret_name: options.webdav.secret_name } } as never)
    : makeSpec({ target: { type: 'local_dir', base_dir: options.baseDir ?? '/var/backups/bastion' } });
  const job = await makeJob(db, { spec, ...(options.nodeId ? { node_id: options.nodeId } : {}) });
  const snapshots = [];
  const t0 = Date.now();
  for (let i = 0; i < n; i++) snapshots.push(await makeSnapshot(db, job, { endedAt: new Date(t0 - i * 60_000) }));
  return { job, snapshots };
}

/** A task row. */
export async function task(pool: pg.Pool, runId: string) {
  const { rows } = await pool.query('select * from bastion.artifact_delete_tasks where run_id = $1', [runId]);
  return rows[0] as Record<string, any> | undefined;
}

/** A task's events, ascending. */
export async function events(pool: pg.Pool, runId: string) {
  const { rows } = await pool.query('select seq, level, kind, message, fields from bastion.artifact_delete_events where run_id = $1 order by seq', [runId]);
  return rows as Array<{ seq: number; level: string; kind: string; message: string; fields: Record<string, any> | null }>;
}

/** The snapshot row. */
export async function snapshotRow(pool: pg.Pool, runId: string) {
  const { rows } = await pool.query('select * from bastion.run_artifacts where run_id = $1', [runId]);
  return rows[0] as Record<string, any> | undefined;
}

/** graphile-worker jobs of a delete task (by key), or every artifact-delete job. */
export async function graphileJobs(pool: pg.Pool, runId?: string) {
  const { rows } = await pool.query(
    `select id, key, queue_name, run_at, locked_at, locked_by, attempts, max_attempts, task_identifier
       from graphile_worker.jobs where task_identifier = 'artifact-delete' and ($1::text is null or key = 'artifact-delete:' || $1)
      order by id`,
    [runId ?? null],
  );
  return rows as Array<{ id: string; key: string | null; queue_name: string | null; run_at: Date; locked_at: Date | null; locked_by: string | null; attempts: number; max_attempts: number }>;
}

/** Claim through the generic function (as a worker). */
export async function claim(pool: pg.Pool | pg.PoolClient, runId: string, worker = 'w-test', limit = 1) {
  const { rows } = await pool.query<{ t: Record<string, any> }>('select t from bastion_private.task_claim($1, $2, $3, $4) t', ['artifact_delete', runId, worker, limit]);
  return rows.map((r) => r.t);
}

/** Record outcomes through the generic function (as a worker). */
export async function finish(pool: pg.Pool, results: unknown[], worker = 'w-test') {
  const { rows } = await pool.query<{ run_id: string; status: string }>('select * from bastion_private.task_finish($1, $2, $3::jsonb)', ['artifact_delete', worker, JSON.stringify(results)]);
  return rows;
}

/** Move a task's next attempt to now (tests do not wait for backoffs). */
export async function makeDue(pool: pg.Pool, runId: string): Promise<void> {
  await pool.query('update bastion.artifact_delete_tasks set next_attempt_at = now() where run_id = $1 and next_attempt_at is not null', [runId]);
}
