/**
 * Retention against a real database: preview (reasons, totals, paging,
 * diff, truncation, read-only), apply (through the real delete queue, with
 * the policy hash in the queued event and the ledger; limits; proposed
 * policies not saved), the tick (rounds, archived jobs, inheritance, broken
 * stored policies) and the limits under concurrent ticks and applies, plus
 * the SQL guards that hold whoever calls: pins, leases and the last
 * snapshot are never deleted.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import t from 'tap';
import { createPool } from '../db/pool.ts';
import { policyHash, retentionPolicySchema } from '../core/retention-policy.ts';
import { applyRetention } from '../engine/retention/retention-apply.ts';
import { previewRetention } from '../engine/retention/retention-preview.ts';
import { runRetentionTick } from '../engine/retention/retention-tick.ts';
import { testDatabase } from './db.ts';
import { asRole, events, graphileJobs, makeUserRow, snapshotRow, task } from './delete-queue-kit.ts';
import { makeRetentionJob, makeSnapshots } from './factories.ts';

const DAY = 86_400_000;
const HOUR = 3_600_000;

/** Every retention task of a job (delete tasks with reason retention). */
async function retentionTasks(pool: pg.Pool, jobId: string) {
  const { rows } = await pool.query<{ run_id: string; delete_reason: string; force: boolean; requested_by: string | null; status: string }>(
    'select run_id, delete_reason, force, requested_by, status from bastion.artifact_delete_tasks where job_id = $1 order by run_id',
    [jobId],
  );
  return rows;
}

async function ledger(pool: pg.Pool, jobId: string) {
  const { rows } = await pool.query<{ run_id: string; policy_hash: string; policy_source: string; trigger: string; round_at: Date | null }>(
    'select run_id, policy_hash, policy_source, trigger, round_at from bastion.retention_enqueues where job_id = $1 order by id',
    [jobId],
  );
  return rows;
}

t.test('preview: every decision with its reasons, totals, bytes, limits, paging; nothing written', async (t) => {
  const { pool, db } = await testDatabase(t);
  const policy = { enabled: true, keep_last: 2, keep_daily: 4, max_delete_per_tick: 3 };
  const job = await makeRetentionJob(db, { retention: policy });
  // 10 snapshots, one a day at noon UTC, newest yesterday.
  const newest = new Date(Math.floor(Date.now() / DAY) * DAY - DAY + 12 * HOUR);
  const ids = await makeSnapshots(pool, job, 10, { newest });
  await pool.query('update bastion.run_artifacts set pinned_at = now() where run_id = $1', [ids[8]]);
  await pool.query(`insert into bastion.snapshot_leases (run_id, holder_kind, operation_id, expires_at) values ($1, 'restore', $2, now() + interval '1 hour')`, [ids[9], randomUUID()]);
  // An expired pin protects nothing.
  await pool.query(`update bastion.run_artifacts set pinned_at = now() - interval '2 days', pin_expires_at = now() - interval '1 day' where run_id = $1`, [ids[7]]);

  const p = await previewRetention(pool, job.id);
  t.equal(p.source, 'job');
  t.equal(p.policy_hash, policyHash(policy));
  t.same(p.policy, retentionPolicySchema.parse(policy), 'defaults filled in');
  t.equal(p.scan.snapshots, 10);
  t.equal(p.scan.truncated, false);
  const byRun = new Map(p.items.map((i) => [i.run_id, i]));
  const day = (i: number) => new Date(newest.getTime() - i * DAY).toISOString().slice(0, 10);
  t.same(byRun.get(ids[0]!)!.reasons, ['keep_last', `daily:${day(0)}`]);
  t.same(byRun.get(ids[1]!)!.reasons, ['keep_last', `daily:${day(1)}`]);
  t.same(byRun.get(ids[3]!)!.reasons, [`daily:${day(3)}`]);
  t.same(byRun.get(ids[8]!)!.reasons, ['pinned']);
  t.equal(byRun.get(ids[8]!)!.pinned, true);
  t.same(byRun.get(ids[9]!)!.reasons, ['leased']);
  t.equal(byRun.get(ids[9]!)!.leased, true);
  t.equal(byRun.get(ids[7]!)!.pinned, false, 'an expired pin does not count');
  // Candidates: 4, 5, 6, 7; the oldest 3 are deleted now, the newest one held back by max_delete_per_tick.
  t.same(
    [4, 5, 6, 7].map((i) => byRun.get(ids[i]!)!.decision),
    ['skipped_by_limit', 'delete', 'delete', 'delete'],
  );
  t.same(byRun.get(ids[4]!)!.reasons, ['max_delete_per_tick']);
  t.match(p.totals, { snapshots: 10, keep: 6, delete: 3, skipped: 1, pinned: 1, leased: 1, bytes_freed: 1800, bytes_skipped: 600, unknown_size: 0 });
  t.match(p.limits, { max_delete_per_tick: 3, max_delete_per_day: 200, already_enqueued_today: 0, allowed: 3, binding: ['max_delete_per_tick'] });
  t.equal(p.diff, null, 'no diff without a proposed policy');

  // Paging: 4 per page, newest first, over the same totals.
  const seen: string[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 5; page++) {
    const pg = await previewRetention(pool, job.id, { limit: 4, ...(cursor ? { cursor } : {}) });
    t.equal(pg.matching, 10);
    seen.push(...pg.items.map((i) => i.run_id));
    if (!pg.next_cursor) break;
    cursor = pg.next_cursor;
  }
  t.same(seen, ids, 'the pages list every snapshot once, newest first');
  const candidates = await previewRetention(pool, job.id, { filter: 'candidates' });
  t.same(candidates.items.map((i) => i.run_id), [4, 5, 6, 7].map((i) => ids[i]));
  await t.rejects(previewRetention(pool, job.id, { cursor: 'not base64!' }), { code: 'invalid_cursor' });
  await t.rejects(previewRetention(pool, job.id, { filter: 'newly_deleted' }), { code: 'invalid_input', details: { field: 'filter' } });
  await t.rejects(previewRetention(pool, randomUUID()), { code: 'job_not_found' });

  t.same(await retentionTasks(pool, job.id), [], 'preview queued nothing');
  t.same(await ledger(pool, job.id), []);
});

