/**
 * Row factories for tests: each builds rows in a state the schema's CHECK
 * constraints and the state machines agree with (a success run has started_at,
 * ended_at and a target snapshot; a present snapshot has a success run; …).
 * They insert directly, so tests can set up any situation quickly; the
 * behaviour under test is then exercised through the real functions.
 */
import { randomUUID } from 'node:crypto';
import type { Db } from '../db/kysely.ts';
import type { JobSpecInput } from '../core/job-spec.ts';
import type { TargetSnapshot } from '../core/target-snapshot.ts';

/** A minimal valid job spec backing up `/srv/data` to a local directory. */
export function makeSpec(overrides: Partial<JobSpecInput> = {}): JobSpecInput {
  return {
    v: 1,
    source: { type: 'filesystem', paths: ['/srv/data'] },
    target: { type: 'local_dir', base_dir: '/var/backups/bastion' },
    format: 'archive_v1',
    ...overrides,
  };
}

/** Insert a job. */
export async function makeJob(
  db: Db,
  overrides: { id?: string; name?: string; node_id?: string; spec?: JobSpecInput; schedule?: string | null; schedule_timezone?: string; overlap_policy?: 'queue' | 'reject'; archived_at?: Date | null } = {},
) {
  return db
    .insertInto('bastion.jobs')
    .values({
      id: overrides.id ?? randomUUID(),
      name: overrides.name ?? `job-${randomUUID().slice(0, 8)}`,
      node_id: overrides.node_id ?? 'hub',
      spec: JSON.stringify(overrides.spec ?? makeSpec()),
      schedule: overrides.schedule ?? null,
      schedule_timezone: overrides.schedule_timezone ?? 'UTC',
      overlap_policy: overrides.overlap_policy ?? 'queue',
      archived_at: overrides.archived_at ?? null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** The target snapshot of a job spec's target on `nodeId`. */
export function targetSnapshotOf(spec: JobSpecInput, nodeId = 'hub'): TargetSnapshot {
  const target = spec.target;
  return target.type === 'local_dir' ? { node_id: nodeId, target: { type: 'local_dir', base_dir: target.base_dir } } : { node_id: nodeId, target: { type: 'webdav', base_url: target.base_url, secret_name: target.secret_name } };
}

type RunStatus = 'queued' | 'running' | 'success' | 'failed' | 'canceled' | 'rejected';

/**
 * Insert a run of `job` in `status`. Final runs get started_at/ended_at
 * (ending `endedAt`, default now, after a 1-minute run); failed and rejected
 * runs get an error code; success runs a target snapshot and a summary.
 */
export async function makeRun(
  db: Db,
  job: { id: string; node_id: string; spec: unknown },
  options: { id?: string; status?: RunStatus; endedAt?: Date; startedAt?: Date; targetSnapshot?: TargetSnapshot | null; trigger?: 'manual' | 'schedule' } = {},
) {
  const status = options.status ?? 'success';
  const final = status !== 'queued' && status !== 'running';
  const endedAt = final ? (options.endedAt ?? new Date()) : null;
  const startedAt = status === 'queued' ? null : (options.startedAt ?? new Date((endedAt ?? new Date()).getTime() - 60_000));
  const spec = (typeof job.spec === 'string' ? JSON.parse(job.spec) : job.spec) as JobSpecInput;
  const snapshot = options.targetSnapshot === undefined ? (status === 'queued' || status === 'rejected' ? null : targetSnapshotOf(spec, job.node_id)) : options.targetSnapshot;
  return db
    .insertInto('bastion.runs')
    .values({
      id: options.id ?? randomUUID(),
      job_id: job.id,
      node_id: job.node_id,
      status,
      trigger: options.trigger ?? 'manual',
      created_at: startedAt ?? new Date(),
      started_at: startedAt,
      ended_at: endedAt,
      heartbeat_at: status === 'running' ? new Date() : null,
      target_snapshot: snapshot ? JSON.stringify(snapshot) : null,
      summary: status === 'success' ? JSON.stringify({ artifact_format: spec.format ?? 'archive_v1', source_total: { files: 10, dirs: 2, bytes: 1000 }, transfer_total_bytes: 600 }) : null,
      error_code: status === 'failed' || status === 'rejected' ? (status === 'failed' ? 'source_not_found' : 'overlap_rejected') : null,
      error: status === 'failed' ? 'source path /srv/data does not exist' : null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

type SnapshotStatus = 'present' | 'deleting' | 'deleted' | 'missing' | 'error';

/** Insert a success run of `job` and its snapshot index row in `status`. */
export async function makeSnapshot(
  db: Db,
  job: { id: string; node_id: string; spec: unknown },
  options: { runId?: string; status?: SnapshotStatus; endedAt?: Date; pinned?: boolean; sourceBytes?: number } = {},
) {
  const run = await makeRun(db, job, { status: 'success', ...(options.runId ? { id: options.runId } : {}), ...(options.endedAt ? { endedAt: options.endedAt } : {}) });
  const snapshot = run.target_snapshot as unknown as TargetSnapshot;
  const status = options.status ?? 'present';
  const spec = (typeof job.spec === 'string' ? JSON.parse(job.spec) : job.spec) as JobSpecInput;
  return db
    .insertInto('bastion.run_artifacts')
    .values({
      run_id: run.id,
      job_id: job.id,
      node_id: job.node_id,
      target_type: snapshot.target.type,
      target_snapshot: JSON.stringify(snapshot),
      artifact_format: spec.format ?? 'archive_v1',
      status,
      started_at: run.started_at as Date,
      ended_at: run.ended_at as Date,
      source_files: 10,
      source_dirs: 2,
      source_bytes: options.sourceBytes ?? 1000,
      transfer_bytes: 600,
      pinned_at: options.pinned ? new Date() : null,
      deleted_at: status === 'deleted' ? new Date() : null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/**
 * Insert a user with a password (hashed like the gateway does), through the
 * same SQL function the API uses. Returns the user row and the password.
 */
export async function makeUser(db: Db, options: { username?: string; role?: 'viewer' | 'operator' | 'admin'; password?: string } = {}) {
  const { hashPassword } = await import('../gateway/auth/password.ts');
  const username = options.username ?? `user-${randomUUID().slice(0, 8)}`;
  const password = options.password ?? `pw-${randomUUID()}`;
  const { sql } = await import('kysely');
  const id = (await sql<{ id: string }>`select bastion_private.create_user(${username}, ${options.role ?? 'viewer'}::bastion.user_role, ${await hashPassword(password)}) as id`.execute(db)).rows[0]?.id as string;
  const user = await db.selectFrom('bastion.users').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  return { ...user, password };
}

// --- snapshots on disk and delete tasks (issue 4) ------------------------------

/**
 * Write a real snapshot run directory `<baseDir>/<jobId>/<runId>/` with the
 * artifact format's own writer (engine/format): a small source tree backed up
 * as archive_v1 (or raw_tree_v1), ending with complete.json.
 */
export async function writeRunDir(baseDir: string, jobId: string, runId: string, options: { format?: 'archive_v1' | 'raw_tree_v1'; files?: Record<string, string> } = {}): Promise<string> {
  const fs = await import('node:fs/promises');
  const os = await import('node:os');
  const path = await import('node:path');
  const { runBackup } = await import('../engine/format/run-backup.ts');
  const { openLocalRunDirWriter } = await import('../engine/targets/local-dir.ts');
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'bastion-rundir-'));
  try {
    const src = path.join(work, 'src');
    await fs.mkdir(path.join(src, 'sub'), { recursive: true });
    for (const [name, content] of Object.entries(options.files ?? { 'a.txt': 'alpha\n', 'sub/b.txt': 'bravo\n' })) {
      await fs.mkdir(path.dirname(path.join(src, name)), { recursive: true });
      await fs.writeFile(path.join(src, name), content);
    }
    const writer = await openLocalRunDirWriter({ baseDir, jobId, runId });
    await runBackup({
      jobId,
      runId,
      startedAt: new Date(),
      source: { paths: [src], include: [], exclude: [], symlinks: 'keep' },
      format: options.format ?? 'archive_v1',
      encryption: { type: 'none' },
      partSizeBytes: 1024 * 1024,
      writer,
      stagingDir: path.join(work, 'staging'),
      xattrs: false,
      concurrency: 1,
    });
    return path.join(baseDir, jobId, runId);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/**
 * Insert a delete task for `snapshot` directly, in a state consistent with the
 * table's CHECKs (queued: due now, no attempts; running: claimed by `worker`
 * with a heartbeat; retrying/blocked: failed `attempts` times with an error;
 * done: deleted; ignored; abandoned), and set the snapshot's status to match.
 * For tests that start from a given state; transitions go through the real
 * functions.
 */
export async function makeDeleteTask(
  db: Db,
  snapshot: { run_id: string; job_id: string; node_id: string; target_type: 'local_dir' | 'webdav'; target_snapshot: unknown },
  options: {
    status?: 'queued' | 'running' | 'retrying' | 'blocked' | 'done' | 'ignored' | 'abandoned';
    attempts?: number;
    kind?: 'network' | 'http' | 'io' | 'auth' | 'config' | 'unknown' | 'offline';
    nextAttemptAt?: Date;
    heartbeatAt?: Date;
    worker?: string;
    cycleStartedAt?: Date;
  } = {},
) {
  const status = options.status ?? 'queued';
  const now = new Date();
  const failed = status === 'retrying' || status === 'blocked' || status === 'abandoned';
  const kind = options.kind ?? (status === 'blocked' ? 'config' : 'network');
  const attempts = status === 'queued' ? 0 : (options.attempts ?? (status === 'ignored' ? 0 : 1));
  const task = await db
    .insertInto('bastion.artifact_delete_tasks')
    .values({
      run_id: snapshot.run_id,
      job_id: snapshot.job_id,
      node_id: snapshot.node_id,
      target_type: snapshot.target_type,
      target_snapshot: JSON.stringify(snapshot.target_snapshot),
      status,
      attempts,
      cycle_started_at: options.cycleStartedAt ?? now,
      next_attempt_at: status === 'queued' || status === 'retrying' || status === 'blocked' ? (options.nextAttemptAt ?? now) : null,
      last_attempt_at: attempts > 0 ? now : null,
      heartbeat_at: status === 'running' ? (options.heartbeatAt ?? now) : null,
      claimed_by: status === 'running' ? (options.worker ?? 'test-worker') : null,
      last_error_kind: failed ? kind : null,
      last_error: failed ? `${kind} failure (factory)` : null,
      outcome: status === 'done' ? 'deleted' : null,
      ignored_at: status === 'ignored' ? now : null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  const snapshotStatus = status === 'done' ? 'deleted' : status === 'blocked' || status === 'abandoned' || status === 'ignored' ? 'error' : 'deleting';
  await db
    .updateTable('bastion.run_artifacts')
    .set({ status: snapshotStatus, deleted_at: snapshotStatus === 'deleted' ? now : null })
    .where('run_id', '=', snapshot.run_id)
    .execute();
  return task;
}

// --- retention (issue 5) ---------------------------------------------------------

/**
 * Insert `n` present snapshots of `job` in two set-based statements (runs,
 * then index rows): the newest ends at `newest`, each older one `stepMs`
 * earlier (default one day), all with transfer_bytes 600 and source_bytes
 * 1000 like {@link makeSnapshot}. For retention tests and benchmarks that need
 * hundreds to hundreds of thousands of snapshots. Returns the run ids, newest
 * first.
 */
export async function makeSnapshots(
  pool: { query: (text: string, values?: unknown[]) => Promise<{ rows: any[] }> },
  job: { id: string; node_id: string; spec: unknown },
  n: number,
  options: { newest?: Date; stepMs?: number } = {},
): Promise<string[]> {
  const spec = (typeof job.spec === 'string' ? JSON.parse(job.spec) : job.spec) as JobSpecInput;
  const snapshot = JSON.stringify(targetSnapshotOf(spec, job.node_id));
  const newest = options.newest ?? new Date();
  const step = options.stepMs ?? 86_400_000;
  const { rows } = await pool.query(
    `with r as (
       insert into bastion.runs (job_id, node_id, status, trigger, created_at, started_at, ended_at, target_snapshot, summary)
       select $1, $2, 'success', 'schedule', e - interval '1 minute', e - interval '1 minute', e, $3::jsonb,
              jsonb_build_object('artifact_format', $6::text, 'transfer_total_bytes', 600)
         from (select $4::timestamptz - make_interval(secs => (i * $5::float8) / 1000) as e from generate_series(0, $7::integer - 1) i) g
       returning id, started_at, ended_at
     ),
     a as (
       insert into bastion.run_artifacts (run_id, job_id, node_id, target_type, target_snapshot, artifact_format, status, started_at, ended_at,
                                          source_files, source_dirs, source_bytes, transfer_bytes)
       select r.id, $1, $2, ($3::jsonb -> 'target' ->> 'type')::bastion.target_type, $3::jsonb, $6::bastion.artifact_format, 'present',
              r.started_at, r.ended_at, 10, 2, 1000, 600
         from r
       returning run_id, ended_at
     )
     select run_id from a order by ended_at desc, run_id desc`,
    [job.id, job.node_id, snapshot, newest, step, spec.format ?? 'archive_v1', n],
  );
  return rows.map((r: { run_id: string }) => r.run_id);
}

/**
 * Insert a job whose `spec.retention` is `retention` (null or omitted =
 * inherit the hub default) in time zone `timezone` (default UTC).
 */
export async function makeRetentionJob(db: Db, options: { retention?: Record<string, unknown> | null; timezone?: string; archived?: boolean; name?: string } = {}) {
  return makeJob(db, {
    spec: { ...makeSpec(), retention: (options.retention ?? null) as never },
    schedule_timezone: options.timezone ?? 'UTC',
    archived_at: options.archived ? new Date() : null,
    ...(options.name ? { name: options.name } : {}),
  });
}

// --- incomplete cleanup (issue 6) ------------------------------------------------

/**
 * Write a real run directory that never completed: the artifact format's
 * writer produces a whole run (parts, entries index, manifest, complete.json),
 * then the files a run writes last are removed. `stage` picks how far the run
 * got: `manifest` (everything but complete.json, the default), `parts` (no
 * manifest either), `partial` (only a `.partial` part being written).
 */
export async function writePartialRunDir(baseDir: string, jobId: string, runId: string, options: { format?: 'archive_v1' | 'raw_tree_v1'; stage?: 'manifest' | 'parts' | 'partial' } = {}): Promise<string> {
  const fs = await import('node:fs/promises');
  const path = await import('node:path');
  const dir = await writeRunDir(baseDir, jobId, runId, options.format ? { format: options.format } : {});
  await fs.rm(path.join(dir, 'complete.json'));
  const stage = options.stage ?? 'manifest';
  if (stage === 'parts' || stage === 'partial') await fs.rm(path.join(dir, 'manifest.json'));
  if (stage === 'partial') {
    for (const name of await fs.readdir(dir)) if (name !== 'data') await fs.rm(path.join(dir, name), { recursive: true });
    await fs.writeFile(path.join(dir, 'payload.part000001.partial'), 'half a part');
  }
  return dir;
}

/**
 * Insert an incomplete-cleanup task for `run` (a failed, canceled or rejected
 * run with a target snapshot) directly, in a state consistent with the table's
 * CHECKs (queued: due now, no attempts; running: claimed by `worker` with a
 * heartbeat; retrying/blocked/abandoned: failed `attempts` times with an error;
 * done: `outcome`; ignored), with its first event. For tests that start from a
 * given state; transitions go through the real functions.
 */
export async function makeCleanupTask(
  db: Db,
  run: { id: string; job_id: string; node_id: string; target_snapshot: unknown },
  options: {
    status?: 'queued' | 'running' | 'retrying' | 'blocked' | 'done' | 'ignored' | 'abandoned';
    attempts?: number;
    kind?: 'network' | 'io' | 'auth' | 'config' | 'unknown' | 'offline';
    outcome?: 'skip_complete' | 'skip_not_found' | 'deleted';
    nextAttemptAt?: Date;
    heartbeatAt?: Date;
    worker?: string;
    cycleStartedAt?: Date;
  } = {},
) {
  const status = options.status ?? 'queued';
  const now = new Date();
  const failed = status === 'retrying' || status === 'blocked' || status === 'abandoned';
  const kind = options.kind ?? (status === 'blocked' ? 'config' : 'network');
  const attempts = status === 'queued' ? 0 : (options.attempts ?? (status === 'ignored' ? 0 : 1));
  const snapshot = (typeof run.target_snapshot === 'string' ? JSON.parse(run.target_snapshot) : run.target_snapshot) as TargetSnapshot;
  const task = await db
    .insertInto('bastion.incomplete_cleanup_tasks')
    .values({
      run_id: run.id,
      job_id: run.job_id,
      node_id: run.node_id,
      target_type: snapshot.target.type,
      target_snapshot: JSON.stringify(snapshot),
      status,
      attempts,
      cycle_started_at: options.cycleStartedAt ?? now,
      next_attempt_at: status === 'queued' || status === 'retrying' || status === 'blocked' ? (options.nextAttemptAt ?? now) : null,
      last_attempt_at: attempts > 0 ? now : null,
      heartbeat_at: status === 'running' ? (options.heartbeatAt ?? now) : null,
      claimed_by: status === 'running' ? (options.worker ?? 'test-worker') : null,
      last_error_kind: failed ? kind : null,
      last_error: failed ? `${kind} failure (factory)` : null,
      outcome: status === 'done' ? (options.outcome ?? 'deleted') : null,
      ignored_at: status === 'ignored' ? now : null,
      event_seq: 1,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  await db
    .insertInto('bastion.incomplete_cleanup_events')
    .values({ run_id: run.id, seq: 1, level: 'info', kind: 'queued', message: 'cleanup queued (factory)', fields: null })
    .execute();
  return task;
}

// --- agents (issue 8) --------------------------------------------------------------

/**
 * Enroll an agent through the real functions (an enrollment token, then
 * bastion_private.enroll_agent, as the gateway does). Returns its id, key and
 * name, and the id of the token used.
 */
export async function makeAgent(pool: { query: (text: string, values?: unknown[]) => Promise<{ rows: any[] }> }, options: { name?: string } = {}) {
  const token = (await pool.query(`select id, token from bastion.create_enrollment_token(ttl_seconds => 600, uses => 1)`)).rows[0] as { id: string; token: string };
  const name = options.name ?? `agent-${randomUUID().slice(0, 8)}`;
  const agent = (await pool.query(`select agent_id, agent_key, name from bastion_private.enroll_agent(sha256(convert_to($1, 'UTF8')), $2)`, [token.token, name])).rows[0] as {
    agent_id: string;
    agent_key: string;
    name: string;
  };
  return { id: agent.agent_id, key: agent.agent_key, name: agent.name, tokenId: token.id };
}
