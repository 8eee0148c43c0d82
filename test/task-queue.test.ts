/**
 * The generic task queue in SQL (sql/migrations/0004, bastion_private.task_*)
 * on the artifact delete queue: claim, heartbeat, outcomes with backoff and
 * abandon rules, release, the watchdog, operator actions and their 409s,
 * gapless event numbers under concurrency, graphile-worker jobs kept in step
 * with the task rows, and agreement of the SQL backoff with core/backoff.ts.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';

import t from 'tap';
import { backoffSeconds, retryDelaySeconds } from '../core/backoff.ts';
import { ERRORS } from '../core/errors.ts';
import { abandonReason, checkTaskAction, TASK_ERROR_KINDS, TASK_STATUSES, type TaskStatus } from '../core/task-status.ts';
import { testDatabase } from './db.ts';
import { asRole, claim, events, finish, graphileJobs, jobWithSnapshots, makeDue, makeUserRow, snapshotRow, task } from './delete-queue-kit.ts';
import { makeDeleteTask } from './factories.ts';

const tdb = await testDatabase(t, { poolMax: 30 });
const { pool, db } = tdb;

/** Tasks left waiting by earlier tests are pushed out of the way, so batch claims see only this test's tasks. */
async function parkOthers() {
  await pool.query("update bastion.artifact_delete_tasks set next_attempt_at = now() + interval '1 day' where next_attempt_at is not null");
}

async function queued(n = 1) {
  const { job, snapshots } = await jobWithSnapshots(db, n);
  await pool.query('select * from bastion.request_snapshot_deletes($1, $2::uuid[])', [job.id, snapshots.map((s) => s.run_id)]);
  return { job, snapshots, ids: snapshots.map((s) => s.run_id) };
}

t.test('every error code raised by the delete-queue migration is in the catalogue', async (t) => {
  const text = await fs.readFile(new URL('../sql/migrations/0004_snapshots_and_delete_queue.sql', import.meta.url), 'utf8');
  const codes = new Set([...text.matchAll(/raise_error\('([a-z_]+)'/g)].map((m) => m[1]!));
  for (const m of text.matchAll(/'(delete_task_not_found)'\)/g)) codes.add(m[1]!);
  t.ok(codes.size >= 14, `${codes.size} codes`);
  for (const c of codes) t.ok(Object.hasOwn(ERRORS, c), `${c} is catalogued`);
});

t.test('SQL backoff equals core/backoff.ts on many inputs (incl. the reference vectors)', async (t) => {
  const keys = ['r1', ...Array.from({ length: 40 }, () => randomUUID()), 'é✓🙂'];
  const cases: Array<[string, number, string]> = [];
  for (const kind of TASK_ERROR_KINDS) for (const a of [0, 1, 2, 3, 5, 8, 13, 21, 31, 32, 100]) for (const k of keys.slice(0, 12)) cases.push([kind, a, k]);
  for (const k of keys) cases.push(['network', 4, k]);
  const { rows } = await pool.query<{ s: number }>(
    'select bastion_private.task_backoff_seconds(k::bastion.task_error_kind, a, key) as s from unnest($1::text[], $2::int[], $3::text[]) with ordinality as u(k, a, key, o) order by o',
    [cases.map((c) => c[0]), cases.map((c) => c[1]), cases.map((c) => c[2])],
  );
  const mismatches = cases.filter((c, i) => rows[i]!.s !== backoffSeconds(c[0] as never, c[1], c[2]));
  t.same(mismatches, [], `${cases.length} inputs agree`);
  const r1 = await pool.query<{ s: number }>("select bastion_private.task_backoff_seconds('network', n, 'r1') as s from generate_series(1, 10) n order by n");
  t.same(r1.rows.map((r) => r.s), [80, 147, 244, 491, 978, 1945, 3842, 7689, 15376, 21623]);
});

t.test('requests schedule one graphile job per task, keyed and queued per node lane', async (t) => {
  const { ids } = await queued(3);
  for (const id of ids) {
    const jobs = await graphileJobs(pool, id);
    t.equal(jobs.length, 1, 'one job');
    const k = Buffer.from(id.replace(/-/g, ''), 'hex')[15]! % 4;
    t.equal(jobs[0]!.queue_name, `artifact-delete:hub:${k}`);
    const tk = await task(pool, id);
    t.equal(jobs[0]!.run_at.getTime(), tk!.next_attempt_at.getTime(), 'run_at = next_attempt_at');
  }
});