t.test('preview of a proposed policy: the difference against the saved one; the saved policy is untouched', async (t) => {
  const { pool, db } = await testDatabase(t);
  const saved = { enabled: true, keep_last: 5 };
  const job = await makeRetentionJob(db, { retention: saved });
  const ids = await makeSnapshots(pool, job, 8, { newest: new Date(Date.now() - HOUR) });
  const proposed = { enabled: true, keep_last: 3, max_delete_per_tick: 1 };
  const p = await previewRetention(pool, job.id, { policy: proposed });
  t.equal(p.source, 'proposed');
  t.equal(p.policy_hash, policyHash(proposed));
  t.equal(p.saved?.policy_hash, policyHash(saved));
  t.equal(p.saved?.source, 'job');
  t.same(p.diff!.totals, { newly_deleted: 2, newly_kept: 0, newly_deleted_bytes: 1200, newly_kept_bytes: 0 });
  t.same(p.diff!.newly_deleted.map((e) => e.run_id), [ids[3], ids[4]]);
  t.same(p.diff!.newly_deleted[0]!.saved, { decision: 'keep', reasons: ['keep_last'] });
  t.equal(p.diff!.newly_deleted[0]!.decision, 'skipped_by_limit', 'held back by the proposed per-tick limit, still listed as newly deleted');
  const page = await previewRetention(pool, job.id, { policy: proposed, filter: 'newly_deleted', limit: 1 });
  t.same(page.items.map((i) => i.run_id), [ids[3]]);
  t.equal(page.matching, 2);
  const back = await previewRetention(pool, job.id, { policy: { enabled: true, keep_last: 7 }, filter: 'newly_kept' });
  t.same(back.items.map((i) => i.run_id), [ids[5], ids[6]]);
  t.same(back.items[0]!.saved, { decision: 'delete', reasons: [] });
  const { rows } = await pool.query('select spec -> $2 as r from bastion.jobs where id = $1', [job.id, 'retention']);
  t.same(rows[0].r, saved, 'the saved policy did not change');
  await t.rejects(previewRetention(pool, job.id, { policy: { enabled: true, keep_last: -1 } }), { code: 'invalid_retention_policy', details: { field: 'policy.keep_last', reason: 'out_of_range' } });
});

