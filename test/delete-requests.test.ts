/**
 * How snapshots enter the delete queue and what protects them: single and
 * bulk requests (all or nothing, idempotent, never a second task), pins with
 * expiry, leases held by restore/verify/relay, job archive with cascade, and
 * job delete with or without its data — through the SQL functions, as the
 * roles that may call them.
 */
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { archiveJob, deleteJob, unarchiveJob } from '../db/queries/job-lifecycle.ts';
import { acquireSnapshotLease, pinSnapshot, releaseSnapshotLease, renewSnapshotLease, requestSnapshotDelete, requestSnapshotDeletes, unpinSnapshot } from '../db/queries/snapshots.ts';
import { testDatabase } from './db.ts';
import { asRole, claim, events, finish, graphileJobs, jobWithSnapshots, makeUserRow, snapshotRow, task } from './delete-queue-kit.ts';
import { makeDeleteTask, makeSnapshot } from './factories.ts';

const { pool, db } = await testDatabase(t, { poolMax: 20 });
const operator = await makeUserRow(pool, 'operator');
const admin = await makeUserRow(pool, 'admin');
const viewer = await makeUserRow(pool, 'viewer');
const asOperator = <T>(fn: (c: import('pg').PoolClient) => Promise<T>) => asRole(pool, 'bastion_operator', operator, fn);

t.test('single request: enqueued, then idempotent; one task, one queued event', async (t) => {
  const { job, snapshots } = await jobWithSnapshots(db, 1);
  const id = snapshots[0]!.run_id;
  t.equal(await asOperator((c) => requestSnapshotDelete(c, job.id, id, { reason: 'old' })), 'enqueued');
  t.equal(await asOperator((c) => requestSnapshotDelete(c, job.id, id)), 'already_queued');
  const tk = await task(pool, id);
  t.equal(tk!.status, 'queued');
  t.equal(tk!.requested_by, operator);
  t.equal(tk!.delete_reason, 'old');
  t.same((await events(pool, id)).map((e) => e.kind), ['queued'], 'the second request added nothing');
  t.equal((await events(pool, id))[0]!.fields!['user_id'], operator);
  t.equal((await snapshotRow(pool, id))!.status, 'deleting');
  t.equal((await graphileJobs(pool, id)).length, 1);
  await t.rejects(asRole(pool, 'bastion_viewer', viewer, (c) => requestSnapshotDelete(c, job.id, id)), { code: '42501' }, 'viewers cannot delete');
});

