/**
 * The life of runs with real workers: overlap policies, the scheduler under
 * two concurrent worker pools, the watchdog (a stale heartbeat, and a real
 * `bastion worker` process killed with SIGKILL mid-run), and a graceful
 * shutdown that puts a run back in the queue so the next attempt resumes it.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { makeWorkerUtils, type TaskList } from 'graphile-worker';
import { pino } from 'pino';
import t from 'tap';
import { createPool } from '../db/pool.ts';
import { getRun, getRunDetail, listRunEvents, recoverRuns, requestRun, type RunRow } from '../db/queries/runs.ts';
import { putWebdavSecret } from '../engine/secrets/secret-store.ts';
import { startWorkers } from '../worker/runner.ts';
import { executeRun } from '../worker/tasks/run-backup.ts';
import { scheduleDueRuns } from '../worker/tasks/schedule-runs.ts';
import { taskList } from '../worker/runner.ts';
import { createTestJob, drain, exists, harness, MiB, specFor, waitFor, type Harness } from './backup-harness.ts';
import { makeJob, makeRun } from './factories.ts';
import { startFaultProxy } from './fault-proxy.ts';
import { startWebdavServer } from './webdav-server.ts';

const MAIN = path.resolve(import.meta.dirname, '../cli/main.ts');
const quiet = pino({ level: 'silent' });

async function finalRun(h: Harness, id: string): Promise<RunRow> {
  return waitFor(async () => {
    const r = await getRun(h.tdb.pool, id);
    return r && r.ended_at ? r : null;
  }, `run ${id} to end`, 60_000);
}

t.test('overlap queue: a second request waits and runs after the first, never alongside', async (t) => {
  const h = await harness(t, { bigBytes: 2 * MiB });
  const job = await createTestJob(h, specFor(h), { overlap_policy: 'queue' });
  const first = await requestRun(h.tdb.pool, job.id);
  const second = await requestRun(h.tdb.pool, job.id);
  t.same([first.status, second.status], ['queued', 'queued']);
  const workers = await startWorkers({ pool: h.tdb.pool, logger: quiet, concurrency: 4, pollIntervalMs: 100, dataDir: h.dataDir, secretKey: h.secretKey, timing: h.ctx.timing });
  t.teardown(() => workers.stop());
  const [a, b] = [await finalRun(h, first.id), await finalRun(h, second.id)];
  t.same([a.status, b.status], ['success', 'success']);
  t.ok(b.started_at!.getTime() >= a.ended_at!.getTime(), 'the second started after the first ended (named queue run-backup:<job_id>)');
});

t.test('overlap reject: a request while another run is queued is recorded rejected; later ones run', async (t) => {
  const h = await harness(t, { bigBytes: 1000 });
  const job = await createTestJob(h, specFor(h), { overlap_policy: 'reject' });
  const first = await requestRun(h.tdb.pool, job.id);
  const second = await requestRun(h.tdb.pool, job.id);
  t.equal(first.status, 'queued');
  t.match(second, { status: 'rejected', error_code: 'overlap_rejected', error: new RegExp(first.id) });
  t.ok(second.ended_at, 'a rejected run has ended');
  const ev = await listRunEvents(h.tdb.pool, second.id);
  t.match(ev, [{ kind: 'rejected', level: 'warn', fields: { error_code: 'overlap_rejected', active_run_id: first.id } }]);
  const { rows } = await h.tdb.pool.query(`select count(*)::int as n from graphile_worker.jobs where key = $1`, [`run-backup:${second.id}`]);
  t.equal(rows[0].n, 0, 'a rejected run has no queue entry');
  await drain(h);
  t.equal((await getRun(h.tdb.pool, first.id))!.status, 'success');
  const third = await requestRun(h.tdb.pool, job.id);
  t.equal(third.status, 'queued', 'nothing active any more: accepted');
  // Concurrent requests: exactly one of ten is accepted while the others are rejected.
  await drain(h);
  const pools = Array.from({ length: 10 }, () => createPool({ connectionString: h.tdb.url, max: 1 }));
  t.teardown(() => Promise.all(pools.map((p) => p.end())));
  const runs = await Promise.all(pools.map((p) => requestRun(p, job.id)));
  t.equal(runs.filter((r) => r.status === 'queued').length, 1, 'one accepted');
  t.equal(runs.filter((r) => r.status === 'rejected').length, 9, 'nine rejected');
});

t.test('scheduler: two worker pools on the same tick create exactly one run per slot', async (t) => {
  const h = await harness(t, { tree: false });
  const pool = h.tdb.pool;
  const jobs = [];
  for (let i = 0; i < 12; i++) jobs.push(await createTestJob(h, specFor(h), { schedule: '* * * * *', name: `every-minute-${i}` }));
  const manual = await createTestJob(h, specFor(h), { name: 'manual-only' });
  const archived = await makeJob(h.tdb.db, { schedule: '* * * * *', archived_at: new Date() });
  // Pretend the jobs were created three minutes ago; the tick is at the start of this minute + 5 s.
  const now = new Date(Math.floor(Date.now() / 60_000) * 60_000 + 5_000);
  const slot = new Date(now.getTime() - 5_000);
  await pool.query(`update bastion.jobs set schedule_cursor = $1`, [new Date(now.getTime() - 180_000)]);

  // Two real worker pools, each on its own connection pool, without the run-backup task (runs stay queued).
  const noBackup = (): TaskList => {
    const tasks = taskList(h.ctx);
    delete tasks['run-backup'];
    return tasks;
  };
  const poolA = createPool({ connectionString: h.tdb.url, max: 6 });
  const poolB = createPool({ connectionString: h.tdb.url, max: 6 });
  t.teardown(async () => {
    await poolA.end();
    await poolB.end();
  });
  const a = await startWorkers({ pool: poolA, logger: quiet, concurrency: 4, pollIntervalMs: 50, tasks: noBackup(), dataDir: h.dataDir });
  const b = await startWorkers({ pool: poolB, logger: quiet, concurrency: 4, pollIntervalMs: 50, tasks: noBackup(), dataDir: h.dataDir });
  t.teardown(async () => {
    await a.stop();
    await b.stop();
  });
  const utils = await makeWorkerUtils({ pgPool: pool });
  t.teardown(() => utils.release());
  for (let i = 0; i < 16; i++) await utils.addJob('schedule-runs', { now: now.toISOString() });
  await waitFor(async () => (await pool.query(`select count(*)::int as n from graphile_worker.jobs where task_identifier = 'schedule-runs'`)).rows[0].n === 0, 'the ticks to be processed');

  const { rows } = await pool.query<{ job_id: string; scheduled_for: Date; status: string; trigger: string; n: number }>(
    `select job_id, scheduled_for, status, trigger, count(*) over (partition by job_id)::int as n from bastion.runs order by job_id`,
  );
  t.equal(rows.length, jobs.length, 'one run per scheduled job');
  t.ok(rows.every((r) => r.n === 1 && r.scheduled_for.getTime() === slot.getTime() && r.trigger === 'schedule' && r.status === 'queued'), 'each for the latest slot only (catch-up: one run, not three)');
  t.notOk(rows.some((r) => r.job_id === manual.id || r.job_id === archived.id), 'manual and archived jobs are not scheduled');

  // Directly, with no worker in between: ten concurrent ticks on ten connections for the next slot.
  const next = new Date(now.getTime() + 60_000);
  const pools = Array.from({ length: 10 }, () => createPool({ connectionString: h.tdb.url, max: 1 }));
  t.teardown(() => Promise.all(pools.map((p) => p.end())));
  const results = await Promise.all(pools.map((p) => scheduleDueRuns(p, next)));
  const created = results.reduce((n, r) => n + r.created.length, 0);
  const perJob = await pool.query<{ n: number }>(`select count(*)::int as n from bastion.runs group by job_id, scheduled_for having count(*) > 1`);
  t.same(perJob.rows, [], 'never two runs for one (job, slot)');
  t.equal(created, jobs.length, 'each job got exactly one run for the next slot');
  t.same((await scheduleDueRuns(pool, now)).created, [], 'a repeated tick for a scheduled slot does nothing');
});

t.test('scheduler + overlap reject: a slot that comes while the previous run is still queued is recorded rejected', async (t) => {
  const h = await harness(t, { tree: false });
  const job = await createTestJob(h, specFor(h), { schedule: '*/5 * * * *', overlap_policy: 'reject' });
  const now = new Date(Math.floor(Date.now() / 300_000) * 300_000 + 1000);
  await h.tdb.pool.query(`update bastion.jobs set schedule_cursor = $1`, [new Date(now.getTime() - 900_000)]);
  const first = await scheduleDueRuns(h.tdb.pool, new Date(now.getTime() - 300_000));
  const second = await scheduleDueRuns(h.tdb.pool, now);
  t.equal(first.created[0]!.status, 'queued');
  t.match(second.created[0], { status: 'rejected', error_code: 'overlap_rejected', trigger: 'schedule' });
  t.equal(second.created[0]!.scheduled_for!.getTime(), new Date(now.getTime() - 1000).getTime(), 'the slot is consumed');
  // Editing the schedule never fires a slot that already passed.
  await h.tdb.pool.query(
    `select bastion.update_job(id, null, name, node_id, '0 * * * *', schedule_timezone, overlap_policy, spec) from bastion.jobs where id = $1`,
    [job.id],
  );
  t.same((await scheduleDueRuns(h.tdb.pool, new Date())).created, [], 'no immediate run after a schedule edit');
});