t.test('preview reads at most 100,000 snapshots and says so', async (t) => {
  const { pool, db } = await testDatabase(t);
  const job = await makeRetentionJob(db, { retention: { enabled: true, keep_last: 10 } });
  const ids = await makeSnapshots(pool, job, 100_001, { newest: new Date(Date.now() - HOUR), stepMs: 60_000 });
  const p = await previewRetention(pool, job.id, { limit: 1, filter: 'candidates' });
  t.equal(p.scan.truncated, true);
  t.equal(p.scan.snapshots, 100_000);
  t.equal(p.totals.snapshots, 100_000);
  t.equal(p.totals.keep, 10);
  t.equal(p.totals.delete + p.totals.skipped, 99_990, 'totals cover every snapshot read, not the page');
  t.equal(p.items.length, 1);
  const all = await previewRetention(pool, job.id, { limit: 1000, filter: 'candidates' });
  t.notOk(all.items.some((i) => i.run_id === ids[100_000]), 'the oldest one was not read');
  const small = await makeRetentionJob(db, { retention: { enabled: true, keep_last: 1 } });
  await makeSnapshots(pool, small, 3);
  t.equal((await previewRetention(pool, small.id)).scan.truncated, false);
});

t.test('apply: through the delete queue with reason retention, the policy hash in the queued event and the ledger', async (t) => {
  const { pool, db } = await testDatabase(t);
  const operator = await makeUserRow(pool, 'operator');
  const policy = { enabled: true, keep_last: 3, max_delete_per_tick: 2, max_delete_per_day: 3 };
  const job = await makeRetentionJob(db, { retention: policy });
  const ids = await makeSnapshots(pool, job, 8, { newest: new Date(Date.now() - HOUR) });
  const asOperator = <T>(fn: (c: pg.PoolClient) => Promise<T>) => asRole(pool, 'bastion_operator', operator, fn);

  const first = await asOperator((c) => applyRetention(c, job.id));
  // Candidates 3..7; the two oldest go first.
  t.same(first.enqueued.sort(), [ids[6], ids[7]].sort());
  t.same(first.already_queued, []);
  t.equal(first.skipped_by_limits, 3);
  t.equal(first.policy_hash, policyHash(policy));
  t.equal(first.source, 'job');
  for (const id of first.enqueued) {
    const tk = await task(pool, id);
    t.equal(tk!.delete_reason, 'retention');
    t.equal(tk!.force, false, 'retention never forces');
    t.equal(tk!.requested_by, operator, 'the operator who applied');
    const ev = await events(pool, id);
    t.equal(ev.length, 1);
    t.equal(ev[0]!.kind, 'queued');
    t.match(ev[0]!.fields, { reason: 'retention', force: false, policy_hash: policyHash(policy), policy_source: 'job', trigger: 'apply' });
    t.equal((await snapshotRow(pool, id))!.status, 'deleting');
    t.equal((await graphileJobs(pool, id)).length, 1, 'an attempt is scheduled');
  }
  const l = await ledger(pool, job.id);
  t.same(l.map((r) => [r.policy_hash, r.policy_source, r.trigger]), [
    [policyHash(policy), 'job', 'apply'],
    [policyHash(policy), 'job', 'apply'],
  ]);
  const { rows: pol } = await pool.query('select policy from bastion.retention_policies where policy_hash = $1', [policyHash(policy)]);
  t.same(pol[0].policy, retentionPolicySchema.parse(policy), 'the hash resolves to the policy');

  // Per day: 3 allowed, 2 used; the next apply queues 1 (the oldest remaining).
  const second = await asOperator((c) => applyRetention(c, job.id));
  t.same(second.enqueued, [ids[5]]);
  t.equal(second.limits.already_enqueued_today, 2);
  t.same(second.limits.binding, ['max_delete_per_day']);
  const third = await asOperator((c) => applyRetention(c, job.id));
  t.same(third.enqueued, [], 'the day is used up');
  t.equal(third.skipped_by_limits, 2);
  t.equal((await retentionTasks(pool, job.id)).length, 3);

  // The day's count comes from the ledger, so pruning a deleted snapshot's
  // run (which takes its task and events with it) does not reset it.
  await pool.query('delete from bastion.runs where id = $1', [ids[7]]);
  const fourth = await asOperator((c) => applyRetention(c, job.id));
  t.equal(fourth.limits.already_enqueued_today, 3);
  t.same(fourth.enqueued, []);
});

