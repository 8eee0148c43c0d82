/**
 * The incomplete-cleanup queue end to end: real graphile-worker workers clean
 * real partial run directories (written by the artifact format's writer,
 * then cut short) on the hub's file system and on a real WebDAV server behind
 * a fault proxy; reconcile run as the crontab task feeds them; a worker
 * process killed with SIGKILL mid-cleanup is recovered by the watchdog and
 * its task ends done.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { backoffSeconds } from '../core/backoff.ts';
import { SecretKeyProvider } from '../engine/secrets/secret-key.ts';
import { putWebdavSecret, resolveWebdavCredentials } from '../engine/secrets/secret-store.ts';
import { incompleteCleanupTask, type IncompleteCleanupOptions } from '../worker/tasks/incomplete-cleanup.ts';
import { incompleteCleanupReconcile } from '../worker/tasks/incomplete-cleanup-reconcile.ts';
import { testDatabase } from './db.ts';
import { cleanupEvents, cleanupJob, cleanupJobs, cleanupTask, oldRun } from './cleanup-queue-kit.ts';
import { makeAgent, writePartialRunDir, writeRunDir } from './factories.ts';
import { startFaultProxy } from './fault-proxy.ts';
import { spawnQueueWorker, startQueueWorker } from './queue-worker.ts';
import { until } from './until.ts';
import { startWebdavServer } from './webdav-server.ts';

const { pool, db, url } = await testDatabase(t, { poolMax: 20 });

const exists = (p: string) => fs.lstat(p).then(() => true, () => false);

/** Start an in-process worker pool running only the incomplete-cleanup task. */
const startCleanupWorker = (t: { teardown(fn: () => unknown): void }, options: IncompleteCleanupOptions = {}) => startQueueWorker(t, pool, 'incomplete-cleanup', incompleteCleanupTask({ heartbeatMs: 500, ...options }));

const settled = (runId: string, statuses = ['done', 'retrying', 'blocked', 'abandoned']) =>
  until(
    async () => {
      const tk = await cleanupTask(pool, runId);
      return tk && statuses.includes(tk.status) ? tk : undefined;
    },
    `cleanup task ${runId} to settle`,
    60_000,
  );

/** Give runs their tasks with their stored snapshots (what reconcile does for them). */
async function enqueue(runs: Array<{ id: string; target_snapshot: unknown }>): Promise<void> {
  await pool.query("select * from bastion_private.incomplete_cleanup_create($1::uuid[], $2::jsonb[], 'run')", [runs.map((r) => r.id), runs.map((r) => JSON.stringify(r.target_snapshot))]);
}