t.test('claim: atomic, counts the attempt, writes an event, drops the graphile jobs of the batch', async (t) => {
  await parkOthers();
  const { ids } = await queued(3);
  const claimed = await claim(pool, ids[0]!, 'w1', 10);
  t.same(claimed.map((c) => c.run_id).sort(), [...ids].sort(), 'the job\'s task and its due siblings');
  t.equal(claimed.find((c) => c.run_id === ids[0])!.attempts, 1);
  for (const id of ids) {
    const tk = await task(pool, id);
    t.equal(tk!.status, 'running');
    t.equal(tk!.claimed_by, 'w1');
    t.ok(tk!.heartbeat_at);
    t.equal(tk!.next_attempt_at, null);
    const ev = await events(pool, id);
    t.same(ev.map((e) => e.kind), ['queued', 'attempt']);
    t.same(ev[1]!.fields, { attempt: 1, worker: 'w1' });
    t.same(await graphileJobs(pool, id), [], 'no job left for a running task');
  }
  t.same(await claim(pool, ids[0]!, 'w2', 10), [], 'a duplicate/stale job claims nothing');
});

t.test('two workers racing for one task: exactly one attempt', async (t) => {
  for (let round = 0; round < 10; round++) {
    const { ids } = await queued(1);
    const clients = await Promise.all(Array.from({ length: 6 }, () => pool.connect()));
    try {
      const results = await Promise.all(clients.map((c, i) => claim(c, ids[0]!, `racer-${i}`, 1)));
      t.equal(results.filter((r) => r.length === 1).length, 1, `round ${round}: one winner`);
    } finally {
      for (const c of clients) c.release();
    }
    const tk = await task(pool, ids[0]!);
    t.equal(tk!.attempts, 1);
    t.equal((await events(pool, ids[0]!)).filter((e) => e.kind === 'attempt').length, 1);
  }
});

t.test('claim refuses tasks that are not due, batches only the same node and target type', async (t) => {
  await parkOthers();
  const { ids } = await queued(2);
  await pool.query("update bastion.artifact_delete_tasks set next_attempt_at = now() + interval '1 hour' where run_id = $1", [ids[0]]);
  t.same(await claim(pool, ids[0]!, 'w', 1), [], 'not due');
  const agent = randomUUID();
  const other = await jobWithSnapshots(db, 1, { nodeId: agent });
  await pool.query('select * from bastion.request_snapshot_deletes($1, $2::uuid[])', [other.job.id, [other.snapshots[0]!.run_id]]);
  const batch = await claim(pool, ids[1]!, 'w', 50);
  t.ok(batch.every((b) => b.executor_node_id === 'hub'), 'no task of another node');
  t.notOk(batch.some((b) => b.run_id === other.snapshots[0]!.run_id));
  const agentTasks = await claim(pool, other.snapshots[0]!.run_id, 'w', 50);
  t.same(agentTasks.map((a) => a.executor_node_id), [agent]);
  await t.rejects(claim(pool, ids[0]!, '', 1), { code: 'BA400', message: 'invalid_input' });
  await t.rejects(claim(pool, ids[0]!, 'w', 0), { code: 'BA400' });
  await t.rejects(claim(pool, ids[0]!, 'w', 1001), { code: 'BA400' });
});

t.test('outcomes: done deleted / not_found, with events and snapshot audit columns', async (t) => {
  const user = await makeUserRow(pool);
  await parkOthers();
  const { job, snapshots } = await jobWithSnapshots(db, 2);
  const [a, b] = snapshots.map((s) => s.run_id) as [string, string];
  await asRole(pool, 'bastion_operator', user, (c) => c.query('select * from bastion.request_snapshot_deletes($1, $2::uuid[], false, $3)', [job.id, [a, b], 'disk full']));
  await claim(pool, a, 'w', 2);
  const changed = await finish(pool, [
    { run_id: a, attempt: 1, outcome: 'deleted', message: 'deleted snapshot data', fields: { duration_ms: 4, path: '/x' } },
    { run_id: b, attempt: 1, outcome: 'not_found', message: 'local snapshot dir missing; nothing to delete', fields: { duration_ms: 1 } },
  ], 'w');
  t.same(changed.map((c) => c.status), ['done', 'done']);
  const sa = await snapshotRow(pool, a);
  t.equal(sa!.status, 'deleted');
  t.ok(sa!.deleted_at);
  t.equal(sa!.deleted_by, user);
  t.equal(sa!.delete_reason, 'disk full');
  const sb = await snapshotRow(pool, b);
  t.equal(sb!.status, 'missing');
  t.equal(sb!.deleted_at, null);
  t.equal(sb!.delete_reason, 'disk full');
  const ev = await events(pool, a);
  t.same(ev.map((e) => [e.seq, e.kind, e.level]), [[1, 'queued', 'info'], [2, 'attempt', 'info'], [3, 'deleted', 'info']]);
  t.same(ev[2]!.fields, { attempt: 1, duration_ms: 4, path: '/x' });
  t.equal((await events(pool, b)).at(-1)!.kind, 'not_found');
  const ta = await task(pool, a);
  t.equal(ta!.outcome, 'deleted');
  t.equal(ta!.next_attempt_at, null);
  t.equal(ta!.heartbeat_at, null);
  t.same(await graphileJobs(pool, a), []);
});

