/**
 * The generic attempt runner against the real queue functions: batches
 * recorded in few statements, failures classified, timeouts, a stop in the
 * middle of a batch (unstarted tasks given back), and an attempt whose claim
 * was taken away (aborted, result dropped). The executors here are small test
 * executors: the runner, not a delete, is under test.
 */
import t from 'tap';
import { TaskAttemptError } from '../../core/task-attempt-error.ts';
import { testDatabase } from '../../test/db.ts';
import { events, jobWithSnapshots, task } from '../../test/delete-queue-kit.ts';
import { runAttempts, type QueueDefinition, type RunnerLogger } from './attempt-runner.ts';
import type { WithPgClient } from './task-queue-sql.ts';

const { pool, db } = await testDatabase(t);
const withPgClient: WithPgClient = async (fn) => {
  const c = await pool.connect();
  try {
    return await fn(c);
  } finally {
    c.release();
  }
};
const warnings: string[] = [];
const logger: RunnerLogger = { debug: () => {}, info: () => {}, warn: (m) => warnings.push(m), error: (m) => warnings.push(m) };

function queue(execute: QueueDefinition['execute'], overrides: Partial<QueueDefinition> = {}): QueueDefinition {
  return { name: 'artifact_delete', identifier: 'artifact-delete', batchSize: () => 50, concurrency: 2, attemptTimeoutMs: 60_000, timeoutKind: () => 'io', execute, ...overrides };
}

async function park() {
  await pool.query("update bastion.artifact_delete_tasks set next_attempt_at = now() + interval '1 day' where next_attempt_at is not null");
}

async function queued(n: number) {
  await park();
  const { job, snapshots } = await jobWithSnapshots(db, n);
  const ids = snapshots.map((s) => s.run_id);
  await pool.query('select * from bastion.request_snapshot_deletes($1, $2::uuid[])', [job.id, ids]);
  return ids;
}

t.test('a batch: successes and classified failures recorded, each with duration and hint', async (t) => {
  const ids = await queued(6);
  const report = await runAttempts(
    queue(async (task) => {
      const i = ids.indexOf(task.run_id);
      if (i % 3 === 1) throw new TaskAttemptError('config', 'not_bastion_data', 'no markers', { fields: { path: '/x' } });
      if (i % 3 === 2) throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
      return { outcome: 'deleted', message: 'deleted snapshot data', fields: { path: '/y' } };
    }),
    { run_id: ids[0]! },
    { withPgClient, workerId: 'runner-1', logger },
  );
  t.same(report, { claimed: 6, statuses: { done: 2, blocked: 2, retrying: 2 }, dropped: 0, released: 0, dispatched: 0 });
  const done = (await events(pool, ids[0]!)).at(-1)!;
  t.equal(done.kind, 'deleted');
  t.equal(typeof done.fields!['duration_ms'], 'number');
  const blocked = (await events(pool, ids[1]!)).at(-1)!;
  t.same([blocked.kind, blocked.fields!['reason'], blocked.fields!['path']], ['blocked', 'not_bastion_data', '/x']);
  t.match(blocked.fields!['hint'], /configuration/);
  const io = await task(pool, ids[2]!);
  t.same([io!.status, io!.last_error_kind], ['retrying', 'io']);
  t.equal((await events(pool, ids[2]!)).at(-1)!.fields!['errno'], 'EACCES');
});

t.test('an attempt that outlives its timeout fails with the queue\'s timeout kind', async (t) => {
  const ids = await queued(1);
  const report = await runAttempts(queue(() => new Promise(() => {}), { attemptTimeoutMs: 50 }), { run_id: ids[0]! }, { withPgClient, workerId: 'runner-2', logger });
  t.same(report.statuses, { retrying: 1 });
  const tk = await task(pool, ids[0]!);
  t.equal(tk!.last_error_kind, 'io');
  t.match(tk!.last_error, /did not finish within/);
});