t.test('watchdog: a running run with a stale heartbeat fails with worker_lost; a live one is left alone', async (t) => {
  const h = await harness(t, { tree: false });
  const job = await makeJob(h.tdb.db);
  const stale = await makeRun(h.tdb.db, job, { status: 'running' });
  const live = await makeRun(h.tdb.db, job, { status: 'running' });
  await h.tdb.pool.query(`update bastion.runs set heartbeat_at = now() - interval '46 seconds' where id = $1`, [stale.id]);
  await h.tdb.pool.query(`update bastion.runs set heartbeat_at = now() - interval '30 seconds' where id = $1`, [live.id]);
  const r = await recoverRuns(h.tdb.pool, 45);
  t.match(r, { lost: 1 });
  const { run, events } = await getRunDetail(h.tdb.pool, stale.id);
  t.match(run, { status: 'failed', error_code: 'worker_lost', error: /no heartbeat from the worker since/ });
  t.match(events.at(-1), { kind: 'failed', level: 'error', fields: { error_code: 'worker_lost' } });
  t.equal((await getRun(h.tdb.pool, live.id))!.status, 'running', 'a run that beat 30 s ago is alive');
  t.match(await recoverRuns(h.tdb.pool, 45), { lost: 0 }, 'idempotent');
  await t.rejects(recoverRuns(h.tdb.pool, 1), { code: 'invalid_input' }, 'a staleness shorter than the heartbeat is refused');

  // A queued run whose queue entry vanished is queued again.
  const orphan = await makeRun(h.tdb.db, job, { status: 'queued' });
  await h.tdb.pool.query(`update bastion.runs set created_at = now() - interval '5 minutes' where id = $1`, [orphan.id]);
  t.match(await recoverRuns(h.tdb.pool, 45), { requeued: 1 });
  const { rows } = await h.tdb.pool.query(`select queue_name from graphile_worker.jobs where key = $1`, [`run-backup:${orphan.id}`]);
  t.same(rows, [{ queue_name: `run-backup:${job.id}` }]);
});