t.test('failures: kinds pick blocked or retrying, the backoff (or a longer Retry-After) sets next_attempt_at', async (t) => {
  for (const kind of TASK_ERROR_KINDS) {
    const { ids } = await queued(1);
    const id = ids[0]!;
    await claim(pool, id, 'w');
    const before = Date.now();
    const [r] = await finish(pool, [{ run_id: id, attempt: 1, kind, error: `${kind} went wrong`, fields: { http_status: 503 } }], 'w');
    const expected: TaskStatus = kind === 'auth' || kind === 'config' ? 'blocked' : 'retrying';
    t.equal(r!.status, expected, `${kind} → ${expected}`);
    const tk = await task(pool, id);
    t.equal(tk!.last_error_kind, kind);
    t.equal(tk!.last_error, `${kind} went wrong`);
    const wait = (tk!.next_attempt_at.getTime() - before) / 1000;
    const b = backoffSeconds(kind, 1, id);
    t.ok(Math.abs(wait - b) < 3, `${kind}: waits ${wait.toFixed(1)} s ≈ backoff ${b} s`);
    const jobs = await graphileJobs(pool, id);
    t.equal(jobs.length, 1, 'rescheduled');
    t.equal(jobs[0]!.run_at.getTime(), tk!.next_attempt_at.getTime());
    const ev = (await events(pool, id)).at(-1)!;
    t.equal(ev.kind, expected === 'blocked' ? 'blocked' : 'failed');
    t.equal(ev.level, 'warn');
    t.equal(ev.fields!['error_kind'], kind);
    t.equal(ev.fields!['http_status'], 503);
    t.ok(ev.fields!['next_attempt_at']);
    const snap = await snapshotRow(pool, id);
    t.equal(snap!.status, expected === 'blocked' ? 'error' : 'deleting', 'a retrying task keeps the snapshot deleting, with the error shown');
    t.equal(snap!.last_error, `${kind} went wrong`);
  }
  const { ids } = await queued(1);
  await claim(pool, ids[0]!, 'w');
  const before = Date.now();
  await finish(pool, [{ run_id: ids[0], attempt: 1, kind: 'network', error: '429', retry_after_secs: 7200 }], 'w');
  const wait = ((await task(pool, ids[0]!))!.next_attempt_at.getTime() - before) / 1000;
  t.ok(Math.abs(wait - retryDelaySeconds('network', 1, ids[0]!, 7200)) < 3, `Retry-After 2 h honoured (${wait.toFixed(0)} s)`);
});

