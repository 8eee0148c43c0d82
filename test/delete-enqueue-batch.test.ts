/**
 * The delete queue's request function called for many jobs at once
 * (bastion_private.enqueue_snapshot_deletes with p_job_id NULL: each
 * snapshot's own job) and with extra event fields (p_fields), as the
 * retention tick uses it: one call per policy and 1000 snapshots instead of
 * one per job. The public request functions still need their job.
 */
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { policyHash } from '../core/retention-policy.ts';
import { runRetentionTick } from '../engine/retention/retention-tick.ts';
import { testDatabase } from './db.ts';
import { asRole, events, graphileJobs, jobWithSnapshots, makeUserRow, snapshotRow, task } from './delete-queue-kit.ts';
import { makeRetentionJob, makeSnapshots } from './factories.ts';

const { pool, db } = await testDatabase(t, { poolMax: 10 });
const operator = await makeUserRow(pool, 'operator');
const ENQUEUE = 'bastion_private.enqueue_snapshot_deletes(uuid, uuid[], boolean, text, uuid, text, jsonb)';

async function enqueue(jobId: string | null, runIds: string[], fields: unknown = null) {
  const { rows } = await pool.query<{ run_id: string; outcome: string }>(
    `select * from bastion_private.enqueue_snapshot_deletes($1, $2::uuid[], false, 'batch test', null, 'delete queued (test)', $3::jsonb)`,
    [jobId, runIds, fields === null ? null : JSON.stringify(fields)],
  );
  return rows;
}

t.test('p_job_id NULL: snapshots of several jobs in one call, each task on its own job, fields merged into the queued event', async (t) => {
  const a = await jobWithSnapshots(db, 2);
  const b = await jobWithSnapshots(db, 3);
  const ids = [...a.snapshots, ...b.snapshots].map((s) => s.run_id);
  const out = await enqueue(null, ids, { policy_hash: 'p1', round_at: null, user_id: 'forged', trigger: 'tick' });
  t.same(out.map((o) => o.outcome), ids.map(() => 'enqueued'));
  t.same(out.map((o) => o.run_id), [...ids].sort());
  for (const [job, snaps] of [[a.job, a.snapshots], [b.job, b.snapshots]] as const) {
    for (const s of snaps) {
      const tk = await task(pool, s.run_id);
      t.equal(tk!.job_id, job.id, 'the task belongs to the snapshot’s job');
      t.equal(tk!.status, 'queued');
      t.equal((await snapshotRow(pool, s.run_id))!.status, 'deleting');
      t.equal((await graphileJobs(pool, s.run_id)).length, 1, 'one graphile job');
      const ev = await events(pool, s.run_id);
      t.same(ev.map((e) => e.kind), ['queued']);
      t.same(ev[0]!.fields, { policy_hash: 'p1', trigger: 'tick', reason: 'batch test', force: false }, 'p_fields merged, nulls dropped, the call’s own keys win (no forged user_id)');
    }
  }
  // Requeue (a done task) carries the fields too.
  await pool.query(`update bastion.artifact_delete_tasks set status = 'ignored', ignored_at = now(), next_attempt_at = null where run_id = $1`, [ids[0]]);
  const again = await enqueue(null, [ids[0]!, ids[1]!], { policy_hash: 'p2' });
  t.same(new Map(again.map((o) => [o.run_id, o.outcome])), new Map([[ids[0]!, 'requeued'], [ids[1]!, 'already_queued']]));
  const ev = (await events(pool, ids[0]!)).at(-1)!;
  t.equal(ev.kind, 'requeued');
  t.match(ev.fields, { policy_hash: 'p2', previous_status: 'ignored', reason: 'batch test' });
});