t.test('apply with a proposed policy: used, recorded as proposed, never saved', async (t) => {
  const { pool, db } = await testDatabase(t);
  const operator = await makeUserRow(pool, 'operator');
  const job = await makeRetentionJob(db, { retention: null });
  const ids = await makeSnapshots(pool, job, 5, { newest: new Date(Date.now() - HOUR) });
  await t.rejects(asRole(pool, 'bastion_operator', operator, (c) => applyRetention(c, job.id)), { code: 'retention_disabled' }, 'the inherited default is off');
  const proposed = { enabled: true, keep_last: 4 };
  const r = await asRole(pool, 'bastion_operator', operator, (c) => applyRetention(c, job.id, { policy: proposed }));
  t.same(r.enqueued, [ids[4]]);
  t.equal(r.source, 'proposed');
  t.same((await ledger(pool, job.id)).map((x) => [x.policy_source, x.policy_hash]), [['proposed', policyHash(proposed)]]);
  const { rows } = await pool.query(`select spec -> 'retention' as r from bastion.jobs where id = $1`, [job.id]);
  t.equal(rows[0].r, null, 'still inherits');
  await t.rejects(asRole(pool, 'bastion_operator', operator, (c) => applyRetention(c, job.id, { policy: { enabled: false, keep_last: 1 } })), { code: 'retention_disabled' });
  await t.rejects(asRole(pool, 'bastion_operator', operator, (c) => applyRetention(c, job.id, { policy: { enabled: true } })), {
    code: 'invalid_retention_policy',
    details: { field: 'policy.enabled', reason: 'keep_rule_required' },
  });
  const viewer = await makeUserRow(pool, 'viewer');
  await t.rejects(asRole(pool, 'bastion_viewer', viewer, (c) => applyRetention(c, job.id, { policy: proposed })), { code: '42501' }, 'viewers cannot apply');
  t.ok((await asRole(pool, 'bastion_viewer', viewer, (c) => previewRetention(c, job.id, { policy: proposed }))).items.length > 0, 'but can preview');
  const archived = await makeRetentionJob(db, { retention: proposed, archived: true });
  await makeSnapshots(pool, archived, 6);
  await t.rejects(asRole(pool, 'bastion_operator', operator, (c) => applyRetention(c, archived.id)), { code: 'job_archived' });
});