t.test('abandoned after 20 attempts or 30 days of the cycle; only an operator restarts it', async (t) => {
  const { ids } = await queued(2);
  const [a, b] = ids as [string, string];
  await pool.query('update bastion.artifact_delete_tasks set status = $2, attempts = 19, last_error_kind = $3, last_error = $4 where run_id = $1', [a, 'retrying', 'network', 'x']);
  await claim(pool, a, 'w');
  t.equal((await task(pool, a))!.attempts, 20);
  t.same((await finish(pool, [{ run_id: a, attempt: 20, kind: 'network', error: 'still down' }], 'w')).map((r) => r.status), ['abandoned']);
  let ev = (await events(pool, a)).at(-1)!;
  t.equal(ev.kind, 'abandoned');
  t.equal(ev.level, 'error');
  t.equal(ev.fields!['abandon_reason'], 'max_attempts');
  t.equal((await snapshotRow(pool, a))!.status, 'error');
  t.same(await graphileJobs(pool, a), [], 'no more attempts scheduled');
  await pool.query("update bastion.artifact_delete_tasks set cycle_started_at = now() - interval '30 days 1 minute' where run_id = $1", [b]);
  await claim(pool, b, 'w');
  await finish(pool, [{ run_id: b, attempt: 1, kind: 'io', error: 'EIO' }], 'w');
  ev = (await events(pool, b)).at(-1)!;
  t.equal(ev.fields!['abandon_reason'], 'max_age');
  const { rows } = await pool.query<{ r: string | null }>("select bastion_private.task_abandon_reason(19, now() - interval '29 days') as r");
  t.equal(rows[0]!.r, abandonReason(19, new Date(Date.now() - 29 * 86_400_000)));
  // retry-now: a fresh cycle, so the old task is not abandoned again at its first failure (reference §11.19)
  const job = (await task(pool, b))!.job_id;
  await pool.query('select bastion.retry_artifact_delete_now($1, $2)', [job, b]);
  const tk = await task(pool, b);
  t.equal(tk!.status, 'queued');
  t.equal(tk!.attempts, 0);
  t.ok(Date.now() - tk!.cycle_started_at.getTime() < 60_000, 'the age clock restarted');
  await claim(pool, b, 'w');
  t.same((await finish(pool, [{ run_id: b, attempt: 1, kind: 'io', error: 'EIO' }], 'w')).map((r) => r.status), ['retrying']);
});

t.test('results of attempts the worker no longer holds are ignored', async (t) => {
  const { ids } = await queued(1);
  const id = ids[0]!;
  await claim(pool, id, 'w1');
  t.same(await finish(pool, [{ run_id: id, attempt: 1, outcome: 'deleted', message: 'x' }], 'w2'), [], 'other worker');
  t.same(await finish(pool, [{ run_id: id, attempt: 2, outcome: 'deleted', message: 'x' }], 'w1'), [], 'other attempt');
  t.equal((await task(pool, id))!.status, 'running');
  await t.rejects(finish(pool, { not: 'an array' } as never, 'w1'), { code: 'BA400' });
});

t.test('error text: one line, no credentials, ≤ 500 bytes cut on a character boundary', async (t) => {
  const { ids } = await queued(1);
  const id = ids[0]!;
  await claim(pool, id, 'w');
  const long = 'fail at https://alice:s3cr3t@dav.example/x?token=abc\n' + '界'.repeat(400);
  await finish(pool, [{ run_id: id, attempt: 1, kind: 'network', error: long }], 'w');
  const tk = await task(pool, id);
  const e = tk!.last_error as string;
  t.ok(Buffer.byteLength(e) <= 500, `${Buffer.byteLength(e)} bytes`);
  t.ok(e.endsWith('…'));
  t.notOk(e.includes('s3cr3t'), 'password removed');
  t.notOk(e.includes('alice'), 'user removed');
  t.notOk(e.includes('\n'));
  t.notOk(e.includes('\uFFFD'), 'no broken character');
  const ev = (await events(pool, id)).at(-1)!;
  t.notOk(JSON.stringify(ev).includes('s3cr3t'));
});

t.test('heartbeat answers which tasks the worker still holds; release gives unstarted tasks back', async (t) => {
  await parkOthers();
  const { ids } = await queued(3);
  await pool.query("update bastion.artifact_delete_tasks set status = 'retrying', attempts = 2, last_error_kind = 'network', last_error = 'x' where run_id = $1", [ids[1]]);
  await pool.query("update bastion.artifact_delete_tasks set status = 'blocked', attempts = 3, last_error_kind = 'auth', last_error = 'x' where run_id = $1", [ids[2]]);
  await claim(pool, ids[0]!, 'w', 3);
  const { rows } = await pool.query<{ ids: string[] }>('select bastion_private.task_heartbeat($1, $2, $3::uuid[]) as ids', ['artifact_delete', 'w', ids]);
  t.same([...rows[0]!.ids].sort(), [...ids].sort());
  const other = await pool.query<{ ids: string[] }>('select bastion_private.task_heartbeat($1, $2, $3::uuid[]) as ids', ['artifact_delete', 'someone-else', ids]);
  t.same(other.rows[0]!.ids, []);
  const n = await pool.query<{ n: number }>('select bastion_private.task_release($1, $2, $3::uuid[]) as n', ['artifact_delete', 'w', ids]);
  t.equal(n.rows[0]!.n, 3);
  const [a, b, c] = await Promise.all(ids.map((id) => task(pool, id)));
  t.same([a!.status, a!.attempts], ['queued', 0]);
  t.same([b!.status, b!.attempts], ['retrying', 2]);
  t.same([c!.status, c!.attempts], ['blocked', 3]);
  for (const x of [a, b, c]) t.ok(x!.next_attempt_at.getTime() <= Date.now() + 1000, 'due again at once');
  t.equal((await events(pool, ids[0]!)).at(-1)!.kind, 'released');
  t.equal((await graphileJobs(pool, ids[0]!)).length, 1, 'rescheduled');
});