t.test('bulk request: all or nothing', async (t) => {
  const { job, snapshots } = await jobWithSnapshots(db, 5);
  const ids = snapshots.map((s) => s.run_id);
  const stranger = (await jobWithSnapshots(db, 1)).snapshots[0]!.run_id;
  await t.rejects(asOperator((c) => requestSnapshotDeletes(c, job.id, { run_ids: [...ids, randomUUID()] })), { code: 'snapshot_not_found' });
  await t.rejects(asOperator((c) => requestSnapshotDeletes(c, job.id, { run_ids: [...ids, stranger] })), { code: 'snapshot_not_found' }, 'a snapshot of another job');
  for (const id of ids) t.equal(await task(pool, id), undefined, 'nothing was queued');
  await t.rejects(asOperator((c) => requestSnapshotDeletes(c, job.id, { run_ids: [] })), { code: 'empty_run_ids' });
  await t.rejects(asOperator((c) => requestSnapshotDeletes(c, job.id, { run_ids: Array.from({ length: 1001 }, () => randomUUID()) })), { code: 'too_many_run_ids' });
  await t.rejects(asOperator((c) => requestSnapshotDeletes(c, job.id, { run_ids: ['../etc'] })), { code: 'invalid_input', details: { field: 'run_ids.0' } });
  await t.rejects(asOperator((c) => requestSnapshotDeletes(c, randomUUID(), { run_ids: ids })), { code: 'job_not_found' });
  await t.rejects(asOperator((c) => requestSnapshotDeletes(c, 'not-a-uuid', { run_ids: ids })), { code: 'invalid_input' });
  await t.rejects(asOperator((c) => c.query('select * from bastion.request_snapshot_deletes($1, $2)', [job.id, null])), { message: 'empty_run_ids' }, 'SQL checks too');
  await t.rejects(asOperator((c) => c.query('select * from bastion.request_snapshot_deletes($1, $2::uuid[])', [job.id, Array.from({ length: 1001 }, () => randomUUID())])), { message: 'too_many_run_ids' });
  const out = await asOperator((c) => requestSnapshotDeletes(c, job.id, { run_ids: [ids[0]!, ids[0]!, ...ids] }));
  t.same(out.map((o) => o.outcome), ids.map(() => 'enqueued'), 'duplicates collapse');
  t.same(out.map((o) => o.run_id), [...ids].sort());
  // 1000 in one call is allowed
  const big = await jobWithSnapshots(db, 0);
  const many: string[] = [];
  for (let i = 0; i < 1000; i++) many.push(randomUUID());
  await pool.query(
    `insert into bastion.runs (id, job_id, node_id, status, trigger, started_at, ended_at, target_snapshot)
     select x, $1, 'hub', 'success', 'manual', now() - interval '1 hour', now(), $2::jsonb from unnest($3::uuid[]) x`,
    [big.job.id, JSON.stringify({ node_id: 'hub', target: { type: 'local_dir', base_dir: '/b' } }), many],
  );
  await pool.query(
    `insert into bastion.run_artifacts (run_id, job_id, node_id, target_type, target_snapshot, artifact_format, started_at, ended_at)
     select id, job_id, 'hub', 'local_dir', target_snapshot, 'archive_v1', started_at, ended_at from bastion.runs where job_id = $1`,
    [big.job.id],
  );
  const r = await asOperator((c) => requestSnapshotDeletes(c, big.job.id, { run_ids: many }));
  t.equal(r.filter((x) => x.outcome === 'enqueued').length, 1000);
  t.equal((await pool.query("select count(*)::int as n from graphile_worker.jobs where task_identifier = 'artifact-delete' and key like 'artifact-delete:%' and key = any($1)", [many.map((m) => `artifact-delete:${m}`)])).rows[0].n, 1000);
});

t.test('deleted and missing snapshots are no-ops; stopped tasks are requeued (same row, fresh cycle)', async (t) => {
  const { job } = await jobWithSnapshots(db, 0);
  const gone = await makeSnapshot(db, job, { status: 'deleted' });
  const missing = await makeSnapshot(db, job, { status: 'missing' });
  const outcomes: Record<string, string> = {};
  const stopped: Record<string, string> = {};
  for (const status of ['blocked', 'abandoned', 'ignored', 'retrying', 'running', 'queued'] as const) {
    const s = await makeSnapshot(db, job);
    await makeDeleteTask(db, s as never, { status, attempts: status === 'queued' ? 0 : 3, kind: status === 'blocked' ? 'auth' : 'network' });
    stopped[s.run_id] = status;
  }
  for (const o of await asOperator((c) => requestSnapshotDeletes(c, job.id, { run_ids: [gone.run_id, missing.run_id, ...Object.keys(stopped)], reason: 'again' }))) outcomes[o.run_id] = o.outcome;
  t.equal(outcomes[gone.run_id], 'noop_deleted');
  t.equal(outcomes[missing.run_id], 'noop_missing');
  t.equal(await task(pool, gone.run_id), undefined);
  for (const [id, status] of Object.entries(stopped)) {
    const want = ['blocked', 'abandoned', 'ignored'].includes(status) ? 'requeued' : 'already_queued';
    t.equal(outcomes[id], want, `${status} → ${want}`);
    const tk = await task(pool, id);
    if (want === 'requeued') {
      t.same([tk!.status, tk!.attempts, tk!.ignored_at, tk!.delete_reason], ['queued', 0, null, 'again']);
      const ev = (await events(pool, id)).at(-1)!;
      t.equal(ev.kind, 'requeued');
      t.equal(ev.fields!['previous_status'], status);
      t.equal((await snapshotRow(pool, id))!.status, 'deleting', 'error → deleting');
      t.equal((await graphileJobs(pool, id)).length, 1);
    } else {
      t.equal(tk!.status, status, 'a waiting or running task is left as it is');
    }
  }
  const { rows } = await pool.query('select count(*)::int as n from bastion.artifact_delete_tasks where run_id = any($1)', [Object.keys(stopped)]);
  t.equal(rows[0].n, Object.keys(stopped).length, 'never a second task');
});

