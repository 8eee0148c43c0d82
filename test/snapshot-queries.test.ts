/**
 * Reading the snapshot index (db/queries/snapshots.ts) and the delete queue
 * (db/queries/delete-tasks.ts): keyset pages that never skip or repeat a row
 * (even when statuses change mid-way, or ended_at values differ by a
 * microsecond), filters, malformed cursors and filter values, detail with the
 * delete task and its latest events — as a viewer, through row-level security.
 */
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { listDeleteEvents, listDeleteTasks } from '../db/queries/delete-tasks.ts';
import { decodeSnapshotCursor, encodeSnapshotCursor, getSnapshot, listSnapshots, type SnapshotListQuery } from '../db/queries/snapshots.ts';
import { testDatabase } from './db.ts';
import { asRole, claim, finish, jobWithSnapshots, makeUserRow } from './delete-queue-kit.ts';
import { makeDeleteTask, makeJob, makeSnapshot, makeSpec } from './factories.ts';

const { pool, db } = await testDatabase(t);
const viewer = await makeUserRow(pool, 'viewer');
const asViewer = <T>(fn: (c: import('pg').PoolClient) => Promise<T>) => asRole(pool, 'bastion_viewer', viewer, fn);

async function all(jobId: string, query: SnapshotListQuery = {}, between?: (page: number) => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 100; page++) {
    const r = await asViewer((c) => listSnapshots(c, jobId, { ...query, ...(cursor ? { cursor } : {}) }));
    seen.push(...r.items.map((i) => i.run_id));
    if (!r.next_cursor) return seen;
    cursor = r.next_cursor;
    await between?.(page);
  }
  throw new Error('too many pages');
}

t.test('pages newest first, 50 by default, 200 at most, every row exactly once', async (t) => {
  const { job } = await jobWithSnapshots(db, 0);
  const ids: string[] = [];
  for (let i = 0; i < 230; i++) ids.push(randomUUID());
  // many share one ended_at (ties are ordered by run id), the rest are a minute apart
  await pool.query(
    `insert into bastion.runs (id, job_id, node_id, status, trigger, started_at, ended_at, target_snapshot)
     select x, $1, 'hub', 'success', 'manual', timestamptz '2026-01-01', timestamptz '2026-06-01' + ((o / 3) || ' minutes')::interval, $2::jsonb
       from unnest($3::uuid[]) with ordinality as u(x, o)`,
    [job.id, JSON.stringify({ node_id: 'hub', target: { type: 'local_dir', base_dir: '/b' } }), ids],
  );
  await pool.query(
    `insert into bastion.run_artifacts (run_id, job_id, node_id, target_type, target_snapshot, artifact_format, started_at, ended_at)
     select id, job_id, 'hub', 'local_dir', target_snapshot, 'archive_v1', started_at, ended_at from bastion.runs where job_id = $1`,
    [job.id],
  );
  const first = await asViewer((c) => listSnapshots(c, job.id));
  t.equal(first.items.length, 50);
  t.ok(first.next_cursor);
  const expected = (await pool.query<{ run_id: string }>('select run_id from bastion.run_artifacts where job_id = $1 order by ended_at desc, run_id desc', [job.id])).rows.map((r) => r.run_id);
  t.same(first.items.map((i) => i.run_id), expected.slice(0, 50));
  t.equal((await asViewer((c) => listSnapshots(c, job.id, { limit: 10_000 }))).items.length, 200, 'clamped to 200');
  t.equal((await asViewer((c) => listSnapshots(c, job.id, { limit: -3 }))).items.length, 1, 'clamped to 1');
  t.same(await all(job.id, { limit: 7 }), expected, 'limit 7: every row once, in order');
  const five = await jobWithSnapshots(db, 5);
  const exact = await asViewer((c) => listSnapshots(c, five.job.id, { limit: 5 }));
  t.same([exact.items.length, exact.next_cursor], [5, null], 'an exactly full last page says there is no more');
});