t.test('local_dir on the hub: partial runs deleted, complete and foreign data kept, refusals blocked', async (t) => {
  const root = await fs.realpath(t.testdir({ outside: { 'precious.txt': 'keep', 'manifest.json': '{}' } }));
  const base = path.join(root, 'base');
  await fs.mkdir(base);
  const job = await cleanupJob(db, { baseDir: base });
  const names = ['manifest', 'parts', 'partial', 'raw', 'complete', 'gone', 'foreign', 'link', 'untouched'] as const;
  const runs = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await oldRun(db, job)] as const))) as Record<(typeof names)[number], Awaited<ReturnType<typeof oldRun>>>;
  await writePartialRunDir(base, job.id, runs.manifest.id, { stage: 'manifest' });
  await writePartialRunDir(base, job.id, runs.parts.id, { stage: 'parts' });
  await writePartialRunDir(base, job.id, runs.partial.id, { stage: 'partial' });
  await writePartialRunDir(base, job.id, runs.raw.id, { format: 'raw_tree_v1' });
  // A failed run that had uploaded everything (reference §11.11).
  await writeRunDir(base, job.id, runs.complete.id);
  await fs.mkdir(path.join(base, job.id, runs.foreign.id));
  await fs.writeFile(path.join(base, job.id, runs.foreign.id, 'thesis.pdf'), 'years of work');
  await fs.symlink(path.join(root, 'outside'), path.join(base, job.id, runs.link.id));
  await writePartialRunDir(base, job.id, runs.untouched.id);
  await enqueue(names.filter((n) => n !== 'untouched').map((n) => runs[n]));
  await startCleanupWorker(t);

  for (const n of ['manifest', 'parts', 'partial', 'raw'] as const) {
    const tk = await settled(runs[n].id);
    t.same([tk.status, tk.outcome], ['done', 'deleted'], `${n}: deleted`);
    t.notOk(await exists(path.join(base, job.id, runs[n].id)), `${n}: directory gone`);
    const ev = await cleanupEvents(pool, runs[n].id);
    t.same(ev.map((e) => e.kind), ['queued', 'attempt', 'deleted']);
    t.equal(ev[2]!.fields!['path'], path.join(base, job.id, runs[n].id));
    t.equal(typeof ev[2]!.fields!['duration_ms'], 'number');
  }
  const complete = await settled(runs.complete.id);
  t.same([complete.status, complete.outcome], ['done', 'skip_complete']);
  t.ok(await exists(path.join(base, job.id, runs.complete.id, 'complete.json')), 'complete data: nothing deleted');
  t.ok(await exists(path.join(base, job.id, runs.complete.id, 'manifest.json')));
  const cev = (await cleanupEvents(pool, runs.complete.id)).at(-1)!;
  t.same([cev.kind, cev.fields!['orphaned'], cev.fields!['reason']], ['skip_complete', true, 'complete']);
  t.match(cev.message, /orphaned/, 'the event notes the orphaned data');

  const gone = await settled(runs.gone.id);
  t.same([gone.status, gone.outcome], ['done', 'skip_not_found']);
  t.equal((await cleanupEvents(pool, runs.gone.id)).at(-1)!.message, 'local run dir missing; nothing to clean up');
  const foreign = await settled(runs.foreign.id);
  t.same([foreign.status, foreign.outcome], ['done', 'skip_not_found'], 'not Bastion data: skipped, never deleted');
  const fev = (await cleanupEvents(pool, runs.foreign.id)).at(-1)!;
  t.equal(fev.fields!['reason'], 'not_bastion_data');
  t.match(fev.message, /does not look like Bastion data/, 'the event says why');
  t.equal(await fs.readFile(path.join(base, job.id, runs.foreign.id, 'thesis.pdf'), 'utf8'), 'years of work');

  const link = await settled(runs.link.id);
  t.same([link.status, link.last_error_kind], ['blocked', 'config']);
  t.equal((await cleanupEvents(pool, runs.link.id)).at(-1)!.fields!['reason'], 'run_dir_is_symlink');
  t.ok((await fs.lstat(path.join(base, job.id, runs.link.id))).isSymbolicLink(), 'the link is left alone');
  t.equal(await fs.readFile(path.join(root, 'outside', 'precious.txt'), 'utf8'), 'keep', 'its target too');
  t.ok(await exists(path.join(base, job.id, runs.untouched.id, 'manifest.json')), 'a run without a task is untouched');
});

t.test('a missing base_dir is an io failure (an unmounted disk), not "nothing there"', async (t) => {
  const root = await fs.realpath(t.testdir({}));
  const job = await cleanupJob(db, { baseDir: path.join(root, 'unmounted') });
  const r = await oldRun(db, job);
  await enqueue([r]);
  await startCleanupWorker(t);
  const tk = await settled(r.id);
  t.same([tk.status, tk.last_error_kind], ['retrying', 'io']);
  t.equal((await cleanupEvents(pool, r.id)).at(-1)!.fields!['reason'], 'base_dir_missing');
  const wait = (tk.next_attempt_at.getTime() - Date.now()) / 1000;
  t.ok(wait > 200 && wait <= backoffSeconds('io', 1, r.id), `io backoff (${wait.toFixed(0)} s)`);
});