t.test('pins: pinned snapshots need force; expired pins do not protect; pinned_by is the acting user', async (t) => {
  const { job, snapshots } = await jobWithSnapshots(db, 3);
  const [a, b, c] = snapshots.map((s) => s.run_id) as [string, string, string];
  const pinned = await asOperator((cl) => pinSnapshot(cl, job.id, a, { reason: '  legal hold\n' }));
  t.equal(pinned.pinned, true);
  t.equal(pinned.pinned_by, operator);
  t.equal(pinned.pin_reason, 'legal hold');
  await t.rejects(asOperator((cl) => requestSnapshotDeletes(cl, job.id, { run_ids: [a, b] })), { code: 'snapshot_pinned', details: { run_ids: [a] } });
  t.equal(await task(pool, b), undefined, 'all or nothing: b was not queued either');
  t.equal(await asOperator((cl) => requestSnapshotDelete(cl, job.id, a, { force: true })), 'enqueued');
  t.equal((await task(pool, a))!.force, true);
  await t.rejects(asOperator((cl) => pinSnapshot(cl, job.id, a)), { code: 'snapshot_not_present' }, 'a snapshot being deleted cannot be pinned');
  await t.rejects(asOperator((cl) => pinSnapshot(cl, job.id, b, { expires_at: new Date(Date.now() - 1000) })), { code: 'invalid_input', details: { field: 'expires_at' } });
  await t.rejects(asOperator((cl) => pinSnapshot(cl, job.id, b, { expires_at: 'tomorrow' })), { code: 'invalid_input', details: { field: 'expires_at' } });
  await t.rejects(asOperator((cl) => pinSnapshot(cl, job.id, b, { reason: 'x'.repeat(10_001) })), { code: 'invalid_input' });
  const longReason = await asOperator((cl) => pinSnapshot(cl, job.id, b, { reason: 'é'.repeat(300) }));
  t.equal([...longReason.pin_reason!].length, 200);
  // an expired pin no longer protects
  await asOperator((cl) => pinSnapshot(cl, job.id, c, { expires_at: new Date(Date.now() + 3_600_000) }));
  await pool.query("update bastion.run_artifacts set pinned_at = now() - interval '2 hours', pin_expires_at = now() - interval '1 second' where run_id = $1", [c]);
  t.equal(await asOperator((cl) => requestSnapshotDelete(cl, job.id, c)), 'enqueued');
  const unpinned = await asOperator((cl) => unpinSnapshot(cl, job.id, b));
  t.same([unpinned.pinned, unpinned.pinned_at, unpinned.pinned_by, unpinned.pin_reason], [false, null, null, null]);
  t.equal((await asOperator((cl) => unpinSnapshot(cl, job.id, b))).pinned, false, 'unpin is idempotent');
  await t.rejects(asOperator((cl) => pinSnapshot(cl, randomUUID(), b)), { code: 'job_not_found' });
  await t.rejects(asOperator((cl) => pinSnapshot(cl, job.id, randomUUID())), { code: 'snapshot_not_found' });
  await t.rejects(asRole(pool, 'bastion_viewer', viewer, (cl) => pinSnapshot(cl, job.id, b)), { code: '42501' });
});