t.test('ended_at values a microsecond apart are neither skipped nor repeated', async (t) => {
  const { job } = await jobWithSnapshots(db, 0);
  const ids = Array.from({ length: 9 }, () => randomUUID());
  await pool.query(
    `insert into bastion.runs (id, job_id, node_id, status, trigger, started_at, ended_at, target_snapshot)
     select x, $1, 'hub', 'success', 'manual', timestamptz '2026-01-01', timestamptz '2026-06-01 12:00:00.123' + (o || ' microseconds')::interval, $2::jsonb
       from unnest($3::uuid[]) with ordinality as u(x, o)`,
    [job.id, JSON.stringify({ node_id: 'hub', target: { type: 'local_dir', base_dir: '/b' } }), ids],
  );
  await pool.query(
    `insert into bastion.run_artifacts (run_id, job_id, node_id, target_type, target_snapshot, artifact_format, started_at, ended_at)
     select id, job_id, 'hub', 'local_dir', target_snapshot, 'archive_v1', started_at, ended_at from bastion.runs where job_id = $1`,
    [job.id],
  );
  t.same(await all(job.id, { limit: 2 }), [...ids].reverse());
});

t.test('rows changing status while a client pages are not skipped', async (t) => {
  const { job, snapshots } = await jobWithSnapshots(db, 12);
  const expected = snapshots.map((s) => s.run_id); // created newest first
  const seen = await all(job.id, { limit: 4 }, async (page) => {
    // after each page, earlier and later rows change status
    const changed = expected.slice(page * 4, page * 4 + 6);
    await pool.query("update bastion.run_artifacts set status = 'deleted', deleted_at = now() where run_id = any($1)", [changed]);
  });
  t.same(seen, expected);
  // with a status filter, rows leave the set as they change, the rest still come once
  const other = await jobWithSnapshots(db, 10);
  const ids = other.snapshots.map((s) => s.run_id);
  const seen2 = await all(other.job.id, { limit: 3, status: ['present'] }, async () => {
    await pool.query("update bastion.run_artifacts set status = 'deleting' where run_id = $1", [ids[9]]);
  });
  t.same(seen2, ids.slice(0, 9), 'the row that left before its page came is not shown, nothing else is lost');
});

t.test('filters: status[], pinned (expiry considered), from/to, target_type, artifact_format, node_id', async (t) => {
  const job = await makeJob(db, { spec: makeSpec({ format: 'raw_tree_v1' }) });
  const day = 86_400_000;
  const base = Date.parse('2026-03-10T00:00:00Z');
  const s = [];
  for (let i = 0; i < 6; i++) s.push(await makeSnapshot(db, job, { endedAt: new Date(base - i * day) }));
  await pool.query("update bastion.run_artifacts set status = 'error' where run_id = $1", [s[1]!.run_id]);
  await pool.query("update bastion.run_artifacts set status = 'deleted', deleted_at = now() where run_id = $1", [s[2]!.run_id]);
  await pool.query('update bastion.run_artifacts set pinned_at = now() where run_id = $1', [s[3]!.run_id]);
  await pool.query("update bastion.run_artifacts set pinned_at = now() - interval '2 days', pin_expires_at = now() - interval '1 day' where run_id = $1", [s[4]!.run_id]);
  const ids = async (q: SnapshotListQuery) => (await asViewer((c) => listSnapshots(c, job.id, q))).items.map((i) => i.run_id);
  t.same(await ids({ status: ['error', 'deleted'] }), [s[1]!.run_id, s[2]!.run_id]);
  t.same(await ids({ pinned: true }), [s[3]!.run_id], 'an expired pin is not a pin');
  t.equal((await ids({ pinned: false })).length, 5);
  t.same(await ids({ from: new Date(base - 2 * day).toISOString(), to: new Date(base).toISOString() }), [s[1]!.run_id, s[2]!.run_id], 'from inclusive, to exclusive');
  t.same(await ids({ from: '2026-03-09' }), [s[0]!.run_id, s[1]!.run_id], 'a plain date');
  t.equal((await ids({ target_type: 'local_dir' })).length, 6);
  t.same(await ids({ target_type: 'webdav' }), []);
  t.equal((await ids({ artifact_format: 'raw_tree_v1' })).length, 6);
  t.same(await ids({ artifact_format: 'archive_v1' }), []);
  t.equal((await ids({ node_id: 'hub' })).length, 6);
  t.same(await ids({ node_id: randomUUID() }), []);
  const item = (await asViewer((c) => listSnapshots(c, job.id, { pinned: true }))).items[0]!;
  t.equal(item.pinned, true);
  t.equal(item.delete_task, null);
  t.equal(typeof item.source_bytes, 'number');
});

