import { quickAddJob, runOnce } from 'graphile-worker';
import t from 'tap';
import { testDatabase } from '../../test/db.ts';
import { makeJob, makeRun, makeSnapshot } from '../../test/factories.ts';
import { taskList } from '../runner.ts';
import { PRUNE_RUN_HISTORY } from './prune-run-history.ts';

const DAY = 86_400_000;
const daysAgo = (n: number) => new Date(Date.now() - n * DAY);

async function runPruneTask(pool: import('pg').Pool): Promise<void> {
  await quickAddJob({ pgPool: pool }, PRUNE_RUN_HISTORY, {});
  await runOnce({ pgPool: pool, taskList: taskList() });
}

t.test('prunes ended runs past run_retention_days unless their snapshot is live', async (t) => {
  const { db, pool } = await testDatabase(t);
  const job = await makeJob(db);
  const oldFailed = await makeRun(db, job, { status: 'failed', endedAt: daysAgo(200) });
  const oldRejected = await makeRun(db, job, { status: 'rejected', endedAt: daysAgo(181) });
  const oldSuccessNoSnapshot = await makeRun(db, job, { status: 'success', endedAt: daysAgo(190) });
  const deleted = await makeSnapshot(db, job, { status: 'deleted', endedAt: daysAgo(300) });
  const missing = await makeSnapshot(db, job, { status: 'missing', endedAt: daysAgo(300) });
  const present = await makeSnapshot(db, job, { status: 'present', endedAt: daysAgo(300) });
  const deleting = await makeSnapshot(db, job, { status: 'deleting', endedAt: daysAgo(300) });
  const error = await makeSnapshot(db, job, { status: 'error', endedAt: daysAgo(300) });
  const recentFailed = await makeRun(db, job, { status: 'failed', endedAt: daysAgo(10) });
  const running = await makeRun(db, job, { status: 'running', startedAt: daysAgo(400) });
  const queued = await makeRun(db, job, { status: 'queued' });
  await pool.query(`select bastion_private.append_run_event($1, 'info', 'start', 'started')`, [oldFailed.id]);

  await runPruneTask(pool);

  const left = new Set((await db.selectFrom('bastion.runs').select('id').execute()).map((r) => r.id));
  t.notOk(left.has(oldFailed.id), 'old failed run pruned');
  t.notOk(left.has(oldRejected.id), 'old rejected run pruned');
  t.notOk(left.has(oldSuccessNoSnapshot.id), 'old success run without snapshot row pruned');
  t.notOk(left.has(deleted.run_id), 'run of a deleted snapshot pruned');
  t.notOk(left.has(missing.run_id), 'run of a missing snapshot pruned');
  t.ok(left.has(present.run_id), 'run of a present snapshot kept');
  t.ok(left.has(deleting.run_id), 'run of a deleting snapshot kept');
  t.ok(left.has(error.run_id), 'run of an error snapshot kept');
  t.ok(left.has(recentFailed.id), 'recent run kept');
  t.ok(left.has(running.id), 'running run kept, however old');
  t.ok(left.has(queued.id), 'queued run kept');
  const artifacts = (await db.selectFrom('bastion.run_artifacts').select('run_id').execute()).map((r) => r.run_id).sort();
  t.same(artifacts, [present.run_id, deleting.run_id, error.run_id].sort(), 'index rows of pruned runs went with them');
  const events = await db.selectFrom('bastion.run_events').selectAll().execute();
  t.same(events, [], 'events of pruned runs went with them');

  await pool.query('update bastion.settings set run_retention_days = 5');
  await runPruneTask(pool);
  t.notOk((await db.selectFrom('bastion.runs').select('id').where('id', '=', recentFailed.id).execute()).length, 'a shorter setting applies on the next tick');
});

t.test('large backlogs are pruned in batches within one tick', async (t) => {
  const { db, pool } = await testDatabase(t);
  const job = await makeJob(db);
  await pool.query(
    `insert into bastion.runs (job_id, node_id, status, trigger, created_at, started_at, ended_at, error_code)
     select $1, 'hub', 'failed', 'manual', now() - interval '400 days', now() - interval '400 days', now() - interval '399 days', 'source_not_found'
       from generate_series(1, 2500)`,
    [job.id],
  );
  await runPruneTask(pool);
  const { rows } = await pool.query('select count(*)::int as n from bastion.runs');
  t.equal(rows[0].n, 0);
});