t.test('leases: a snapshot in use needs force; leases are renewed, released, refused on non-present snapshots', async (t) => {
  const { job, snapshots } = await jobWithSnapshots(db, 2);
  const [a, b] = snapshots.map((s) => s.run_id) as [string, string];
  const op = randomUUID();
  const lease = await asOperator((c) => acquireSnapshotLease(c, a, 'restore', op, 60));
  t.equal(lease.acquired_by, operator);
  const again = await asOperator((c) => acquireSnapshotLease(c, a, 'restore', op, 600));
  t.equal(again.id, lease.id, 'the same operation re-acquires its lease');
  t.ok(again.expires_at.getTime() > lease.expires_at.getTime(), 'and extends it');
  await t.rejects(asOperator((c) => requestSnapshotDeletes(c, job.id, { run_ids: [a, b] })), { code: 'snapshot_in_use', details: { run_ids: [a] } });
  const renewed = await asOperator((c) => renewSnapshotLease(c, lease.id, 120));
  t.ok(renewed.expires_at.getTime() - Date.now() <= 121_000);
  t.equal(await asOperator((c) => releaseSnapshotLease(c, lease.id)), true);
  t.equal(await asOperator((c) => releaseSnapshotLease(c, lease.id)), false);
  await t.rejects(asOperator((c) => renewSnapshotLease(c, lease.id)), { code: 'lease_not_found' });
  t.equal(await asOperator((c) => requestSnapshotDelete(c, job.id, a)), 'enqueued');
  await t.rejects(asOperator((c) => acquireSnapshotLease(c, a, 'verify', randomUUID())), { code: 'snapshot_not_present' });
  await t.rejects(asOperator((c) => acquireSnapshotLease(c, randomUUID(), 'verify', randomUUID())), { code: 'snapshot_not_found' });
  await t.rejects(asOperator((c) => acquireSnapshotLease(c, b, 'verify', randomUUID(), 5)), { code: 'invalid_input' });
  await t.rejects(asOperator((c) => c.query('select bastion.acquire_snapshot_lease($1, $2, $3, $4)', [b, 'verify', randomUUID(), 100_000])), { message: 'invalid_input' });
  // force overrides a lease; the holder learns at renewal
  const l2 = await asOperator((c) => acquireSnapshotLease(c, b, 'relay', randomUUID()));
  t.equal(await asOperator((c) => requestSnapshotDelete(c, job.id, b, { force: true })), 'enqueued');
  await t.rejects(asOperator((c) => renewSnapshotLease(c, l2.id)), { code: 'snapshot_not_present' });
  // expired leases do not protect
  const { snapshots: more } = await jobWithSnapshots(db, 1);
  const l3 = await asOperator((c) => acquireSnapshotLease(c, more[0]!.run_id, 'verify', randomUUID()));
  await pool.query("update bastion.snapshot_leases set acquired_at = now() - interval '1 hour', expires_at = now() - interval '1 minute' where id = $1", [l3.id]);
  t.equal(await asOperator((c) => requestSnapshotDelete(c, more[0]!.job_id, more[0]!.run_id)), 'enqueued');
});

t.test('a lease and a delete racing on one snapshot: never both', async (t) => {
  for (let i = 0; i < 10; i++) {
    const { job, snapshots } = await jobWithSnapshots(db, 1);
    const id = snapshots[0]!.run_id;
    const [lease, del] = await Promise.allSettled([asOperator((c) => acquireSnapshotLease(c, id, 'restore', randomUUID())), asOperator((c) => requestSnapshotDelete(c, job.id, id))]);
    t.ok((lease.status === 'fulfilled') !== (del.status === 'fulfilled'), `round ${i}: exactly one wins (lease ${lease.status}, delete ${del.status})`);
  }
});

t.test('archive with cascade: every unpinned present snapshot (all pages), pinned and in-use ones skipped; unarchive', async (t) => {
  const { job, snapshots } = await jobWithSnapshots(db, 0);
  const ids: string[] = [];
  for (let i = 0; i < 1100; i++) ids.push(randomUUID());
  await pool.query(
    `insert into bastion.runs (id, job_id, node_id, status, trigger, started_at, ended_at, target_snapshot)
     select x, $1, 'hub', 'success', 'manual', now() - interval '2 days', now() - (o || ' minutes')::interval, $2::jsonb from unnest($3::uuid[]) with ordinality as u(x, o)`,
    [job.id, JSON.stringify({ node_id: 'hub', target: { type: 'local_dir', base_dir: '/b' } }), ids],
  );
  await pool.query(
    `insert into bastion.run_artifacts (run_id, job_id, node_id, target_type, target_snapshot, artifact_format, started_at, ended_at)
     select id, job_id, 'hub', 'local_dir', target_snapshot, 'archive_v1', started_at, ended_at from bastion.runs where job_id = $1`,
    [job.id],
  );
  void snapshots;
  await asOperator((c) => pinSnapshot(c, job.id, ids[0]!));
  await asOperator((c) => acquireSnapshotLease(c, ids[1]!, 'verify', randomUUID()));
  const gone = await makeSnapshot(db, job, { status: 'deleted' });
  const plain = await asOperator((c) => archiveJob(c, job.id, false));
  t.same(plain, { job_id: job.id, archived: true, enqueued: 0, skipped_pinned: 0, skipped_in_use: 0 }, 'without cascade nothing is queued');
  const r = await asOperator((c) => archiveJob(c, job.id, true));
  t.same(r, { job_id: job.id, archived: false, enqueued: 1098, skipped_pinned: 1, skipped_in_use: 1 });
  const { rows } = await pool.query("select count(*)::int as n, min(delete_reason) as reason from bastion.artifact_delete_tasks where job_id = $1", [job.id]);
  t.same(rows[0], { n: 1098, reason: 'job_archive_cascade' });
  t.equal((await events(pool, ids[5]!))[0]!.message, 'delete queued (job archive cascade)');
  t.equal(await task(pool, gone.run_id), undefined);
  const j = await pool.query('select archived_at, archived_by from bastion.jobs where id = $1', [job.id]);
  t.ok(j.rows[0].archived_at);
  t.equal(j.rows[0].archived_by, operator);
  await asOperator((c) => unarchiveJob(c, job.id));
  t.equal((await pool.query('select archived_at from bastion.jobs where id = $1', [job.id])).rows[0].archived_at, null);
  await asOperator((c) => unarchiveJob(c, job.id));
  await t.rejects(asOperator((c) => archiveJob(c, randomUUID())), { code: 'job_not_found' });
  await t.rejects(asRole(pool, 'bastion_viewer', viewer, (c) => archiveJob(c, job.id)), { code: '42501' });
});