t.test('watchdog: stale running tasks go back to retrying (or abandoned); dead workers\' graphile locks are released', async (t) => {
  await parkOthers();
  const { ids } = await queued(3);
  await claim(pool, ids[0]!, 'dead-worker', 3);
  // A live worker's task stays; an old heartbeat is what marks the dead one.
  await pool.query("update bastion.artifact_delete_tasks set heartbeat_at = now() - interval '2 minutes' where run_id = any($1)", [ids]);
  await pool.query('update bastion.artifact_delete_tasks set attempts = 20 where run_id = $1', [ids[2]]);
  // Simulate the graphile job and queue lane the dead worker still holds.
  await pool.query("select graphile_worker.add_job('artifact-delete', '{}'::json, queue_name => 'artifact-delete:hub:9', job_key => 'held-by-dead')");
  await pool.query("update graphile_worker._private_jobs set locked_at = now(), locked_by = 'dead-worker' where key = 'held-by-dead'");
  await pool.query("update graphile_worker._private_job_queues set locked_at = now(), locked_by = 'dead-worker' where queue_name = 'artifact-delete:hub:9'");
  const live = await queued(1);
  await claim(pool, live.ids[0]!, 'live-worker');

  const { rows } = await pool.query<{ queue: string; run_id: string; status: string }>("select * from bastion_private.task_watchdog('40 seconds', '0 seconds')");
  t.same(rows.map((r) => r.status).sort(), ['abandoned', 'retrying', 'retrying']);
  t.equal((await task(pool, live.ids[0]!))!.status, 'running', 'a task with a fresh heartbeat is left alone');
  const tk = await task(pool, ids[0]!);
  t.same([tk!.status, tk!.last_error_kind, tk!.last_error, tk!.claimed_by], ['retrying', 'unknown', 'stuck running; recovered', null]);
  const ev = (await events(pool, ids[0]!)).at(-1)!;
  t.same([ev.kind, ev.level, ev.message], ['failed', 'warn', 'stuck running; recovered']);
  t.equal(ev.fields!['worker'], 'dead-worker');
  t.equal((await events(pool, ids[2]!)).at(-1)!.kind, 'abandoned');
  t.equal((await graphileJobs(pool, ids[0]!)).length, 1, 'a fresh attempt is scheduled');
  const held = await pool.query("select locked_at from graphile_worker.jobs where key = 'held-by-dead'");
  t.equal(held.rows[0].locked_at, null, 'the dead worker\'s job is unlocked');
  const lane = await pool.query("select locked_at from graphile_worker._private_job_queues where queue_name = 'artifact-delete:hub:9'");
  t.equal(lane.rows[0].locked_at, null, 'its node lane is free again');
  await t.rejects(pool.query("select * from bastion_private.task_watchdog('0 seconds')"), { code: 'BA400' });
});