t.test('agent-owned local_dir runs wait in retrying with kind offline while the agent is away; an unknown node blocks', async (t) => {
  // An enrolled agent that is not connected (dispatch to a connected one is the agents suite's).
  const agent = (await makeAgent(pool)).id;
  const job = await cleanupJob(db, { nodeId: agent });
  const r = await oldRun(db, job);
  await enqueue([r]);
  t.match((await cleanupJobs(pool, r.id))[0]!.queue_name, new RegExp(`^incomplete-cleanup:${agent}:\\d$`), "queued in the agent's lanes");
  await startCleanupWorker(t);
  const tk = await settled(r.id);
  t.same([tk.status, tk.last_error_kind], ['retrying', 'offline']);
  t.match(tk.last_error, agent);
  const wait = (tk.next_attempt_at.getTime() - Date.now()) / 1000;
  t.ok(wait > 20 && wait <= backoffSeconds('offline', 1, r.id) + 1, `offline backoff (${wait.toFixed(0)} s)`);
  const ev = (await cleanupEvents(pool, r.id)).at(-1)!;
  t.same([ev.kind, ev.fields!['agent_id'], ev.fields!['error_kind']], ['failed', agent, 'offline']);
  // A node that is no enrolled agent can never execute it: blocked with config (0007's dispatch rule).
  const stranger = randomUUID();
  const lost = await oldRun(db, await cleanupJob(db, { nodeId: stranger }));
  await enqueue([lost]);
  const tl = await settled(lost.id);
  t.same([tl.status, tl.last_error_kind], ['blocked', 'config']);
  t.equal((await cleanupEvents(pool, lost.id)).at(-1)!.fields!['reason'], 'node_not_found');
});

