/**
 * The incomplete-cleanup queue against a real database (sql/migrations/0006
 * over the generic task functions of 0004): reconcile (eligibility, cutoff
 * and the 0 setting, idempotence that never resets a task, the job-spec
 * fallback saved onto the run, skipped runs, bounded batches, concurrent
 * reconcilers), every transition of the state machine on this queue, the
 * operator actions and their 409s, grants, NOTIFY, and the table's CHECKs.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import pg from 'pg';
import t from 'tap';
import { backoffSeconds } from '../core/backoff.ts';
import { ERRORS } from '../core/errors.ts';
import { checkTaskAction, TASK_STATUSES, type TaskStatus } from '../core/task-status.ts';
import { reconcileIncompleteCleanup, RECONCILE_LOCK_NAME, type ReconcileSummary } from '../engine/cleanup/reconcile.ts';
import { testDatabase } from './db.ts';
import { asRole, makeUserRow } from './delete-queue-kit.ts';
import { claimCleanup, cleanupEvents, cleanupJob, cleanupJobs, cleanupTask, finishCleanup, oldRun, parkCleanupTasks, settleReconcile } from './cleanup-queue-kit.ts';
import { makeCleanupTask, makeJob, makeSpec } from './factories.ts';

const tdb = await testDatabase(t, { poolMax: 20 });
const { pool, db, url } = tdb;

const logs: string[] = [];
const logger = { info: (m: string) => logs.push(`info ${m}`), warn: (m: string) => logs.push(`warn ${m}`) };

async function reconcile(options: { batchSize?: number; maxBatches?: number } = {}): Promise<ReconcileSummary> {
  const c = await pool.connect();
  try {
    return await reconcileIncompleteCleanup(c, { logger, ...options });
  } finally {
    c.release();
  }
}

async function setDays(days: number) {
  await pool.query('select bastion.set_incomplete_cleanup_days($1)', [days]);
}

/** A failed run with a task, through reconcile (the real way in). */
async function queuedTask(job?: Awaited<ReturnType<typeof cleanupJob>>) {
  const j = job ?? (await cleanupJob(db));
  const run = await oldRun(db, j);
  await pool.query('select * from bastion_private.incomplete_cleanup_create($1::uuid[], $2::jsonb[], $3)', [[run.id], [JSON.stringify(run.target_snapshot)], 'run']);
  return { job: j, run, id: run.id };
}