t.test('operator actions: every status against retry-now, ignore, unignore (409 rules match core/task-status.ts)', async (t) => {
  const user = await makeUserRow(pool);
  for (const status of TASK_STATUSES) {
    for (const action of ['retry_now', 'ignore', 'unignore'] as const) {
      const { job, snapshots } = await jobWithSnapshots(db, 1);
      const s = snapshots[0]!;
      await makeDeleteTask(db, s as never, { status, attempts: status === 'queued' ? 0 : 2 });
      const fn = { retry_now: 'retry_artifact_delete_now($1, $2)', ignore: "ignore_artifact_delete($1, $2, 'because')", unignore: 'unignore_artifact_delete($1, $2)' }[action];
      const expected = checkTaskAction(action, status);
      const got = await asRole(pool, 'bastion_operator', user, (c) => c.query(`select * from bastion.${fn}`, [job.id, s.run_id])).then(
        (r) => ({ ok: true as const, row: r.rows[0] }),
        (e: { code?: string; message?: string }) => ({ ok: false as const, code: e.message, sqlstate: e.code }),
      );
      if (expected.ok) {
        t.ok(got.ok, `${action} from ${status} accepted`);
        if (!got.ok) continue;
        const want = action === 'ignore' ? 'ignored' : 'queued';
        t.equal(got.row.status, want, `${action} from ${status} → ${want}`);
        if (want === 'queued') {
          t.equal(got.row.attempts, 0);
          t.equal(got.row.ignored_at, null);
          t.equal((await graphileJobs(pool, s.run_id)).length, 1, 'scheduled');
          t.equal((await snapshotRow(pool, s.run_id))!.status, 'deleting');
        } else {
          t.same(await graphileJobs(pool, s.run_id), [], 'no attempts while ignored');
          t.equal((await snapshotRow(pool, s.run_id))!.status, 'error');
        }
        if (!(action === 'ignore' && status === 'ignored')) {
          const ev = (await events(pool, s.run_id)).at(-1)!;
          t.equal(ev.kind, { retry_now: 'retry_now', ignore: 'ignored', unignore: 'unignored' }[action]);
          t.equal(ev.fields!['user_id'], user);
        }
      } else {
        t.equal(got.ok ? 'accepted' : got.code, expected.code, `${action} from ${status} → ${expected.code}`);
        if (!got.ok) t.equal(got.sqlstate, 'BA409');
      }
    }
  }
});

t.test('ignore reason: one line, trimmed, ≤ 200 characters cut on a character boundary', async (t) => {
  const { job, snapshots } = await jobWithSnapshots(db, 2);
  await makeDeleteTask(db, snapshots[0] as never, { status: 'retrying' });
  await makeDeleteTask(db, snapshots[1] as never, { status: 'retrying' });
  const reason = '  ' + '🙂'.repeat(150) + 'x'.repeat(100) + '\n';
  const { rows } = await pool.query('select * from bastion.ignore_artifact_delete($1, $2, $3)', [job.id, snapshots[0]!.run_id, reason]);
  const r = rows[0].ignore_reason as string;
  t.equal([...r].length, 200, '200 characters');
  t.ok(r.startsWith('🙂'));
  t.ok(r.endsWith('…'));
  t.notOk(r.includes('\uFFFD'));
  const blank = await pool.query('select * from bastion.ignore_artifact_delete($1, $2, $3)', [job.id, snapshots[1]!.run_id, ' \n\t ']);
  t.equal(blank.rows[0].ignore_reason, null, 'blank → no reason');
});

t.test('operator actions: 404s and grants', async (t) => {
  const { job, snapshots } = await jobWithSnapshots(db, 2);
  const other = await jobWithSnapshots(db, 1);
  await makeDeleteTask(db, snapshots[0] as never, { status: 'retrying' });
  await t.rejects(pool.query('select bastion.retry_artifact_delete_now($1, $2)', [job.id, snapshots[1]!.run_id]), { message: 'delete_task_not_found', code: 'BA404' });
  await t.rejects(pool.query('select bastion.retry_artifact_delete_now($1, $2)', [other.job.id, snapshots[0]!.run_id]), { message: 'delete_task_not_found' }, 'task of another job');
  await t.rejects(pool.query('select bastion.retry_artifact_delete_now($1, $2)', [randomUUID(), snapshots[0]!.run_id]), { message: 'job_not_found' });
  const viewer = await makeUserRow(pool, 'viewer');
  await t.rejects(asRole(pool, 'bastion_viewer', viewer, (c) => c.query('select bastion.retry_artifact_delete_now($1, $2)', [job.id, snapshots[0]!.run_id])), { code: '42501' });
  await t.rejects(asRole(pool, 'bastion_viewer', viewer, (c) => c.query("select * from bastion_private.task_claim('artifact_delete', $1, 'w', 1)", [snapshots[0]!.run_id])), { code: '42501' }, 'worker functions are not for application roles');
  await t.rejects(asRole(pool, 'bastion_admin', viewer, (c) => c.query("select * from bastion_private.task_watchdog()")), { code: '42501' });
  const rows = await asRole(pool, 'bastion_viewer', viewer, (c) => c.query('select count(*)::int as n from bastion.artifact_delete_tasks'));
  t.ok(rows.rows[0].n >= 1, 'viewers read the queue');
});