t.test('unarchive refuses a name taken meanwhile', async (t) => {
  const { job } = await jobWithSnapshots(db, 0);
  await asOperator((c) => archiveJob(c, job.id));
  await pool.query("insert into bastion.jobs (name, spec) values ($1, '{}')", [job.name]);
  await t.rejects(asOperator((c) => unarchiveJob(c, job.id)), { code: 'job_name_taken' });
});

t.test('delete_job keep_data: the job and its index go at once, data stays; refused while an attempt runs', async (t) => {
  const { job, snapshots } = await jobWithSnapshots(db, 3);
  await asOperator((c) => requestSnapshotDelete(c, job.id, snapshots[0]!.run_id));
  await claim(pool, snapshots[0]!.run_id, 'w');
  await t.rejects(asRole(pool, 'bastion_admin', admin, (c) => deleteJob(c, job.id, 'keep_data')), { code: 'task_running' });
  await finish(pool, [{ run_id: snapshots[0]!.run_id, attempt: 1, kind: 'network', error: 'x' }], 'w');
  await t.rejects(asOperator((c) => deleteJob(c, job.id, 'keep_data')), { code: '42501' }, 'operators archive; admins delete');
  const r = await asRole(pool, 'bastion_admin', admin, (c) => deleteJob(c, job.id, 'keep_data'));
  t.same(r, { job_id: job.id, mode: 'keep_data', job_deleted: true, snapshots_left_on_targets: 3 });
  t.equal((await pool.query('select count(*)::int as n from bastion.jobs where id = $1', [job.id])).rows[0].n, 0);
  t.same(await graphileJobs(pool, snapshots[0]!.run_id), [], 'its queued attempt was removed');
  await t.rejects(asRole(pool, 'bastion_admin', admin, (c) => deleteJob(c, job.id, 'keep_data')), { code: 'job_not_found' });
  await t.rejects(asRole(pool, 'bastion_admin', admin, (c) => deleteJob(c, job.id, 'nuke' as never)), { code: 'invalid_input', details: { field: 'mode' } });
});