t.test('a bastion worker process killed with SIGKILL mid-run: the watchdog fails the run and frees the job queue', async (t) => {
  const h = await harness(t, { bigBytes: 2 * MiB });
  const dav = await startWebdavServer(t);
  const proxy = await startFaultProxy(t, dav.url);
  await putWebdavSecret(h.tdb.pool, h.ctx.secrets, 'hub', 'nas', { username: dav.username, password: dav.password });
  const job = await createTestJob(h, specFor(h, { target: { type: 'webdav', base_url: proxy.url, secret_name: 'nas' } }));
  // The run hangs when it stores its manifest: mid-run for as long as we like.
  proxy.inject({ method: 'PUT', path: /manifest\.json$/, action: { kind: 'hang' } });
  const run = await requestRun(h.tdb.pool, job.id);

  const child = spawn(process.execPath, [MAIN, 'worker'], {
    env: { PATH: process.env.PATH ?? '', DATABASE_URL: h.tdb.url, BASTION_DATA_DIR: h.dataDir, BASTION_SECRET_KEY: h.secretKey, BASTION_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d));
  child.stderr.on('data', (d: Buffer) => (output += d));
  const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, signal) => r(signal)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  // A loaded machine (the whole suite on two cores) can take tens of seconds to start a Node process.
  await waitFor(async () => output.includes('Bastion worker running'), 'the worker process to start', 90_000);
  await waitFor(async () => proxy.requests.some((r) => r.method === 'PUT' && r.path.endsWith('manifest.json')), 'the worker to reach the manifest');
  const running = (await getRun(h.tdb.pool, run.id))!;
  t.equal(running.status, 'running');
  const { rows: locked } = await h.tdb.pool.query(`select locked_by from graphile_worker.jobs where key = $1`, [`run-backup:${run.id}`]);
  t.ok(locked[0]?.locked_by, 'the worker holds the queue job');

  child.kill('SIGKILL');
  t.equal(await exited, 'SIGKILL');
  // Instead of waiting 45 s: the last heartbeat is now old, as it would be after 45 s of silence.
  await h.tdb.pool.query(`update bastion.runs set heartbeat_at = now() - interval '50 seconds' where id = $1`, [run.id]);
  const utils = await makeWorkerUtils({ pgPool: h.tdb.pool });
  t.teardown(() => utils.release());
  await utils.addJob('run-watchdog', {});
  await drain(h);
  const { run: failed, events } = await getRunDetail(h.tdb.pool, run.id);
  t.match(failed, { status: 'failed', error_code: 'worker_lost' });
  t.match(events.at(-1), { kind: 'failed', fields: { error_code: 'worker_lost', worker_id: locked[0].locked_by } });

  // The dead worker's lock on queue run-backup:<job_id> is gone: the next run of the job executes now, not in 4 hours.
  proxy.clearRules();
  const next = await requestRun(h.tdb.pool, job.id);
  await drain(h);
  t.equal((await getRun(h.tdb.pool, next.id))!.status, 'success');
  t.notOk(await exists(`${h.dataDir}/staging/${run.id}`), 'the dead run\'s staging directory was swept');
});