t.test('gapless event seq under concurrent writers', async (t) => {
  const { ids } = await queued(1);
  const id = ids[0]!;
  const n = 40;
  const clients = await Promise.all(Array.from({ length: 10 }, () => pool.connect()));
  try {
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        clients[i % clients.length]!.query("select bastion_private.task_append_event('artifact_delete', $1, 'info', 'note', $2)", [id, `note ${i}`]),
      ),
    );
  } finally {
    for (const c of clients) c.release();
  }
  const seqs = (await events(pool, id)).map((e) => e.seq);
  t.same(seqs, Array.from({ length: n + 1 }, (_, i) => i + 1), `1..${n + 1} without gaps`);
  t.equal((await task(pool, id))!.event_seq, n + 1);
  // A rolled-back writer leaves no gap either.
  const c = await pool.connect();
  await c.query('begin');
  await c.query("select bastion_private.task_append_event('artifact_delete', $1, 'info', 'note', 'rolled back')", [id]);
  await c.query('rollback');
  c.release();
  await pool.query("select bastion_private.task_append_event('artifact_delete', $1, 'info', 'note', 'after')", [id]);
  t.equal((await events(pool, id)).at(-1)!.seq, n + 2);
  await t.rejects(pool.query("select bastion_private.task_append_event('artifact_delete', $1, 'info', 'note', 'x')", [randomUUID()]), { message: 'delete_task_not_found' });
  await t.rejects(pool.query("select bastion_private.task_append_event('no_such_queue', $1, 'info', 'note', 'x')", [id]), { message: 'invalid_input' });
});

t.test('the task table refuses states that break its invariants (CHECKs)', async (t) => {
  const { ids } = await queued(1);
  const id = ids[0]!;
  const bad = [
    "status = 'done'",
    "status = 'running'",
    "next_attempt_at = null",
    "status = 'blocked', attempts = 1, last_error_kind = 'network', last_error = 'x'",
    "status = 'ignored'",
    "status = 'retrying', attempts = 1",
    "last_error = repeat('x', 501)",
    "outcome = 'exploded'",
  ];
  for (const set of bad) await t.rejects(pool.query(`update bastion.artifact_delete_tasks set ${set} where run_id = $1`, [id]), { code: '23514' }, set);
});



t.test('the crontab tasks: queue-watchdog recovers with production thresholds; artifact-delete ignores a malformed payload', async (t) => {
  const { queueWatchdog } = await import('../worker/tasks/queue-watchdog.ts');
  const { artifactDeleteTask } = await import('../worker/tasks/artifact-delete.ts');
  const logs: string[] = [];
  const helpers = {
    withPgClient: async <T>(fn: (c: import('pg').PoolClient) => Promise<T>) => {
      const c = await pool.connect();
      try {
        return await fn(c);
      } finally {
        c.release();
      }
    },
    logger: { debug: () => {}, info: () => {}, warn: (m: string) => logs.push(m), error: (m: string) => logs.push(m) },
    job: { locked_by: 'test-pool' },
    abortSignal: new AbortController().signal,
  };
  await parkOthers();
  const { ids } = await queued(2);
  await claim(pool, ids[0]!, 'gone-worker');
  await claim(pool, ids[1]!, 'alive-worker');
  await pool.query("update bastion.artifact_delete_tasks set heartbeat_at = now() - interval '41 seconds' where run_id = $1", [ids[0]]);
  await pool.query("update bastion.artifact_delete_tasks set heartbeat_at = now() - interval '30 seconds' where run_id = $1", [ids[1]]);
  await queueWatchdog({}, helpers as never);
  t.equal((await task(pool, ids[0]!))!.status, 'retrying', 'silent for more than 40 s: recovered');
  t.equal((await task(pool, ids[1]!))!.status, 'running', 'silent for 30 s: still trusted');
  const due = (await task(pool, ids[0]!))!.next_attempt_at.getTime() - Date.now();
  t.ok(due > 20_000 && due <= 30_000, 'due again after the 30 s recovery delay');
  t.ok(logs.some((l) => l.includes('recovered 1 queue tasks')));
  await artifactDeleteTask()({ run_id: '../../etc' } as never, helpers as never);
  t.ok(logs.some((l) => l.includes('malformed payload')), 'logged, not thrown (a retry would not fix it)');
});