t.test('stopping mid-batch: the running attempt is aborted and recorded, unstarted tasks are given back', async (t) => {
  const ids = await queued(5);
  const stop = new AbortController();
  let started = 0;
  const report = await runAttempts(
    queue(
      (_task, signal) =>
        new Promise((resolve, reject) => {
          started += 1;
          if (started === 2) setTimeout(() => stop.abort(new TaskAttemptError('unknown', 'worker_stopping', 'the worker is stopping')), 10);
          signal.addEventListener('abort', () => reject(signal.reason));
          if (started === 1) resolve({ outcome: 'deleted', message: 'ok' });
        }),
      { concurrency: 1 },
    ),
    { run_id: ids[0]! },
    { withPgClient, workerId: 'runner-3', logger, abortSignal: stop.signal },
  );
  t.equal(report.claimed, 5);
  t.same(report.statuses, { done: 1, retrying: 1 });
  t.equal(report.released, 3);
  const statuses = await Promise.all(ids.map(async (id) => (await task(pool, id))!.status));
  t.same([...statuses].sort(), ['done', 'queued', 'queued', 'queued', 'retrying']);
});

t.test('an attempt the database no longer counts as this worker\'s is aborted and its result dropped', async (t) => {
  const ids = await queued(1);
  const report = await runAttempts(
    queue(
      (task, signal) =>
        new Promise((_resolve, reject) => {
          signal.addEventListener('abort', () => reject(signal.reason));
          // The watchdog (after a stall) recovers the task while the attempt still runs.
          void pool.query("update bastion.artifact_delete_tasks set heartbeat_at = now() - interval '1 hour' where run_id = $1", [task.run_id]).then(() =>
            pool.query("select * from bastion_private.task_watchdog('1 second', '0 seconds')"),
          );
        }),
    ),
    { run_id: ids[0]! },
    { withPgClient, workerId: 'runner-4', logger, heartbeatMs: 30 },
  );
  t.same([report.claimed, report.dropped, report.statuses], [1, 1, {}]);
  t.equal((await task(pool, ids[0]!))!.status, 'retrying', 'the watchdog\'s outcome stands');
  t.ok(warnings.some((w) => w.includes('no longer held')));
});

t.test('a stale job claims nothing and runs nothing', async (t) => {
  const ids = await queued(1);
  await pool.query("update bastion.artifact_delete_tasks set next_attempt_at = now() + interval '1 hour' where run_id = $1", [ids[0]]);
  let ran = false;
  const report = await runAttempts(queue(async () => ((ran = true), { outcome: 'deleted', message: 'x' })), { run_id: ids[0]! }, { withPgClient, workerId: 'runner-5', logger });
  t.same([report.claimed, ran], [0, false]);
});

t.test('every attempt is observed in the attempt-duration histogram by queue and outcome (/metrics text)', async (t) => {
  const { metrics, taskAttemptSeconds } = await import('../../core/metrics.ts');
  const ids = await queued(3);
  const before = {
    deleted: taskAttemptSeconds.count({ queue: 'artifact_delete', outcome: 'deleted' }),
    failed: taskAttemptSeconds.count({ queue: 'artifact_delete', outcome: 'failed_config' }),
  };
  const report = await runAttempts(
    queue(async (task) => {
      if (task.run_id === ids[1]) throw new TaskAttemptError('config', 'not_bastion_data', 'no markers');
      await new Promise((r) => setTimeout(r, 20));
      return { outcome: 'deleted', message: 'deleted snapshot data' };
    }),
    { run_id: ids[0]! },
    { withPgClient, workerId: 'runner-metrics', logger },
  );
  t.same(report.statuses, { done: 2, blocked: 1 });
  t.equal(taskAttemptSeconds.count({ queue: 'artifact_delete', outcome: 'deleted' }) - before.deleted, 2, 'two successful attempts');
  t.equal(taskAttemptSeconds.count({ queue: 'artifact_delete', outcome: 'failed_config' }) - before.failed, 1, 'one failure, labelled with its kind');
  const text = await metrics.render();
  const count = new RegExp(`^bastion_task_attempt_duration_seconds_count\\{queue="artifact_delete",outcome="deleted"\\} (\\d+)$`, 'm').exec(text);
  t.ok(count && Number(count[1]) >= 2, 'the /metrics text has the series');
  const sum = Number(/^bastion_task_attempt_duration_seconds_sum\{queue="artifact_delete",outcome="deleted"\} (\S+)$/m.exec(text)?.[1]);
  t.ok(sum >= 0.03, `the sum holds the attempts' seconds (${sum})`);
  t.match(text, /^bastion_task_attempt_duration_seconds_bucket\{queue="artifact_delete",outcome="failed_config",le="0\.01"\} \d+$/m, 'buckets per series');
});