t.test('malformed cursors and filter values are 400s naming the field', async (t) => {
  const { job } = await jobWithSnapshots(db, 1);
  const list = (q: unknown) => asViewer((c) => listSnapshots(c, job.id, q as SnapshotListQuery));
  const b64 = (s: string) => Buffer.from(s).toString('base64url');
  await t.rejects(list({ cursor: '%%%' }), { code: 'invalid_cursor', details: { field: 'cursor', reason: 'invalid_encoding' } });
  await t.rejects(list({ cursor: b64('not json') }), { code: 'invalid_cursor', details: { reason: 'invalid_encoding' } });
  await t.rejects(list({ cursor: b64('[1,2]') }), { code: 'invalid_cursor', details: { reason: 'invalid_payload' } });
  await t.rejects(list({ cursor: b64(JSON.stringify({ e: '2026-01-01T00:00:00.000000Z', r: '' })) }), { code: 'invalid_cursor', details: { reason: 'invalid_payload' } });
  await t.rejects(list({ cursor: b64(JSON.stringify({ e: "2026-01-01'; drop table x;--", r: randomUUID() })) }), { code: 'invalid_cursor', details: { reason: 'invalid_payload' } });
  await t.rejects(list({ cursor: 'x'.repeat(2000) }), { code: 'invalid_input', details: { field: 'cursor' } });
  await t.rejects(list({ status: ['present', 'exploded'] }), { code: 'invalid_input', details: { field: 'status.1' } });
  await t.rejects(list({ from: 'yesterday' }), { code: 'invalid_input', details: { field: 'from' } });
  await t.rejects(list({ node_id: '../hub' }), { code: 'invalid_input', details: { field: 'node_id' } });
  await t.rejects(list({ target_type: 's3' }), { code: 'invalid_input', details: { field: 'target_type' } });
  await t.rejects(list({ limit: 1.5 }), { code: 'invalid_input', details: { field: 'limit' } });
  await t.rejects(list({ sort: 'asc' }), { code: 'invalid_input' }, 'unknown keys are refused');
  await t.rejects(asViewer((c) => listSnapshots(c, randomUUID())), { code: 'job_not_found' });
  await t.rejects(asViewer((c) => listSnapshots(c, 'nope')), { code: 'invalid_input', details: { field: 'job_id' } });
  const round = decodeSnapshotCursor(encodeSnapshotCursor({ endedAt: '2026-01-01T00:00:00.000001Z', runId: job.id }));
  t.same(round, { endedAt: '2026-01-01T00:00:00.000001Z', runId: job.id });
  await pool.query('update bastion.jobs set archived_at = now() where id = $1', [job.id]);
  t.equal((await list({})).items.length, 1, 'archived jobs still list their snapshots');
});