t.test('WebDAV: cleanups through the real server and the fault proxy, with the right outcomes, kinds and events', async (t) => {
  const dav = await startWebdavServer(t, { password: 's3cr3t-pässwörd' });
  const proxy = await startFaultProxy(t, dav.url);
  const credentials = { username: dav.username, password: dav.password };
  const job = await cleanupJob(db, { webdav: { base_url: proxy.url, secret_name: 'dav' } });
  const names = ['partial', 'complete', 'notThere', 'unauthorized', 'unavailable', 'badRequest', 'refusedRecursive', 'wrongSecret'] as const;
  const runs = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await oldRun(db, job)] as const))) as Record<(typeof names)[number], Awaited<ReturnType<typeof oldRun>>>;
  for (const n of ['partial', 'unauthorized', 'unavailable', 'badRequest', 'refusedRecursive'] as const) await writePartialRunDir(dav.dir, job.id, runs[n].id);
  await writeRunDir(dav.dir, job.id, runs.complete.id);
  const runPath = (id: string) => `/${job.id}/${id}/`;
  proxy.inject({ method: 'HEAD', path: `${runPath(runs.unauthorized.id)}complete.json`, action: { kind: 'status', status: 401, headers: { 'www-authenticate': 'Basic realm="dav"' } } });
  proxy.inject({ method: 'DELETE', path: runPath(runs.unavailable.id), action: { kind: 'status', status: 503 } });
  proxy.inject({ method: 'DELETE', path: runPath(runs.badRequest.id), action: { kind: 'status', status: 400 } });
  proxy.inject({ method: 'DELETE', path: runPath(runs.refusedRecursive.id), times: 1, action: { kind: 'status', status: 405 } });
  const keys = new SecretKeyProvider({ dataDir: t.testdir({}), envKey: randomBytes(32).toString('base64') });
  await putWebdavSecret(pool, keys, 'hub', 'dav', credentials);
  const resolved: string[] = [];
  await pool.query("update bastion.runs set target_snapshot = jsonb_set(target_snapshot, '{target,secret_name}', '\"missing\"') where id = $1", [runs.wrongSecret.id]);
  const wrong = (await pool.query('select id, target_snapshot from bastion.runs where id = $1', [runs.wrongSecret.id])).rows[0];
  await enqueue([...names.filter((n) => n !== 'wrongSecret').map((n) => runs[n]), wrong]);
  await startCleanupWorker(t, {
    resolveWebdavCredentials: (nodeId, name) => {
      resolved.push(`${nodeId}/${name}`);
      return resolveWebdavCredentials(pool, keys, nodeId, name);
    },
    webdavClient: { timeoutMs: 2000, retry: { attempts: 1 } },
  });

  const done = await settled(runs.partial.id);
  t.same([done.status, done.outcome], ['done', 'deleted']);
  t.notOk(await exists(path.join(dav.dir, job.id, runs.partial.id)), 'gone from the server');
  t.ok(proxy.requests.some((r) => r.method === 'DELETE' && r.rawPath.endsWith(`${runs.partial.id}/`)), 'DELETE on the collection with a trailing slash');
  const dev = (await cleanupEvents(pool, runs.partial.id)).at(-1)!;
  t.same([dev.kind, dev.fields!['url']], ['deleted', `${proxy.url}${job.id}/${runs.partial.id}/`], 'the redacted URL in the event');

  const complete = await settled(runs.complete.id);
  t.same([complete.status, complete.outcome], ['done', 'skip_complete']);
  t.ok(await exists(path.join(dav.dir, job.id, runs.complete.id, 'complete.json')), 'nothing deleted');
  t.ok(proxy.requests.some((r) => r.method === 'HEAD' && r.path === `${runPath(runs.complete.id)}complete.json`), 'asked with HEAD complete.json');
  t.notOk(proxy.requests.some((r) => r.method === 'DELETE' && r.path.includes(runs.complete.id)), 'no DELETE was sent for it');
  t.match((await cleanupEvents(pool, runs.complete.id)).at(-1)!.message, /orphaned/);

  const missing = await settled(runs.notThere.id);
  t.same([missing.status, missing.outcome], ['done', 'skip_not_found'], '404 → skip_not_found');
  t.equal((await cleanupEvents(pool, runs.notThere.id)).at(-1)!.message, 'remote run dir missing; nothing to clean up');

  const auth = await settled(runs.unauthorized.id);
  t.same([auth.status, auth.last_error_kind], ['blocked', 'auth'], '401 → blocked auth');
  const aev = (await cleanupEvents(pool, runs.unauthorized.id)).at(-1)!;
  t.same([aev.kind, aev.fields!['http_status'], aev.fields!['error_kind']], ['blocked', 401, 'auth']);
  t.ok(await exists(path.join(dav.dir, job.id, runs.unauthorized.id, 'manifest.json')), 'untouched');

  const busy = await settled(runs.unavailable.id);
  t.same([busy.status, busy.last_error_kind], ['retrying', 'network'], '503 → retrying network');
  const w503 = (busy.next_attempt_at.getTime() - Date.now()) / 1000;
  t.ok(w503 > 50 && w503 <= backoffSeconds('network', 1, runs.unavailable.id), `network backoff (${w503.toFixed(0)} s)`);
  const uev = (await cleanupEvents(pool, runs.unavailable.id)).at(-1)!;
  t.same([uev.kind, uev.fields!['http_status']], ['failed', 503]);
  t.equal(typeof uev.fields!['duration_ms'], 'number');
  t.match(uev.fields!['url'], new RegExp(`${runs.unavailable.id}/$`));

  const bad = await settled(runs.badRequest.id);
  t.same([bad.status, bad.last_error_kind], ['blocked', 'config'], 'another 4xx is a config problem for this queue (no http kind)');
  t.same((await cleanupEvents(pool, runs.badRequest.id)).at(-1)!.fields!['http_status'], 400);

  const walked = await settled(runs.refusedRecursive.id);
  t.same([walked.status, walked.outcome], ['done', 'deleted'], '405 on the collection → PROPFIND walk');
  t.notOk(await exists(path.join(dav.dir, job.id, runs.refusedRecursive.id)));
  t.ok(proxy.requests.some((r) => r.method === 'PROPFIND' && r.path.includes(runs.refusedRecursive.id)));

  const secret = await settled(runs.wrongSecret.id);
  t.same([secret.status, secret.last_error_kind], ['blocked', 'config'], 'a missing secret blocks with config');
  t.equal((await cleanupEvents(pool, runs.wrongSecret.id)).at(-1)!.fields!['error_code'], 'secret_not_found');
  t.ok(resolved.includes('hub/dav'), "credentials come from the run node's scope");
  const dump = JSON.stringify((await pool.query('select t.*, e.* from bastion.incomplete_cleanup_tasks t left join bastion.incomplete_cleanup_events e using (run_id) where t.job_id = $1', [job.id])).rows);
  for (const s of [dav.password, encodeURIComponent(dav.password), Buffer.from(`${dav.username}:${dav.password}`).toString('base64')]) t.notOk(dump.includes(s), 'no stored credential');
});