t.test('pinned, leased and the last snapshot are never deleted, whatever the caller asks the SQL for', async (t) => {
  const { pool, db } = await testDatabase(t);
  const operator = await makeUserRow(pool, 'operator');
  // keep_days 1 with every snapshot older: everything but the rescued ones is a candidate.
  const policy = { enabled: true, keep_days: 1, max_delete_per_tick: 100 };
  const job = await makeRetentionJob(db, { retention: policy });
  const ids = await makeSnapshots(pool, job, 6, { newest: new Date(Date.now() - 10 * DAY) });
  await pool.query('update bastion.run_artifacts set pinned_at = now() where run_id = $1', [ids[0]]);
  await pool.query(`insert into bastion.snapshot_leases (run_id, holder_kind, operation_id, expires_at) values ($1, 'verify', $2, now() + interval '1 hour')`, [ids[3], randomUUID()]);
  const r = await asRole(pool, 'bastion_operator', operator, (c) => applyRetention(c, job.id));
  t.same(r.enqueued.sort(), [ids[2], ids[4], ids[5]].sort(), 'ids[1] is the newest unpinned one (last_snapshot), ids[0] pinned, ids[3] leased');
  const left = await pool.query<{ run_id: string }>(`select run_id from bastion.run_artifacts where job_id = $1 and status = 'present' order by ended_at desc`, [job.id]);
  t.same(left.rows.map((x) => x.run_id), [ids[0], ids[1], ids[3]]);

  // The SQL re-check refuses them even when a caller names them directly.
  const raw = await asRole(pool, 'bastion_operator', operator, (c) =>
    c.query<{ r: any }>('select bastion_private.retention_apply($1, $2, $3, $4, $5::uuid[], null) as r', [
      job.id,
      JSON.stringify(retentionPolicySchema.parse(policy)),
      policyHash(policy),
      'proposed',
      [ids[0], ids[1], ids[3], ids[2], randomUUID()],
    ]),
  );
  const res = raw.rows[0]!.r;
  t.same(res.enqueued, []);
  t.same(res.already_queued, [ids[2]]);
  const reasons = Object.fromEntries(res.skipped.map((s: { run_id: string; reason: string }) => [s.run_id, s.reason]));
  t.equal(reasons[ids[0]!], 'pinned');
  t.equal(reasons[ids[1]!], 'last_snapshot');
  t.equal(reasons[ids[3]!], 'leased');
  t.equal(Object.values(reasons).filter((x) => x === 'not_in_job').length, 1);

  // A job whose only snapshot is old keeps it.
  const lonely = await makeRetentionJob(db, { retention: policy });
  await makeSnapshots(pool, lonely, 1, { newest: new Date(Date.now() - 100 * DAY) });
  const r2 = await asRole(pool, 'bastion_operator', operator, (c) => applyRetention(c, lonely.id));
  t.same(r2.enqueued, []);

  // The tick obeys the same guards.
  const ticked = await makeRetentionJob(db, { retention: policy });
  const tids = await makeSnapshots(pool, ticked, 5, { newest: new Date(Date.now() - 10 * DAY) });
  await pool.query('update bastion.run_artifacts set pinned_at = now() where run_id = $1', [tids[0]]);
  await pool.query(`insert into bastion.snapshot_leases (run_id, holder_kind, operation_id, expires_at) values ($1, 'relay', $2, now() + interval '1 hour')`, [tids[2], randomUUID()]);
  await runRetentionTick(pool, { roundAt: new Date(Math.floor(Date.now() / HOUR) * HOUR) });
  t.same((await retentionTasks(pool, ticked.id)).map((x) => x.run_id).sort(), [tids[3], tids[4]].sort(), 'the tick spares the pinned, the leased and the newest unpinned');

  // min_keep is re-checked too: a caller with a stale selection cannot take the job below it.
  const floor = await makeRetentionJob(db, { retention: null });
  const fids = await makeSnapshots(pool, floor, 4, { newest: new Date(Date.now() - HOUR) });
  const floorPolicy = retentionPolicySchema.parse({ enabled: true, keep_last: 1, min_keep: 3 });
  const fl = await pool.query<{ r: any }>('select bastion_private.retention_apply($1, $2, $3, $4, $5::uuid[], null) as r', [
    floor.id, JSON.stringify(floorPolicy), policyHash(floorPolicy), 'proposed', [fids[1], fids[2], fids[3]],
  ]);
  t.same(fl.rows[0]!.r.enqueued, [fids[3]], 'only the oldest: 4 present − min_keep 3 = 1');
  t.equal(fl.rows[0]!.r.skipped_by_limits.length, 2);

  // SQL guards on its inputs.
  const call = (args: unknown[]) => pool.query('select bastion_private.retention_apply($1, $2, $3, $4, $5::uuid[], $6)', args);
  const good = [job.id, JSON.stringify(policy), policyHash(policy), 'job', [], null];
  await t.rejects(call([job.id, JSON.stringify(policy), 'nothex', 'job', [], null]), { message: 'invalid_input' });
  await t.rejects(call([job.id, JSON.stringify(policy), policyHash(policy), 'elsewhere', [], null]), { message: 'invalid_input' });
  await t.rejects(call([job.id, JSON.stringify({ enabled: true, keep_last: 20000 }), policyHash(policy), 'job', [], null]), { message: 'invalid_retention_policy' });
  await t.rejects(call([job.id, JSON.stringify({ enabled: false }), policyHash(policy), 'job', [], null]), { message: 'retention_disabled' });
  await t.rejects(call([job.id, JSON.stringify(policy), policyHash(policy), 'job', [], JSON.stringify({ enabled: true, keep_last: 99 })]), { message: 'retention_policy_changed' });
  await t.resolves(call(good));
  const c = await pool.connect();
  try {
    await c.query('begin isolation level repeatable read');
    await t.rejects(c.query('select bastion_private.retention_apply($1, $2, $3, $4, $5::uuid[], $6)', good), { message: 'invalid_input' }, 'a frozen snapshot would miscount');
  } finally {
    await c.query('rollback');
    c.release();
  }
});