t.test('graceful shutdown mid-run: the run goes back to the queue and the next attempt resumes it', async (t) => {
  const h = await harness(t, { bigBytes: 6 * MiB });
  const dav = await startWebdavServer(t);
  const proxy = await startFaultProxy(t, dav.url);
  await putWebdavSecret(h.tdb.pool, h.ctx.secrets, 'hub', 'nas', { username: dav.username, password: dav.password });
  const job = await createTestJob(h, specFor(h, { target: { type: 'webdav', base_url: proxy.url, secret_name: 'nas' } }));
  proxy.inject({ method: 'PUT', path: /payload\.part/, action: { kind: 'delay', ms: 300 } });
  const run = await requestRun(h.tdb.pool, job.id);
  const workers = await startWorkers({ pool: h.tdb.pool, logger: quiet, concurrency: 2, pollIntervalMs: 100, shutdownAbortTimeoutMs: 50, dataDir: h.dataDir, secretKey: h.secretKey, timing: h.ctx.timing });
  await waitFor(async () => ((await getRun(h.tdb.pool, run.id))?.progress?.['stored_files'] as number) >= 1, 'a part to be stored');
  await workers.stop();

  const requeued = await getRunDetail(h.tdb.pool, run.id);
  t.match(requeued.run, { status: 'queued', ended_at: null, error_code: null });
  t.ok(requeued.run.started_at, 'started_at is kept');
  t.match(requeued.events.at(-1), { kind: 'requeued', level: 'warn' });
  const { rows } = await h.tdb.pool.query(`select locked_at, queue_name from graphile_worker.jobs where key = $1`, [`run-backup:${run.id}`]);
  t.same(rows, [{ locked_at: null, queue_name: `run-backup:${job.id}` }], 'queued again, unlocked');
  t.ok(await exists(`${h.dataDir}/staging/${run.id}`), 'staging (resume journal) kept');

  proxy.clearRules();
  proxy.clearRequests();
  await drain(h);
  const done = await getRunDetail(h.tdb.pool, run.id);
  t.equal(done.run.status, 'success');
  const summary = done.run.summary as { resumed: { skipped_files: number }; parts: number };
  t.ok(summary.resumed.skipped_files >= 1, `parts stored before the shutdown were not sent again (${summary.resumed.skipped_files} of ${summary.parts})`);
  t.ok(proxy.requests.filter((r) => r.method === 'PUT' && /payload\.part/.test(r.path)).length < summary.parts, 'fewer part uploads than parts');
  const starts = done.events.filter((e) => e.kind === 'start');
  t.match(starts, [{ fields: { resumed: false } }, { fields: { resumed: true }, message: /^resumed/ }]);
});