t.test('delete_job delete_data_first: archived, every snapshot queued, the row goes when the last is done', async (t) => {
  const { job, snapshots } = await jobWithSnapshots(db, 3);
  const [a, b, c] = snapshots.map((s) => s.run_id) as [string, string, string];
  await asOperator((cl) => pinSnapshot(cl, job.id, a));
  await t.rejects(asRole(pool, 'bastion_admin', admin, (cl) => deleteJob(cl, job.id, 'delete_data_first')), { code: 'snapshot_pinned' });
  t.equal((await pool.query('select delete_requested_at from bastion.jobs where id = $1', [job.id])).rows[0].delete_requested_at, null, 'refused as a whole');
  const r = await asRole(pool, 'bastion_admin', admin, (cl) => deleteJob(cl, job.id, 'delete_data_first', { force: true }));
  t.same(r, { job_id: job.id, mode: 'delete_data_first', job_deleted: false, snapshots_to_delete: 3, enqueued: 3 });
  const j = (await pool.query('select archived_at, delete_requested_at, delete_requested_by from bastion.jobs where id = $1', [job.id])).rows[0];
  t.ok(j.archived_at && j.delete_requested_at);
  t.equal(j.delete_requested_by, admin);
  await t.rejects(asOperator((cl) => unarchiveJob(cl, job.id)), { code: 'job_deleting' });
  t.equal((await task(pool, a))!.delete_reason, 'job_delete');
  // two finish; one is blocked: the job waits for it
  for (const id of [a, b, c]) await claim(pool, id, 'w', 1);
  await finish(pool, [
    { run_id: a, attempt: 1, outcome: 'deleted', message: 'ok' },
    { run_id: b, attempt: 1, outcome: 'not_found', message: 'gone' },
    { run_id: c, attempt: 1, kind: 'auth', error: '401' },
  ], 'w');
  t.equal((await pool.query('select count(*)::int as n from bastion.jobs where id = $1', [job.id])).rows[0].n, 1, 'a blocked delete keeps the job');
  // calling again requeues what stopped
  const again = await asRole(pool, 'bastion_admin', admin, (cl) => deleteJob(cl, job.id, 'delete_data_first'));
  t.equal(again.requeued, 1);
  await claim(pool, c, 'w');
  await finish(pool, [{ run_id: c, attempt: 1, outcome: 'deleted', message: 'ok' }], 'w');
  t.equal((await pool.query('select count(*)::int as n from bastion.jobs where id = $1', [job.id])).rows[0].n, 0, 'the job row went with its last snapshot');
  t.equal((await pool.query('select count(*)::int as n from bastion.run_artifacts where job_id = $1', [job.id])).rows[0].n, 0);
  // a job without live snapshots goes at once
  const empty = await jobWithSnapshots(db, 0);
  await makeSnapshot(db, empty.job, { status: 'deleted' });
  const r2 = await asRole(pool, 'bastion_admin', admin, (cl) => deleteJob(cl, empty.job.id, 'delete_data_first'));
  t.equal(r2.job_deleted, true);
});

t.test('requests racing claims and outcomes on the same tasks: no deadlock, one task each, consistent states', async (t) => {
  await pool.query("update bastion.artifact_delete_tasks set next_attempt_at = now() + interval '1 day' where next_attempt_at is not null");
  const { job, snapshots } = await jobWithSnapshots(db, 20);
  const ids = snapshots.map((s) => s.run_id);
  for (const s of snapshots) await makeDeleteTask(db, s as never, { status: 'blocked', kind: 'auth', attempts: 1 });
  const errors: unknown[] = [];
  const requester = async () => {
    for (let i = 0; i < 15; i++) await asOperator((c) => requestSnapshotDeletes(c, job.id, { run_ids: [...ids].reverse() })).catch((e) => errors.push(e));
  };
  const worker = async (name: string) => {
    for (let i = 0; i < 15; i++) {
      try {
        const claimed = await claim(pool, ids[i % ids.length]!, name, 5);
        await finish(pool, claimed.map((c) => ({ run_id: c.run_id, attempt: c.attempts, kind: 'auth', error: '401' })), name);
        for (const id of ids) await pool.query('update bastion.artifact_delete_tasks set next_attempt_at = now() where run_id = $1 and status = $2', [id, 'blocked']);
      } catch (e) {
        errors.push(e);
      }
    }
  };
  await Promise.all([requester(), requester(), worker('w-a'), worker('w-b'), worker('w-c')]);
  t.same(errors.map((e) => (e as { code?: string }).code), [], 'no deadlock or other error');
  const { rows } = await pool.query('select t.status, a.status as snapshot from bastion.artifact_delete_tasks t join bastion.run_artifacts a using (run_id) where t.run_id = any($1)', [ids]);
  t.equal(rows.length, 20, 'one task per snapshot');
  for (const r of rows) t.equal(r.snapshot, r.status === 'blocked' ? 'error' : 'deleting', `snapshot follows its ${r.status} task`);
});