t.test('detail: snapshot, delete task and its latest events; list items carry the task summary', async (t) => {
  const { job, snapshots } = await jobWithSnapshots(db, 2);
  const id = snapshots[0]!.run_id;
  await pool.query('select * from bastion.request_snapshot_delete($1, $2)', [job.id, id]);
  await claim(pool, id, 'w');
  await finish(pool, [{ run_id: id, attempt: 1, kind: 'network', error: 'connection refused' }], 'w');
  for (let i = 0; i < 60; i++) await pool.query("select bastion_private.task_append_event('artifact_delete', $1, 'info', 'note', $2)", [id, `n${i}`]);
  const d = await asViewer((c) => getSnapshot(c, job.id, id));
  t.equal(d.snapshot.status, 'deleting');
  t.equal(d.snapshot.last_error, 'connection refused');
  t.equal(d.delete_task!.status, 'retrying');
  t.equal(d.delete_task!.attempts, 1);
  t.equal(d.events.length, 50, 'the latest 50');
  t.equal(d.events.at(-1)!.seq, 63);
  t.ok(d.events.every((e, i) => i === 0 || e.seq === d.events[i - 1]!.seq + 1), 'ascending, contiguous');
  const none = await asViewer((c) => getSnapshot(c, job.id, snapshots[1]!.run_id));
  t.same([none.delete_task, none.events], [null, []]);
  const item = (await asViewer((c) => listSnapshots(c, job.id))).items.find((i) => i.run_id === id)!;
  t.same([item.delete_task!.status, item.delete_task!.last_error_kind, item.delete_task!.attempts], ['retrying', 'network', 1]);
  t.ok(item.delete_task!.next_attempt_at instanceof Date);
  const other = await jobWithSnapshots(db, 0);
  await t.rejects(asViewer((c) => getSnapshot(c, other.job.id, id)), { code: 'snapshot_not_found' });
  await t.rejects(asViewer((c) => getSnapshot(c, randomUUID(), id)), { code: 'job_not_found' });
  const page1 = await asViewer((c) => listDeleteEvents(c, job.id, id, { limit: 10 }));
  t.same(page1.map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  const page2 = await asViewer((c) => listDeleteEvents(c, job.id, id, { afterSeq: 60 }));
  t.same(page2.map((e) => e.seq), [61, 62, 63]);
  await t.rejects(asViewer((c) => listDeleteEvents(c, job.id, snapshots[1]!.run_id)), { code: 'delete_task_not_found' });
  await t.rejects(asViewer((c) => listDeleteEvents(c, job.id, id, { limit: 1000 })), { code: 'invalid_input' });
});

t.test('the delete task list: filters and keyset pages across jobs', async (t) => {
  const a = await jobWithSnapshots(db, 5);
  for (const [i, s] of a.snapshots.entries()) await makeDeleteTask(db, s as never, { status: i % 2 === 0 ? 'blocked' : 'retrying', kind: i % 2 === 0 ? 'auth' : 'network' });
  const mine = await asViewer((c) => listDeleteTasks(c, { job_id: a.job.id }));
  t.equal(mine.items.length, 5);
  const blocked = await asViewer((c) => listDeleteTasks(c, { job_id: a.job.id, status: ['blocked'] }));
  t.equal(blocked.items.length, 3);
  t.ok(blocked.items.every((i) => i.status === 'blocked' && i.last_error_kind === 'auth'));
  const seen: string[] = [];
  let cursor: string | undefined;
  do {
    const p = await asViewer((c) => listDeleteTasks(c, { job_id: a.job.id, limit: 2, ...(cursor ? { cursor } : {}) }));
    seen.push(...p.items.map((i) => i.run_id));
    cursor = p.next_cursor ?? undefined;
  } while (cursor);
  t.same([...seen].sort(), a.snapshots.map((s) => s.run_id).sort());
  t.equal(new Set(seen).size, 5);
  await t.rejects(asViewer((c) => listDeleteTasks(c, { status: ['paused'] })), { code: 'invalid_input' });
  await t.rejects(asViewer((c) => listDeleteTasks(c, { cursor: 'abc' })), { code: 'invalid_cursor' });
});