t.test('the tick: rounds, the delete queue, inheritance, archived jobs, broken policies', async (t) => {
  const { pool, db } = await testDatabase(t);
  const own = { enabled: true, keep_last: 3, max_delete_per_tick: 2, max_delete_per_day: 3 };
  const jobOwn = await makeRetentionJob(db, { retention: own });
  const jobInherit = await makeRetentionJob(db, { retention: null });
  const jobOff = await makeRetentionJob(db, { retention: { enabled: false, keep_last: 1 } });
  const jobArchived = await makeRetentionJob(db, { retention: own, archived: true });
  const jobBroken = await makeRetentionJob(db, { retention: own });
  const jobZone = await makeRetentionJob(db, { retention: { enabled: true, keep_daily: 1 }, timezone: 'UTC' });
  await pool.query(`update bastion.jobs set spec = jsonb_set(spec, '{retention}', '{"enabled": true, "keep_last": 2, "kep_days": 3}') where id = $1`, [jobBroken.id]);
  // A zone PostgreSQL knows but Intl does not.
  await pool.query(`update bastion.jobs set schedule_timezone = 'posixrules' where id = $1`, [jobZone.id]);
  const newest = new Date(Date.now() - HOUR);
  const idsOwn = await makeSnapshots(pool, jobOwn, 8, { newest });
  const idsInherit = await makeSnapshots(pool, jobInherit, 6, { newest });
  await makeSnapshots(pool, jobOff, 6, { newest });
  await makeSnapshots(pool, jobArchived, 6, { newest });
  await makeSnapshots(pool, jobBroken, 6, { newest });
  await makeSnapshots(pool, jobZone, 6, { newest });

  const hour = Math.floor(Date.now() / HOUR) * HOUR;
  const r1 = await runRetentionTick(pool, { roundAt: new Date(hour) });
  t.equal(r1.enqueued, 2, 'only the job with its own enabled policy deletes; the default is off');
  t.equal(r1.errors, 2, 'the broken policy and the unknown zone are reported');
  const state = async (id: string) => (await pool.query('select * from bastion.retention_job_state where job_id = $1', [id])).rows[0];
  t.match(await state(jobBroken.id), { error_code: 'invalid_retention_policy' });
  t.match((await state(jobBroken.id)).error, /spec\.retention/);
  t.match(await state(jobZone.id), { error_code: 'invalid_retention_time_zone' });
  t.match(await state(jobOwn.id), { enqueued: 2, skipped_by_limits: 3, snapshots: 8, policy_hash: policyHash(own), policy_source: 'job', error_code: null });
  t.equal(await state(jobOff.id), undefined, 'disabled jobs are not touched');
  t.equal(await state(jobArchived.id), undefined, 'archived jobs are skipped');
  t.same(await retentionTasks(pool, jobArchived.id), []);
  for (const tk of await retentionTasks(pool, jobOwn.id)) {
    t.equal(tk.delete_reason, 'retention');
    t.equal(tk.requested_by, null, 'the tick acts for nobody');
    const ev = await events(pool, tk.run_id);
    t.match(ev[0]!.fields, { reason: 'retention', policy_hash: policyHash(own), trigger: 'tick' });
    t.equal(new Date(ev[0]!.fields!['round_at']).getTime(), hour);
  }
  t.same((await retentionTasks(pool, jobOwn.id)).map((x) => x.run_id).sort(), [idsOwn[6], idsOwn[7]].sort());

  const again = await runRetentionTick(pool, { roundAt: new Date(hour) });
  t.equal(again.jobs, 0, 'the round is done: a second tick for it does nothing');
  t.equal((await retentionTasks(pool, jobOwn.id)).length, 2);

  // The hub default changes: the inheriting job follows it from the next round.
  const def = { enabled: true, keep_last: 4 };
  await pool.query('select bastion.set_default_retention($1)', [JSON.stringify(def)]);
  const r2 = await runRetentionTick(pool, { roundAt: new Date(hour + HOUR) });
  t.same((await retentionTasks(pool, jobInherit.id)).map((x) => x.run_id).sort(), [idsInherit[4], idsInherit[5]].sort());
  t.match(await state(jobInherit.id), { policy_source: 'hub_default', policy_hash: policyHash(def) });
  t.same((await ledger(pool, jobInherit.id)).map((x) => x.policy_source), ['hub_default', 'hub_default']);
  t.equal((await retentionTasks(pool, jobOwn.id)).length, 3, 'own job: one more, then its day is used up');
  t.ok(r2.enqueued >= 3);
  await runRetentionTick(pool, { roundAt: new Date(hour + 2 * HOUR) });
  t.equal((await retentionTasks(pool, jobOwn.id)).length, 3, 'max_delete_per_day holds across rounds');
  t.match(await state(jobOwn.id), { enqueued: 0, skipped_by_limits: 2 });
  t.same((await retentionTasks(pool, jobOff.id)), []);

  // The task as graphile-worker runs it: the round follows settings.retention_schedule.
  const { retentionTick } = await import('../worker/tasks/retention-tick.ts');
  const helpers = {
    withPgClient: async <T>(fn: (c: pg.PoolClient) => Promise<T>) => {
      const c = await pool.connect();
      try {
        return await fn(c);
      } finally {
        c.release();
      }
    },
    logger: { info: () => {}, warn: () => {} },
    abortSignal: new AbortController().signal,
  };
  await pool.query(`select bastion.set_retention_schedule('30 * * * *')`);
  await retentionTick({ _cron: { ts: new Date(hour + 3 * HOUR + 45 * 60_000).toISOString() } }, helpers as never);
  const { rows } = await pool.query<{ round_at: Date }>('select round_at from bastion.retention_job_state where job_id = $1', [jobOwn.id]);
  t.equal(rows[0]!.round_at.getTime(), hour + 3 * HOUR + 30 * 60_000, 'the round is the latest slot of the schedule');
});