t.test('every error code raised by the cleanup migration is in the catalogue; the queue is registered', async (t) => {
  const text = await fs.readFile(new URL('../sql/migrations/0006_incomplete_cleanup.sql', import.meta.url), 'utf8');
  const codes = new Set([...text.matchAll(/raise_error\('([a-z_]+)'/g)].map((m) => m[1]!));
  codes.add('cleanup_task_not_found');
  for (const c of codes) t.ok(Object.hasOwn(ERRORS, c), `${c} is catalogued`);
  const { rows } = await pool.query("select task_table::text, event_table::text, task_identifier, not_found_code from bastion_private.task_queues where name = 'incomplete_cleanup'");
  t.same(rows[0], { task_table: 'bastion.incomplete_cleanup_tasks', event_table: 'bastion.incomplete_cleanup_events', task_identifier: 'incomplete-cleanup', not_found_code: 'cleanup_task_not_found' });
});

t.test('reconcile: which runs get a task (failed, canceled, rejected; old enough; never-started by creation time)', async (t) => {
  await setDays(7);
  await settleReconcile(pool);
  const job = await cleanupJob(db);
  const failed = await oldRun(db, job, { status: 'failed' });
  const canceled = await oldRun(db, job, { status: 'canceled' });
  const rejected = await oldRun(db, job, { status: 'rejected', targetSnapshot: null, neverStarted: true });
  const neverStartedYoung = await oldRun(db, job, { status: 'canceled', ageDays: 3, neverStarted: true });
  const success = await oldRun(db, job, { status: 'success' });
  const young = await oldRun(db, job, { status: 'failed', ageDays: 6 });
  const queued = await oldRun(db, job, { status: 'queued', targetSnapshot: null });
  const running = await oldRun(db, job, { status: 'running' });
  const summary = await reconcile();
  t.ok(summary.ran && summary.enabled);
  for (const r of [failed, canceled]) {
    const tk = await cleanupTask(pool, r.id);
    t.ok(tk, `${r.status} run older than 7 days has a task`);
    t.same([tk!.status, tk!.attempts, tk!.target_snapshot_source, tk!.target_type], ['queued', 0, 'run', 'local_dir']);
    t.same(tk!.target_snapshot, r.target_snapshot, "the run's own stored target snapshot");
    const ev = await cleanupEvents(pool, r.id);
    t.same(ev.map((e) => [e.seq, e.kind]), [[1, 'queued']]);
    t.equal(ev[0]!.fields!['run_status'], r.status);
    const jobs = await cleanupJobs(pool, r.id);
    t.equal(jobs.length, 1, 'one graphile job, due now');
    t.match(jobs[0]!.queue_name, /^incomplete-cleanup:hub:[0-3]$/);
    t.ok(jobs[0]!.run_at.getTime() <= Date.now() + 1000);
  }
  const rej = await cleanupTask(pool, rejected.id);
  t.ok(rej, 'a rejected run that never started is judged by its creation time');
  t.equal(rej!.target_snapshot_source, 'job_spec', 'it recorded no location: the job spec gives one');
  for (const r of [neverStartedYoung, success, young, queued, running]) t.equal(await cleanupTask(pool, r.id), undefined, `${r.status} ${r === young || r === neverStartedYoung ? 'younger than the cutoff' : ''}: no task`);
});

t.test('reconcile is idempotent and never resets an existing task', async (t) => {
  await setDays(7);
  await settleReconcile(pool);
  const job = await cleanupJob(db);
  const runs = await Promise.all(Array.from({ length: 6 }, () => oldRun(db, job)));
  const first = await reconcile();
  t.ok(first.enqueued >= 6);
  const statuses: TaskStatus[] = ['done', 'ignored', 'abandoned', 'retrying', 'blocked', 'running'];
  // Move five tasks along by hand (as the workers and operators would have).
  await pool.query("update bastion.incomplete_cleanup_tasks set status = 'done', outcome = 'deleted', next_attempt_at = null, attempts = 1 where run_id = $1", [runs[0]!.id]);
  await pool.query("update bastion.incomplete_cleanup_tasks set status = 'ignored', ignored_at = now(), next_attempt_at = null where run_id = $1", [runs[1]!.id]);
  await pool.query("update bastion.incomplete_cleanup_tasks set status = 'abandoned', attempts = 20, last_error_kind = 'network', last_error = 'x', next_attempt_at = null where run_id = $1", [runs[2]!.id]);
  await pool.query("update bastion.incomplete_cleanup_tasks set status = 'retrying', attempts = 3, last_error_kind = 'io', last_error = 'x', next_attempt_at = now() + interval '1 hour' where run_id = $1", [runs[3]!.id]);
  await pool.query("update bastion.incomplete_cleanup_tasks set status = 'blocked', attempts = 2, last_error_kind = 'auth', last_error = 'x', next_attempt_at = now() + interval '6 hours' where run_id = $1", [runs[4]!.id]);
  await pool.query("update bastion.incomplete_cleanup_tasks set status = 'running', attempts = 1, last_attempt_at = now(), heartbeat_at = now(), claimed_by = 'w', next_attempt_at = null where run_id = $1", [runs[5]!.id]);
  // Bring graphile-worker in step with the hand-made states, as every real transition does.
  await pool.query("select bastion_private.task_changed('incomplete_cleanup', $1::uuid[])", [runs.map((r) => r.id)]);
  const graphile = async () => (await pool.query("select key, run_at from graphile_worker.jobs where key = any(select 'incomplete-cleanup:' || x from unnest($1::uuid[]) x) order by key", [runs.map((r) => r.id)])).rows;
  const jobsBefore = await graphile();
  t.equal(jobsBefore.length, 2, 'jobs only for the retrying and blocked tasks');
  const before = (await pool.query('select * from bastion.incomplete_cleanup_tasks where run_id = any($1) order by run_id', [runs.map((r) => r.id)])).rows;
  const beforeEvents = (await pool.query('select count(*)::int as n from bastion.incomplete_cleanup_events where run_id = any($1)', [runs.map((r) => r.id)])).rows[0].n;
  const second = await reconcile();
  t.equal(second.enqueued, 0, 'nothing new');
  const after = (await pool.query('select * from bastion.incomplete_cleanup_tasks where run_id = any($1) order by run_id', [runs.map((r) => r.id)])).rows;
  t.same(after, before, 'every task row is exactly as it was');
  t.same(after.map((r) => r.status).sort(), [...statuses].sort());
  t.equal((await pool.query('select count(*)::int as n from bastion.incomplete_cleanup_events where run_id = any($1)', [runs.map((r) => r.id)])).rows[0].n, beforeEvents, 'no new events');
  t.same(await graphile(), jobsBefore, 'no task rescheduled (a done one stays without a job)');
  // The SQL function on its own is idempotent too (a DBA calling it by hand).
  const { rows } = await pool.query("select * from bastion_private.incomplete_cleanup_create($1::uuid[], $2::jsonb[], 'run')", [[runs[0]!.id], [JSON.stringify(runs[0]!.target_snapshot)]]);
  t.same(rows, [], 'creating an existing task does nothing');
});

t.test('the cutoff follows settings.incomplete_cleanup_days; 0 turns reconcile off', async (t) => {
  await setDays(7);
  await settleReconcile(pool);
  const job = await cleanupJob(db);
  const eight = await oldRun(db, job, { ageDays: 8 });
  const twenty = await oldRun(db, job, { ageDays: 20 });
  await setDays(0);
  const off = await reconcile();
  t.same([off.enabled, off.ran, off.enqueued], [false, false, 0], 'off');
  t.same((await pool.query('select * from bastion_private.incomplete_cleanup_reconcile(10)')).rows, [], 'the SQL batch does nothing either');
  t.equal(await cleanupTask(pool, twenty.id), undefined);
  await setDays(14);
  await reconcile();
  t.ok(await cleanupTask(pool, twenty.id), '20 days old > 14');
  t.equal(await cleanupTask(pool, eight.id), undefined, '8 days old < 14');
  await setDays(7);
  await reconcile();
  t.ok(await cleanupTask(pool, eight.id), '8 days old > 7');
  // The setting's own rules.
  await t.rejects(pool.query('select bastion.set_incomplete_cleanup_days(-1)'), { message: 'invalid_input', code: 'BA400' });
  await t.rejects(pool.query('select bastion.set_incomplete_cleanup_days(3651)'), { message: 'invalid_input' });
  await t.rejects(pool.query('select bastion.set_incomplete_cleanup_days(null)'), { message: 'invalid_input' });
  await t.rejects(pool.query('update bastion.settings set incomplete_cleanup_days = -3'), { code: '23514' });
  const admin = await makeUserRow(pool, 'admin');
  const operator = await makeUserRow(pool, 'operator');
  await t.rejects(asRole(pool, 'bastion_operator', operator, (c) => c.query('select bastion.set_incomplete_cleanup_days(3)')), { code: '42501' }, 'operators cannot change it');
  const set = await asRole(pool, 'bastion_admin', admin, (c) => c.query('select * from bastion.set_incomplete_cleanup_days(9)'));
  t.same([set.rows[0].incomplete_cleanup_days, set.rows[0].updated_by], [9, admin]);
  await setDays(7);
});

t.test('fallback: a run without a target snapshot gets the job spec\'s location, saved onto the run', async (t) => {
  await setDays(7);
  await settleReconcile(pool);
  const local = await cleanupJob(db, { baseDir: '/srv/backups' });
  const dav = await cleanupJob(db, { webdav: { base_url: 'https://dav.example/remote.php/dav/files/x', secret_name: 'nas' } });
  const a = await oldRun(db, local, { targetSnapshot: null });
  const b = await oldRun(db, dav, { targetSnapshot: null });
  logs.length = 0;
  const s = await reconcile();
  t.ok(s.fromJobSpec >= 2);
  const ta = await cleanupTask(pool, a.id);
  t.same([ta!.target_snapshot_source, ta!.target_snapshot], ['job_spec', { node_id: 'hub', target: { type: 'local_dir', base_dir: '/srv/backups' } }]);
  const tb = await cleanupTask(pool, b.id);
  t.same(tb!.target_snapshot, { node_id: 'hub', target: { type: 'webdav', base_url: 'https://dav.example/remote.php/dav/files/x/', secret_name: 'nas' } }, 'shaped like a run-start snapshot (trailing slash)');
  const saved = (await pool.query('select target_snapshot from bastion.runs where id = any($1) order by id', [[a.id, b.id].sort()])).rows.map((r) => r.target_snapshot);
  t.same(saved, [a.id, b.id].sort().map((id) => (id === a.id ? ta!.target_snapshot : tb!.target_snapshot)), 'saved back onto the runs');
  t.ok(logs.some((l) => l.startsWith('info') && l.includes(a.id) && l.includes("job's current spec")), 'logged');
  t.equal((await cleanupEvents(pool, a.id))[0]!.fields!['target_snapshot_source'], 'job_spec');
});

t.test('fallback: an unusable stored snapshot is kept on the run; the task uses the job spec', async (t) => {
  await setDays(7);
  await settleReconcile(pool);
  const job = await cleanupJob(db, { baseDir: '/srv/good' });
  const run = await oldRun(db, job);
  // Hand-edited: a credential in the URL, the wrong shape.
  const bad = { node_id: 'hub', target: { type: 'webdav', base_url: 'https://u:pw@dav.example/x', secret_name: 'n' } };
  await pool.query('update bastion.runs set target_snapshot = $2 where id = $1', [run.id, JSON.stringify(bad)]);
  await reconcile();
  const tk = await cleanupTask(pool, run.id);
  t.same([tk!.target_snapshot_source, tk!.target_snapshot.target.base_dir], ['job_spec', '/srv/good']);
  t.same((await pool.query('select target_snapshot from bastion.runs where id = $1', [run.id])).rows[0].target_snapshot, bad, 'the stored one stays as evidence');
});

t.test('runs whose job spec is invalid are skipped with a log line, once, until the job changes', async (t) => {
  await setDays(7);
  await settleReconcile(pool);
  const job = await makeJob(db, { spec: makeSpec() });
  const run = await oldRun(db, job, { targetSnapshot: null });
  // A spec edited by hand in psql: no target.
  await pool.query("update bastion.jobs set spec = spec - 'target' where id = $1", [job.id]);
  logs.length = 0;
  const s = await reconcile();
  t.equal(s.skipped, 1);
  t.equal(await cleanupTask(pool, run.id), undefined, 'no task');
  const line = logs.find((l) => l.includes(run.id));
  t.match(line, /^warn .*skipped \(invalid_job_spec\).*target/, 'a log line naming the run and the bad field');
  const skip = (await pool.query('select reason, message from bastion_private.incomplete_cleanup_skips where run_id = $1', [run.id])).rows[0];
  t.equal(skip.reason, 'invalid_job_spec');
  logs.length = 0;
  const again = await reconcile();
  t.equal(again.skipped, 0, 'not looked at again while the job is unchanged');
  t.notOk(logs.some((l) => l.includes(run.id)), 'no second log line');
  // The admin repairs the job: the run is tried again and gets its task.
  await pool.query(`update bastion.jobs set spec = jsonb_set(spec, '{target}', '{"type":"local_dir","base_dir":"/srv/fixed"}'), updated_at = now() + interval '1 second' where id = $1`, [job.id]);
  await reconcile();
  const tk = await cleanupTask(pool, run.id);
  t.same([tk?.status, tk?.target_snapshot.target.base_dir], ['queued', '/srv/fixed']);
  t.equal((await pool.query('select count(*)::int as n from bastion_private.incomplete_cleanup_skips where run_id = $1', [run.id])).rows[0].n, 0, 'the skip record is gone');
  // Hostile spec values never reach the log: the field is named, the value is not.
  const hostile = await makeJob(db, { spec: makeSpec() });
  const hr = await oldRun(db, hostile, { targetSnapshot: null });
  await pool.query(`update bastion.jobs set spec = jsonb_set(spec, '{target}', '{"type":"webdav","base_url":"https://admin:hunter2@dav.example/","secret_name":"n"}') where id = $1`, [hostile.id]);
  logs.length = 0;
  await reconcile();
  const hl = logs.find((l) => l.includes(hr.id));
  t.ok(hl, 'skipped');
  t.notOk(hl!.includes('hunter2'), 'no credential in the log');
  t.notOk(JSON.stringify((await pool.query('select * from bastion_private.incomplete_cleanup_skips where run_id = $1', [hr.id])).rows).includes('hunter2'), 'nor in the skip record');
});

t.test('bounded batches: a tick stops at its limit and the next one continues', async (t) => {
  await setDays(7);
  await settleReconcile(pool);
  const job = await cleanupJob(db);
  const runs = await Promise.all(Array.from({ length: 7 }, () => oldRun(db, job)));
  const s1 = await reconcile({ batchSize: 3, maxBatches: 2 });
  t.same([s1.batches, s1.enqueued, s1.more], [2, 6, true]);
  const s2 = await reconcile({ batchSize: 3, maxBatches: 2 });
  t.same([s2.enqueued, s2.more], [1, false]);
  for (const r of runs) t.ok(await cleanupTask(pool, r.id));
  const { rows } = await pool.query<{ n: number }>('select count(*)::int as n from bastion.incomplete_cleanup_tasks where run_id = any($1)', [runs.map((r) => r.id)]);
  t.equal(rows[0]!.n, 7, 'oldest first, each once');
  await t.rejects(pool.query('select * from bastion_private.incomplete_cleanup_reconcile(0)'), { message: 'invalid_input' });
});

t.test('concurrent reconcilers: one holds the lock, the other does nothing; racing SQL batches create each task once', async (t) => {
  await setDays(7);
  await settleReconcile(pool);
  const job = await cleanupJob(db);
  const runs = await Promise.all(Array.from({ length: 30 }, () => oldRun(db, job)));
  const holder = new pg.Client({ connectionString: url });
  await holder.connect();
  t.teardown(() => holder.end());
  await holder.query('select pg_advisory_lock(hashtextextended($1, 0))', [RECONCILE_LOCK_NAME]);
  const blocked = await reconcile();
  t.same([blocked.ran, blocked.enqueued], [false, 0], 'another worker is reconciling: this tick does nothing');
  await holder.query('select pg_advisory_unlock(hashtextextended($1, 0))', [RECONCILE_LOCK_NAME]);
  // The SQL batches themselves, raced on five connections (as a DBA and workers might).
  const clients = await Promise.all(Array.from({ length: 5 }, () => pool.connect()));
  try {
    await Promise.all(clients.map((c) => c.query('select * from bastion_private.incomplete_cleanup_reconcile(10)')));
    await Promise.all(clients.map((c) => c.query('select * from bastion_private.incomplete_cleanup_reconcile(10)')));
  } finally {
    for (const c of clients) c.release();
  }
  await reconcile();
  const { rows } = await pool.query<{ n: number; ev: number }>(
    "select count(distinct t.run_id)::int as n, count(e.*) filter (where e.kind = 'queued')::int as ev from bastion.incomplete_cleanup_tasks t join bastion.incomplete_cleanup_events e using (run_id) where t.run_id = any($1)",
    [runs.map((r) => r.id)],
  );
  t.same([rows[0]!.n, rows[0]!.ev], [30, 30], 'thirty tasks, one queued event each');
  const jobs = await pool.query<{ n: number }>("select count(*)::int as n from graphile_worker.jobs where key = any(select 'incomplete-cleanup:' || x from unnest($1::uuid[]) x)", [runs.map((r) => r.id)]);
  t.equal(jobs.rows[0]!.n, 30, 'one graphile job each');
});

t.test('claim and outcomes: done skip_complete / skip_not_found / deleted with their events', async (t) => {
  await parkCleanupTasks(pool);
  const job = await cleanupJob(db);
  const tasks = [await queuedTask(job), await queuedTask(job), await queuedTask(job)];
  const ids = tasks.map((x) => x.id);
  const claimed = await claimCleanup(pool, ids[0]!, 'w1', 10);
  t.same(claimed.map((c) => c.run_id).sort(), [...ids].sort(), 'the job\'s task and its due siblings');
  for (const id of ids) {
    const tk = await cleanupTask(pool, id);
    t.same([tk!.status, tk!.attempts, tk!.claimed_by], ['running', 1, 'w1']);
    t.same((await cleanupEvents(pool, id)).map((e) => e.kind), ['queued', 'attempt']);
    t.same(await cleanupJobs(pool, id), [], 'no graphile job while running');
  }
  t.same(await claimCleanup(pool, ids[0]!, 'w2'), [], 'a stale job claims nothing');
  const outcomes = ['skip_complete', 'skip_not_found', 'deleted'] as const;
  const changed = await finishCleanup(pool, ids.map((id, i) => ({ run_id: id, attempt: 1, outcome: outcomes[i], message: `m ${outcomes[i]}`, fields: { duration_ms: 3, url: 'https://dav.example/j/r/' } })), 'w1');
  t.same(changed.map((c) => c.status), ['done', 'done', 'done']);
  for (const [i, id] of ids.entries()) {
    const tk = await cleanupTask(pool, id);
    t.same([tk!.status, tk!.outcome, tk!.next_attempt_at, tk!.heartbeat_at], ['done', outcomes[i], null, null]);
    const ev = (await cleanupEvents(pool, id)).at(-1)!;
    t.same([ev.seq, ev.kind, ev.level, ev.message], [3, outcomes[i], 'info', `m ${outcomes[i]}`]);
    t.same(ev.fields, { attempt: 1, duration_ms: 3, url: 'https://dav.example/j/r/' });
  }
  const bad = await queuedTask(job);
  await claimCleanup(pool, bad.id, 'w1');
  await t.rejects(finishCleanup(pool, [{ run_id: bad.id, attempt: 1, outcome: 'not_found', message: 'x' }], 'w1'), { code: '23514' }, 'the delete queue\'s outcome is not this queue\'s');
});

t.test('failures: each cleanup kind → retrying or blocked with its backoff; http is not a cleanup kind', async (t) => {
  for (const kind of ['network', 'io', 'auth', 'config', 'unknown', 'offline'] as const) {
    const { id } = await queuedTask();
    await claimCleanup(pool, id, 'w');
    const before = Date.now();
    const [r] = await finishCleanup(pool, [{ run_id: id, attempt: 1, kind, error: `${kind} went wrong`, fields: { http_status: 503, url: 'https://dav.example/x/' } }], 'w');
    const expected: TaskStatus = kind === 'auth' || kind === 'config' ? 'blocked' : 'retrying';
    t.equal(r!.status, expected, `${kind} → ${expected}`);
    const tk = await cleanupTask(pool, id);
    t.same([tk!.last_error_kind, tk!.last_error], [kind, `${kind} went wrong`]);
    const wait = (tk!.next_attempt_at.getTime() - before) / 1000;
    t.ok(Math.abs(wait - backoffSeconds(kind, 1, id)) < 3, `${kind}: waits ${wait.toFixed(0)} s ≈ backoff`);
    const jobs = await cleanupJobs(pool, id);
    t.equal(jobs[0]!.run_at.getTime(), tk!.next_attempt_at.getTime(), 'graphile job at next_attempt_at');
    const ev = (await cleanupEvents(pool, id)).at(-1)!;
    t.same([ev.kind, ev.level, ev.fields!['error_kind'], ev.fields!['http_status'], ev.fields!['url']], [expected === 'blocked' ? 'blocked' : 'failed', 'warn', kind, 503, 'https://dav.example/x/']);
  }
  const { id } = await queuedTask();
  await claimCleanup(pool, id, 'w');
  await t.rejects(finishCleanup(pool, [{ run_id: id, attempt: 1, kind: 'http', error: '400' }], 'w'), { code: '23514' }, 'the table refuses http (the worker maps it)');
});

t.test('abandoned after 20 attempts or 30 days; retry-now restarts the cycle', async (t) => {
  const a = await queuedTask();
  const b = await queuedTask();
  await pool.query("update bastion.incomplete_cleanup_tasks set status = 'retrying', attempts = 19, last_error_kind = 'network', last_error = 'x' where run_id = $1", [a.id]);
  await claimCleanup(pool, a.id, 'w');
  t.same((await finishCleanup(pool, [{ run_id: a.id, attempt: 20, kind: 'network', error: 'still down' }], 'w')).map((r) => r.status), ['abandoned']);
  const ev = (await cleanupEvents(pool, a.id)).at(-1)!;
  t.same([ev.kind, ev.level, ev.fields!['abandon_reason']], ['abandoned', 'error', 'max_attempts']);
  t.same(await cleanupJobs(pool, a.id), [], 'no more attempts scheduled');
  await pool.query("update bastion.incomplete_cleanup_tasks set cycle_started_at = now() - interval '30 days 1 minute' where run_id = $1", [b.id]);
  await claimCleanup(pool, b.id, 'w');
  await finishCleanup(pool, [{ run_id: b.id, attempt: 1, kind: 'io', error: 'EIO' }], 'w');
  t.equal((await cleanupEvents(pool, b.id)).at(-1)!.fields!['abandon_reason'], 'max_age');
  const r = await pool.query('select * from bastion.retry_incomplete_cleanup_now($1)', [a.id]);
  t.same([r.rows[0].status, r.rows[0].attempts], ['queued', 0]);
  t.equal((await cleanupEvents(pool, a.id)).at(-1)!.kind, 'retry_now');
});

t.test('watchdog: a stale running cleanup goes back to retrying; release gives unstarted claims back', async (t) => {
  await parkCleanupTasks(pool);
  const a = await queuedTask();
  const b = await queuedTask();
  await claimCleanup(pool, a.id, 'dead-worker');
  await pool.query("update bastion.incomplete_cleanup_tasks set heartbeat_at = now() - interval '2 minutes' where run_id = $1", [a.id]);
  const { rows } = await pool.query("select * from bastion_private.task_watchdog('40 seconds', '0 seconds') where queue = 'incomplete_cleanup'");
  t.same(rows.map((r) => [r.run_id, r.status]), [[a.id, 'retrying']]);
  const tk = await cleanupTask(pool, a.id);
  t.same([tk!.status, tk!.last_error_kind, tk!.last_error], ['retrying', 'unknown', 'stuck running; recovered']);
  t.same((await cleanupEvents(pool, a.id)).at(-1)!.kind, 'failed');
  t.equal((await cleanupJobs(pool, a.id)).length, 1, 'rescheduled');
  await claimCleanup(pool, b.id, 'w');
  const n = await pool.query<{ n: number }>("select bastion_private.task_release('incomplete_cleanup', 'w', $1::uuid[]) as n", [[b.id]]);
  t.equal(n.rows[0]!.n, 1);
  t.same([(await cleanupTask(pool, b.id))!.status, (await cleanupEvents(pool, b.id)).at(-1)!.kind], ['queued', 'released']);
});

t.test('operator actions: every status against retry-now, ignore, unignore (409 rules of core/task-status.ts)', async (t) => {
  const user = await makeUserRow(pool);
  const job = await cleanupJob(db);
  for (const status of TASK_STATUSES) {
    for (const action of ['retry_now', 'ignore', 'unignore'] as const) {
      const run = await oldRun(db, job);
      await makeCleanupTask(db, run as never, { status, attempts: status === 'queued' ? 0 : 2 });
      const fn = { retry_now: 'retry_incomplete_cleanup_now($1)', ignore: "ignore_incomplete_cleanup($1, 'keep it')", unignore: 'unignore_incomplete_cleanup($1)' }[action];
      const expected = checkTaskAction(action, status);
      const before = Date.now();
      const got = await asRole(pool, 'bastion_operator', user, (c) => c.query(`select * from bastion.${fn}`, [run.id])).then(
        (r) => ({ ok: true as const, row: r.rows[0] }),
        (e: { code?: string; message?: string }) => ({ ok: false as const, code: e.message, sqlstate: e.code }),
      );
      if (!expected.ok) {
        t.equal(got.ok ? 'accepted' : got.code, expected.code, `${action} from ${status} → ${expected.code}`);
        if (!got.ok) t.equal(got.sqlstate, 'BA409');
        t.equal((await cleanupTask(pool, run.id))!.status, status, 'unchanged');
        continue;
      }
      t.ok(got.ok, `${action} from ${status} accepted`);
      if (!got.ok) continue;
      const want = action === 'ignore' ? 'ignored' : 'queued';
      t.equal(got.row.status, want, `${action} from ${status} → ${want}`);
      if (want === 'queued') {
        t.equal(got.row.attempts, 0);
        const jobs = await cleanupJobs(pool, run.id);
        t.equal(jobs.length, 1, 'scheduled');
        t.ok(jobs[0]!.run_at.getTime() <= Date.now() + 1000 && jobs[0]!.run_at.getTime() >= before - 5000, 'due now: a worker wakes at once');
      } else {
        t.same(await cleanupJobs(pool, run.id), [], 'no attempts while ignored');
        if (status !== 'ignored') t.same([got.row.ignore_reason, got.row.ignored_by], ['keep it', user]);
      }
      if (!(action === 'ignore' && status === 'ignored')) {
        const ev = (await cleanupEvents(pool, run.id)).at(-1)!;
        t.equal(ev.kind, { retry_now: 'retry_now', ignore: 'ignored', unignore: 'unignored' }[action]);
        t.equal(ev.fields!['user_id'], user);
      }
    }
  }
});

t.test('operator actions: 404, grants, and the two 409s the issue names', async (t) => {
  await t.rejects(pool.query('select bastion.retry_incomplete_cleanup_now($1)', [randomUUID()]), { message: 'cleanup_task_not_found', code: 'BA404' });
  const running = await oldRun(db, await cleanupJob(db));
  await makeCleanupTask(db, running as never, { status: 'running' });
  await t.rejects(pool.query('select bastion.ignore_incomplete_cleanup($1)', [running.id]), { message: 'task_running', code: 'BA409' }, 'ignore of a running task refused');
  const done = await oldRun(db, await cleanupJob(db));
  await makeCleanupTask(db, done as never, { status: 'done', outcome: 'skip_complete' });
  await t.rejects(pool.query('select bastion.retry_incomplete_cleanup_now($1)', [done.id]), { message: 'not_retryable', code: 'BA409' }, 'retry-now of a done task refused');
  const viewer = await makeUserRow(pool, 'viewer');
  await t.rejects(asRole(pool, 'bastion_viewer', viewer, (c) => c.query('select bastion.retry_incomplete_cleanup_now($1)', [done.id])), { code: '42501' });
  for (const fn of ['incomplete_cleanup_reconcile(10)', `incomplete_cleanup_enqueue('${done.id}', '{}')`, `incomplete_cleanup_skip('${done.id}', 'x', 'y')`]) {
    await t.rejects(asRole(pool, 'bastion_admin', viewer, (c) => c.query(`select * from bastion_private.${fn}`)), { code: '42501' }, `${fn.split('(')[0]} is for workers`);
  }
  const rows = await asRole(pool, 'bastion_viewer', viewer, (c) => c.query('select count(*)::int as n from bastion.incomplete_cleanup_tasks'));
  t.ok(rows.rows[0].n >= 2, 'viewers read the queue');
  const ev = await asRole(pool, 'bastion_viewer', viewer, (c) => c.query('select count(*)::int as n from bastion.incomplete_cleanup_events'));
  t.ok(ev.rows[0].n >= 2, 'and its events');
});

t.test('NOTIFY bastion:run:<run_id>:cleanup on task changes and new events; heartbeats stay silent', async (t) => {
  const listener = new pg.Client({ connectionString: url });
  await listener.connect();
  t.teardown(() => listener.end());
  const { id } = await queuedTask();
  const got: Array<Record<string, unknown>> = [];
  listener.on('notification', (n) => got.push({ channel: n.channel, ...JSON.parse(n.payload ?? '{}') }));
  await listener.query(`listen "bastion:run:${id}:cleanup"`);
  await claimCleanup(pool, id, 'w');
  await pool.query("select bastion_private.task_heartbeat('incomplete_cleanup', 'w', $1::uuid[])", [[id]]);
  await finishCleanup(pool, [{ run_id: id, attempt: 1, outcome: 'deleted', message: 'gone' }], 'w');
  await new Promise((r) => setTimeout(r, 200));
  const tasks = got.filter((g) => g['table'] === 'incomplete_cleanup_tasks');
  const events = got.filter((g) => g['table'] === 'incomplete_cleanup_events');
  t.same(tasks.map((g) => g['status']), ['running', 'done'], 'one notification per state change, none for the heartbeat');
  t.same(events.map((g) => [g['seq'], g['kind']]), [[2, 'attempt'], [3, 'deleted']]);
  t.ok(got.every((g) => g['channel'] === `bastion:run:${id}:cleanup` && g['run_id'] === id));
});

t.test('the task table refuses states that break its invariants (CHECKs)', async (t) => {
  const { id } = await queuedTask();
  const bad = [
    "status = 'done'",
    "status = 'running'",
    'next_attempt_at = null',
    "status = 'blocked', attempts = 1, last_error_kind = 'network', last_error = 'x'",
    "status = 'retrying', attempts = 1, last_error_kind = 'http', last_error = 'x'",
    "status = 'ignored'",
    "last_error = repeat('x', 501)",
    "outcome = 'not_found'",
    "target_snapshot_source = 'guess'",
    "node_id = 'elsewhere'",
  ];
  for (const set of bad) await t.rejects(pool.query(`update bastion.incomplete_cleanup_tasks set ${set} where run_id = $1`, [id]), { code: /^(23514|BA400)$/ }, set);
  await t.rejects(pool.query("select bastion_private.task_append_event('incomplete_cleanup', $1, 'info', 'Not A Kind!', 'x')", [id]), { code: '23514' }, 'event kinds are machine-readable words');
});