t.test('repeated deliveries, archived jobs and runs ended elsewhere end quietly', async (t) => {
  const h = await harness(t, { bigBytes: 1000 });
  const job = await createTestJob(h, specFor(h));
  const run = await requestRun(h.tdb.pool, job.id);
  t.equal(await executeRun(h.ctx, run.id), 'success');
  t.equal(await executeRun(h.ctx, run.id), 'skipped', 'a second delivery of the same run does nothing');
  t.equal(await executeRun(h.ctx, '00000000-0000-4000-8000-000000000000'), 'skipped', 'an unknown run');

  const queued = await requestRun(h.tdb.pool, job.id);
  await h.tdb.pool.query('update bastion.jobs set archived_at = now() where id = $1', [job.id]);
  t.equal(await executeRun(h.ctx, queued.id), 'skipped');
  const { run: canceled, events } = await getRunDetail(h.tdb.pool, queued.id);
  t.match(canceled, { status: 'canceled', error_code: 'job_archived' });
  t.match(events.at(-1), { kind: 'canceled' });
  await t.rejects(requestRun(h.tdb.pool, job.id), { code: 'job_archived' });
  await t.rejects(requestRun(h.tdb.pool, '00000000-0000-4000-8000-000000000000'), { code: 'job_not_found' });

  // Requests are operator business: a viewer is refused by PostgreSQL.
  const c = await h.tdb.pool.connect();
  t.teardown(() => c.release());
  await c.query('begin; set local role bastion_viewer');
  await t.rejects(c.query('select bastion.request_run($1)', [job.id]), { code: '42501' });
  await c.query('rollback');
  await c.query('begin; set local role bastion_operator');
  await t.rejects(c.query(`select bastion.create_job('x', 'hub', null, 'UTC', 'queue', '{}')`), { code: '42501' }, 'operators do not define jobs');
  await c.query('rollback');
  for (const fn of [`bastion.start_run($1, '{}')`, `bastion.fail_run($1, 'x', 'y')`, `bastion.heartbeat_run($1)`, `bastion.upsert_run_artifact($1)`, `bastion.schedule_run($1, now())`]) {
    await c.query('begin; set local role bastion_admin');
    await t.rejects(c.query(`select ${fn}`, [run.id]), { code: '42501' }, `worker function ${fn.split('(')[0]} is not for application roles, not even admins`);
    await c.query('rollback');
  }
});

t.test('scheduler: a job whose schedule was broken by hand is skipped and reported; the others still run', async (t) => {
  const h = await harness(t, { tree: false });
  const good = await createTestJob(h, specFor(h), { schedule: '* * * * *' });
  const broken = await makeJob(h.tdb.db, { schedule: 'every full moon', spec: specFor(h) });
  const badZone = await makeJob(h.tdb.db, { schedule: '* * * * *', schedule_timezone: 'Moon/Tranquility', spec: specFor(h) });
  await h.tdb.pool.query(`update bastion.jobs set schedule_cursor = now() - interval '5 minutes'`);
  const problems: string[] = [];
  const r = await scheduleDueRuns(h.tdb.pool, new Date(), (jobId) => problems.push(jobId));
  t.same(r.created.map((x) => x.job_id), [good.id]);
  t.equal(r.invalid, 2);
  t.same(problems.sort(), [broken.id, badZone.id].sort());
});