t.test('three ticks at once never exceed the per-tick or per-day limits; nor do applies racing them', async (t) => {
  const { pool, db, url } = await testDatabase(t);
  const pools = [0, 1, 2].map(() => createPool({ connectionString: url, max: 2 }));
  t.teardown(() => Promise.all(pools.map((p) => p.end())));
  const policy = { enabled: true, keep_last: 2, max_delete_per_tick: 5, max_delete_per_day: 12 };
  const jobs = [];
  for (let i = 0; i < 6; i++) {
    const job = await makeRetentionJob(db, { retention: policy });
    await makeSnapshots(pool, job, 40, { newest: new Date(Date.now() - HOUR) });
    jobs.push(job);
  }
  const count = async (jobId: string) => (await pool.query<{ n: number }>('select count(*)::int as n from bastion.artifact_delete_tasks where job_id = $1', [jobId])).rows[0]!.n;
  const base = Math.floor(Date.now() / HOUR) * HOUR;

  // Same round from three processes: each job gets its per-tick share once.
  const same = await Promise.all(pools.map((p) => runRetentionTick(p, { roundAt: new Date(base), batchRows: 80 })));
  for (const job of jobs) t.equal(await count(job.id), 5, 'per tick: 5, not 15');
  t.equal(same.reduce((n, s) => n + s.enqueued, 0), 30);

  // A tick that listed a job before another tick finished it, and selected
  // after (so its candidates are the next ones), adds nothing in that round:
  // the SQL write re-checks the round under the job's lock.
  const fresh = await pool.query<{ run_id: string }>(
    `select run_id from bastion.run_artifacts where job_id = $1 and status = 'present' order by ended_at, run_id limit 5`,
    [jobs[0]!.id],
  );
  const late = await pool.query<{ r: Array<{ status: string }> }>('select bastion_private.retention_tick_jobs($1, $2) as r', [
    new Date(base),
    JSON.stringify([
      {
        job_id: jobs[0]!.id,
        policy: retentionPolicySchema.parse(policy),
        policy_hash: policyHash(policy),
        policy_source: 'job',
        expected_policy: policy,
        run_ids: fresh.rows.map((r) => r.run_id),
        snapshots: 40,
        truncated: false,
        skipped_by_limits: 0,
      },
    ]),
  ]);
  t.equal(late.rows[0]!.r[0]!.status, 'already_ticked');
  t.equal(await count(jobs[0]!.id), 5);

  // Three different rounds at once (a slow tick overlapping later ones): each
  // may add its per-tick share, but never past the day's 12. A tick whose
  // selection went stale meanwhile finds its candidates queued and adds less.
  await Promise.all(pools.map((p, i) => runRetentionTick(p, { roundAt: new Date(base + (i + 1) * HOUR), batchRows: 80 })));
  for (const job of jobs) t.ok((await count(job.id)) <= 12, 'per day: at most 12');
  for (let i = 4; i < 8; i++) await Promise.all(pools.map((p) => runRetentionTick(p, { roundAt: new Date(base + i * HOUR) })));
  for (const job of jobs) t.equal(await count(job.id), 12, 'later rounds reach the day\'s 12 exactly, and no more');

  // Applies racing each other and a tick on a fresh job.
  const operator = await makeUserRow(pool, 'operator');
  const raced = await makeRetentionJob(db, { retention: { enabled: true, keep_last: 1, max_delete_per_tick: 5, max_delete_per_day: 7 } });
  await makeSnapshots(pool, raced, 30, { newest: new Date(Date.now() - HOUR) });
  const results = await Promise.all([
    ...pools.map((p) => asRole(p, 'bastion_operator', operator, (c) => applyRetention(c, raced.id))),
    runRetentionTick(pools[0]!, { roundAt: new Date(base + 20 * HOUR) }),
  ]);
  const perCall = results.slice(0, 3).map((r) => (r as { enqueued: string[] }).enqueued.length);
  t.ok(perCall.every((n) => n <= 5), `each apply within the per-tick limit (${perCall.join(', ')})`);
  t.ok((await count(raced.id)) <= 7, 'together within the per-day limit');
  for (let i = 0; i < 3; i++) await asRole(pool, 'bastion_operator', operator, (c) => applyRetention(c, raced.id));
  t.equal(await count(raced.id), 7, 'more applies reach exactly the per-day limit');
  const { rows } = await pool.query<{ n: number }>('select count(*)::int as n from bastion.retention_enqueues where job_id = $1', [raced.id]);
  t.equal(rows[0]!.n, 7, 'one ledger row per enqueue');
});