t.test('p_job_id NULL is all or nothing too; p_fields must be an object', async (t) => {
  const a = await jobWithSnapshots(db, 2);
  const ids = a.snapshots.map((s) => s.run_id);
  await t.rejects(enqueue(null, [...ids, randomUUID()]), { message: 'snapshot_not_found' }, 'an unknown snapshot');
  for (const id of ids) t.equal(await task(pool, id), undefined, 'nothing was queued');
  await t.rejects(enqueue(null, []), { message: 'empty_run_ids' });
  await t.rejects(enqueue(null, Array.from({ length: 1001 }, () => randomUUID())), { message: 'too_many_run_ids' });
  for (const bad of [[1], 'text', 3, true]) {
    await t.rejects(enqueue(null, ids, bad), { message: 'invalid_input' }, `fields ${JSON.stringify(bad)}`);
  }
  // With a job, the job still scopes the snapshots.
  const other = await jobWithSnapshots(db, 1);
  await t.rejects(enqueue(a.job.id, [ids[0]!, other.snapshots[0]!.run_id]), { message: 'snapshot_not_found' }, 'a snapshot of another job');
  t.equal(await task(pool, ids[0]!), undefined);
});

t.test('the public request functions refuse a NULL job instead of meaning "any job"', async (t) => {
  const a = await jobWithSnapshots(db, 1);
  const id = a.snapshots[0]!.run_id;
  await t.rejects(asRole(pool, 'bastion_operator', operator, (c) => c.query('select * from bastion.request_snapshot_deletes(null, $1::uuid[])', [[id]])), { message: 'job_not_found' });
  await t.rejects(asRole(pool, 'bastion_operator', operator, (c) => c.query('select bastion.request_snapshot_delete(null, $1)', [id])), { message: 'job_not_found' });
  t.equal(await task(pool, id), undefined, 'nothing was queued');
  t.equal((await asRole(pool, 'bastion_operator', operator, (c) => c.query('select bastion.request_snapshot_delete($1, $2) as o', [a.job.id, id]))).rows[0].o, 'enqueued');
  t.equal((await task(pool, id))!.requested_by, operator);
  const { rows } = await pool.query(`select has_function_privilege('bastion_admin', $1, 'execute') as admin, has_function_privilege('public', $1, 'execute') as pub`, [ENQUEUE]);
  t.same(rows[0], { admin: false, pub: false }, 'the private function is for the queue code only');
});

t.test('a tick over jobs of different policies: one request-function call per policy, each event and ledger row names its own job’s policy', async (t) => {
  const policies = [
    { enabled: true, keep_last: 2 },
    { enabled: true, keep_last: 3 },
  ];
  const jobs = [];
  for (let i = 0; i < 6; i++) {
    const job = await makeRetentionJob(db, { retention: policies[i % 2]! });
    await makeSnapshots(pool, job, 5);
    jobs.push({ job, policy: policies[i % 2]! });
  }
  const round = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000);
  const c = await pool.connect();
  let calls: number;
  try {
    // Count the calls inside the tick's transaction (PostgreSQL counts a
    // transaction's function calls per backend while track_functions is on).
    await c.query('begin');
    await c.query(`set local track_functions = 'pl'`);
    const summary = await runRetentionTick(c, { roundAt: round });
    t.equal(summary.enqueued, 3 * 3 + 3 * 2, 'keep_last 2 deletes 3 of 5, keep_last 3 deletes 2');
    t.equal(summary.batches, 1);
    calls = Number((await c.query<{ n: string }>(`select pg_stat_get_xact_function_calls($1::regprocedure) as n`, [ENQUEUE])).rows[0]!.n);
    await c.query('commit');
  } catch (e) {
    await c.query('rollback');
    throw e;
  } finally {
    c.release();
  }
  t.equal(calls, 2, 'two policies, two calls (not one per job)');
  for (const { job, policy } of jobs) {
    const { rows } = await pool.query<{ run_id: string }>(`select run_id from bastion.artifact_delete_tasks where job_id = $1 order by run_id`, [job.id]);
    t.equal(rows.length, 5 - policy.keep_last);
    for (const r of rows) {
      const ev = (await events(pool, r.run_id))[0]!;
      t.equal(ev.kind, 'queued');
      t.match(ev.fields, { policy_hash: policyHash(policy), policy_source: 'job', trigger: 'tick', round_at: String, reason: 'retention', force: false });
      t.equal(new Date(ev.fields!['round_at']).getTime(), round.getTime());
    }
    const ledger = await pool.query(`select run_id, policy_hash from bastion.retention_enqueues where job_id = $1 order by run_id`, [job.id]);
    t.same(ledger.rows, rows.map((r) => ({ run_id: r.run_id, policy_hash: policyHash(policy) })), 'ledger rows of this job with its policy');
  }
});