t.test('reconcile as the crontab task feeds the workers: an old failed run without a location is cleaned where its job writes', async (t) => {
  await pool.query('select bastion.set_incomplete_cleanup_days(7)');
  const root = await fs.realpath(t.testdir({}));
  const job = await cleanupJob(db, { baseDir: root });
  const r = await oldRun(db, job, { targetSnapshot: null, ageDays: 9 });
  const young = await oldRun(db, job, { ageDays: 2 });
  await writePartialRunDir(root, job.id, r.id);
  await writePartialRunDir(root, job.id, young.id);
  await startCleanupWorker(t);
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
    logger: { debug: () => {}, info: (m: string) => logs.push(m), warn: (m: string) => logs.push(m), error: (m: string) => logs.push(m) },
    abortSignal: new AbortController().signal,
  };
  await incompleteCleanupReconcile({}, helpers as never);
  t.ok(logs.some((l) => l.includes('task(s) created')), 'the tick reports what it did');
  const tk = await settled(r.id);
  t.same([tk.status, tk.outcome, tk.target_snapshot_source], ['done', 'deleted', 'job_spec']);
  t.notOk(await exists(path.join(root, job.id, r.id)), 'cleaned');
  t.ok(await exists(path.join(root, job.id, young.id, 'manifest.json')), 'a run younger than the cutoff is left alone');
  t.equal(await cleanupTask(pool, young.id), undefined);
  await incompleteCleanupReconcile({}, helpers as never);
  t.same((await cleanupEvents(pool, r.id)).map((e) => e.kind), ['queued', 'attempt', 'deleted'], 'a second tick changes nothing');
});

const spawnWorker = (t: { teardown(fn: () => unknown): void }, env: Record<string, string>) => spawnQueueWorker(t, url, 'incomplete-cleanup', env);

t.test('a worker process killed with SIGKILL mid-cleanup: the watchdog recovers the task, another worker finishes it', async (t) => {
  const root = await fs.realpath(t.testdir({}));
  const job = await cleanupJob(db, { baseDir: root });
  const r = await oldRun(db, job);
  await writePartialRunDir(root, job.id, r.id);
  const first = spawnWorker(t, { BLOCK_BEFORE_REMOVE: '1', HEARTBEAT_MS: '200' });
  await first.waitFor('ready');
  await enqueue([r]);
  await first.waitFor('blocked');
  const running = await cleanupTask(pool, r.id);
  t.equal(running!.status, 'running', 'the attempt is in the middle of the cleanup');
  first.child.kill('SIGKILL');
  await new Promise((res) => first.child.once('exit', res));
  t.ok(await exists(path.join(root, job.id, r.id, 'manifest.json')), 'nothing deleted yet');
  // The watchdog tick (every minute in production, 40 s staleness); here with a 1 s threshold once the heartbeat is that old.
  const recovered = await until(
    async () => {
      const { rows } = await pool.query("select * from bastion_private.task_watchdog('1 second', '0 seconds')");
      return rows.find((x) => x.run_id === r.id);
    },
    'the watchdog to recover the task',
    60_000,
  );
  t.same([recovered.queue, recovered.status], ['incomplete_cleanup', 'retrying'], 'the queue watchdog covers this queue');
  const ev = (await cleanupEvents(pool, r.id)).at(-1)!;
  t.same([ev.kind, ev.message, ev.fields!['worker']], ['failed', 'stuck running; recovered', running!.claimed_by]);
  const second = spawnWorker(t, { HEARTBEAT_MS: '200' });
  await second.waitFor('ready');
  const tk = await settled(r.id, ['done']);
  t.same([tk.status, tk.outcome, tk.attempts], ['done', 'deleted', 2]);
  t.notOk(await exists(path.join(root, job.id, r.id)), 'cleaned by the second worker');
  t.same((await cleanupEvents(pool, r.id)).map((e) => e.kind), ['queued', 'attempt', 'failed', 'attempt', 'deleted']);
  second.child.stdin!.end();
  await new Promise((res) => second.child.once('exit', res));
});