t.test('a job whose enqueue fails is recorded and does not hold back the others of its batch', async (t) => {
  const { pool, db } = await testDatabase(t);
  const policy = { enabled: true, keep_last: 2 };
  const jobs = [];
  for (let i = 0; i < 4; i++) {
    const job = await makeRetentionJob(db, { retention: policy });
    await makeSnapshots(pool, job, 5, { newest: new Date(Date.now() - HOUR) });
    jobs.push(job);
  }
  const victim = jobs[2]!;
  // Fault injection in front of the real queue: the delete queue refuses this job's tasks.
  await pool.query(`create function public.refuse_task() returns trigger language plpgsql as $$
    begin if new.job_id = '${victim.id}' then raise exception 'injected failure for this job'; end if; return new; end $$`);
  await pool.query('create trigger refuse_task before insert on bastion.artifact_delete_tasks for each row execute function public.refuse_task()');
  const s = await runRetentionTick(pool, { roundAt: new Date(Math.floor(Date.now() / HOUR) * HOUR) });
  t.equal(s.errors, 1);
  t.equal(s.enqueued, 9, 'the three other jobs: 3 deletes each');
  const { rows } = await pool.query('select job_id, enqueued, error_code, error from bastion.retention_job_state order by job_id');
  const byJob = new Map(rows.map((r) => [r.job_id, r]));
  t.match(byJob.get(victim.id), { enqueued: 0, error_code: 'internal_error', error: /injected failure/ });
  for (const j of jobs) if (j !== victim) t.match(byJob.get(j.id), { enqueued: 3, error_code: null });
  t.equal((await retentionTasks(pool, victim.id)).length, 0);
});

t.test('the retention-tick task runs in a real worker and queues through the real delete queue', async (t) => {
  const { pool, db } = await testDatabase(t);
  const { makeWorkerUtils } = await import('graphile-worker');
  const { pino } = await import('pino');
  const { startWorkers } = await import('../worker/runner.ts');
  const policy = { enabled: true, keep_last: 1 };
  const job = await makeRetentionJob(db, { retention: policy });
  const ids = await makeSnapshots(pool, job, 3, { newest: new Date(Date.now() - HOUR) });
  const workers = await startWorkers({ pool, logger: pino({ level: 'silent' }), concurrency: 2, pollIntervalMs: 100, tasks: { 'retention-tick': (await import('../worker/tasks/retention-tick.ts')).retentionTick as never } });
  t.teardown(() => workers.stop());
  const utils = await makeWorkerUtils({ pgPool: pool });
  t.teardown(() => utils.release());
  await utils.addJob('retention-tick', { now: new Date().toISOString() });
  let state;
  for (let i = 0; i < 200 && !state; i++) {
    state = (await pool.query('select * from bastion.retention_job_state where job_id = $1', [job.id])).rows[0];
    if (!state) await new Promise((r) => setTimeout(r, 50));
  }
  t.match(state, { enqueued: 2, policy_hash: policyHash(policy) });
  t.same((await retentionTasks(pool, job.id)).map((x) => x.run_id).sort(), [ids[1], ids[2]].sort());
  const jobsLeft = await pool.query(`select count(*)::int as n from graphile_worker.jobs where task_identifier = 'artifact-delete'`);
  t.equal(jobsLeft.rows[0].n, 2, 'an attempt is scheduled for each delete');
});
