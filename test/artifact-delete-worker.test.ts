/**
 * The delete queue end to end: real graphile-worker workers execute delete
 * tasks against real run directories (written by the artifact format's
 * writer) on the hub's file system and on a real WebDAV server behind a fault
 * proxy; a worker process killed with SIGKILL mid-delete is recovered by the
 * watchdog and its task ends done.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import t from 'tap';
import { backoffSeconds } from '../core/backoff.ts';
import { SecretKeyProvider } from '../engine/secrets/secret-key.ts';
import { putWebdavSecret, resolveWebdavCredentials } from '../engine/secrets/secret-store.ts';
import { artifactDeleteTask, type ArtifactDeleteOptions } from '../worker/tasks/artifact-delete.ts';
import { testDatabase } from './db.ts';
import { events, graphileJobs, jobWithSnapshots, snapshotRow, task } from './delete-queue-kit.ts';
import { makeAgent, writeRunDir } from './factories.ts';
import { startFaultProxy } from './fault-proxy.ts';
import { spawnQueueWorker, startQueueWorker } from './queue-worker.ts';
import { until } from './until.ts';
import { startWebdavServer } from './webdav-server.ts';

const { pool, db, url } = await testDatabase(t, { poolMax: 20 });

const exists = (p: string) => fs.lstat(p).then(() => true, () => false);

/** Start an in-process worker pool running only the artifact-delete task. */
const startDeleteWorker = (t: { teardown(fn: () => unknown): void }, options: ArtifactDeleteOptions = {}) => startQueueWorker(t, pool, 'artifact-delete', artifactDeleteTask({ heartbeatMs: 500, ...options }));

const settled = (runId: string, statuses = ['done', 'retrying', 'blocked', 'abandoned']) =>
  until(
    async () => {
      const tk = await task(pool, runId);
      return tk && statuses.includes(tk.status) ? tk : undefined;
    },
    `task ${runId} to settle`,
    60_000,
  );

t.test('local_dir on the hub: real run directories deleted by a worker, safety refusals blocked as config', async (t) => {
  const root = await fs.realpath(t.testdir({ outside: { 'precious.txt': 'keep', 'complete.json': '{}' } }));
  const base = path.join(root, 'base');
  await fs.mkdir(base);
  const { job, snapshots } = await jobWithSnapshots(db, 6, { baseDir: base });
  const [a, b, gone, link, noMarkers, other] = snapshots.map((s) => s.run_id) as [string, string, string, string, string, string];
  await writeRunDir(base, job.id, a);
  await writeRunDir(base, job.id, b, { format: 'raw_tree_v1' });
  await writeRunDir(base, job.id, other);
  await fs.symlink(path.join(root, 'outside'), path.join(base, job.id, link));
  await fs.mkdir(path.join(base, job.id, noMarkers));
  await fs.writeFile(path.join(base, job.id, noMarkers, 'thesis.pdf'), 'years of work');
  await pool.query('select * from bastion.request_snapshot_deletes($1, $2::uuid[])', [job.id, [a, b, gone, link, noMarkers]]);
  await startDeleteWorker(t);
  for (const id of [a, b]) {
    const tk = await settled(id);
    t.same([tk.status, tk.outcome], ['done', 'deleted']);
    t.notOk(await exists(path.join(base, job.id, id)), 'directory gone');
    t.equal((await snapshotRow(pool, id))!.status, 'deleted');
    t.same((await events(pool, id)).map((e) => e.kind), ['queued', 'attempt', 'deleted']);
  }
  const g = await settled(gone);
  t.same([g.status, g.outcome], ['done', 'not_found']);
  t.equal((await snapshotRow(pool, gone))!.status, 'missing');
  t.equal((await events(pool, gone)).at(-1)!.message, 'local snapshot dir missing; nothing to delete');
  for (const [id, reason] of [[link, 'run_dir_is_symlink'], [noMarkers, 'not_bastion_data']] as const) {
    const tk = await settled(id);
    t.same([tk.status, tk.last_error_kind], ['blocked', 'config'], reason);
    const ev = (await events(pool, id)).at(-1)!;
    t.same([ev.kind, ev.fields!['reason']], ['blocked', reason]);
    t.ok(ev.fields!['hint']);
    t.equal((await snapshotRow(pool, id))!.status, 'error');
    const wait = (tk.next_attempt_at.getTime() - Date.now()) / 1000;
    t.ok(wait > backoffSeconds('config', 1, id) - 60, 'blocked waits the config backoff (6 h)');
  }
  t.equal(await fs.readFile(path.join(root, 'outside', 'precious.txt'), 'utf8'), 'keep');
  t.equal(await fs.readFile(path.join(base, job.id, noMarkers, 'thesis.pdf'), 'utf8'), 'years of work');
  t.ok(await exists(path.join(base, job.id, other, 'complete.json')), 'the snapshot not asked for is untouched');
});

t.test('base_dir replaced by a symlink between request and execution: blocked (config), nothing outside touched', async (t) => {
  const root = await fs.realpath(t.testdir({}));
  const base = path.join(root, 'base');
  await fs.mkdir(base);
  const { job, snapshots } = await jobWithSnapshots(db, 1, { baseDir: base });
  const id = snapshots[0]!.run_id;
  await writeRunDir(base, job.id, id);
  await pool.query('select * from bastion.request_snapshot_delete($1, $2)', [job.id, id]);
  // Between the request and the attempt, the disk is swapped for a link to other data with the same layout.
  await fs.rename(base, path.join(root, 'elsewhere'));
  await fs.symlink(path.join(root, 'elsewhere'), base);
  await startDeleteWorker(t);
  const tk = await settled(id);
  t.same([tk.status, tk.last_error_kind], ['blocked', 'config']);
  t.equal((await events(pool, id)).at(-1)!.fields!['reason'], 'base_dir_is_symlink');
  t.ok(await exists(path.join(root, 'elsewhere', job.id, id, 'complete.json')), 'the data behind the link is untouched');
});

t.test('agent-owned local_dir snapshots wait in retrying with kind offline, naming the agent', async (t) => {
  // An enrolled agent that is not connected (a node id that is no agent at all is refused as config: test/agents-dispatch.test.ts).
  const agent = (await makeAgent(pool)).id;
  const { job, snapshots } = await jobWithSnapshots(db, 1, { nodeId: agent });
  const id = snapshots[0]!.run_id;
  await pool.query('select * from bastion.request_snapshot_delete($1, $2)', [job.id, id]);
  t.match((await graphileJobs(pool, id))[0]!.queue_name, new RegExp(`^artifact-delete:${agent}:\\d$`), 'queued in the agent\'s lanes');
  await startDeleteWorker(t);
  const tk = await settled(id);
  t.same([tk.status, tk.last_error_kind], ['retrying', 'offline']);
  t.match(tk.last_error, agent);
  const wait = (tk.next_attempt_at.getTime() - Date.now()) / 1000;
  t.ok(wait > 20 && wait <= backoffSeconds('offline', 1, id) + 1, `offline backoff (${wait.toFixed(0)} s)`);
  const ev = (await events(pool, id)).at(-1)!;
  t.same([ev.kind, ev.fields!['agent_id'], ev.fields!['error_kind']], ['failed', agent, 'offline']);
  t.equal((await snapshotRow(pool, id))!.status, 'deleting', 'shown as deleting, waiting for the agent');
});

t.test('WebDAV: deletes through the real server and the fault proxy, with the right kinds, waits and events', async (t) => {
  const dav = await startWebdavServer(t, { password: 's3cr3t-pässwörd' });
  const proxy = await startFaultProxy(t, dav.url);
  const credentials = { username: dav.username, password: dav.password };
  const { job, snapshots } = await jobWithSnapshots(db, 10, { webdav: { base_url: proxy.url, secret_name: 'dav' } });
  const ids = snapshots.map((s) => s.run_id);
  const [ok, notThere, unauthorized, forbidden, refusedRecursive, tooMany, unavailable, longError, wrongSecret, refused403] = ids as [string, string, string, string, string, string, string, string, string, string];
  for (const id of [ok, unauthorized, forbidden, refusedRecursive, tooMany, unavailable, longError, refused403]) await writeRunDir(dav.dir, job.id, id);
  const runPath = (id: string) => `/${job.id}/${id}/`;
  proxy.inject({ method: 'DELETE', path: runPath(unauthorized), action: { kind: 'status', status: 401, headers: { 'www-authenticate': 'Basic realm="dav"' } } });
  // No rights at all: every DELETE below the run is refused (the walk fallback is refused too).
  proxy.inject({ method: 'DELETE', path: new RegExp(`^/${job.id}/${forbidden}/`), action: { kind: 'status', status: 403 } });
  // A server that refuses recursive DELETE of a collection once (405, or 403 as some do): enumerate and delete deepest first.
  proxy.inject({ method: 'DELETE', path: runPath(refusedRecursive), times: 1, action: { kind: 'status', status: 405 } });
  proxy.inject({ method: 'DELETE', path: runPath(refused403), times: 1, action: { kind: 'status', status: 403 } });
  proxy.inject({ method: 'DELETE', path: runPath(tooMany), action: { kind: 'status', status: 429, headers: { 'retry-after': '7200' } } });
  proxy.inject({ method: 'DELETE', path: runPath(unavailable), action: { kind: 'status', status: 503 } });
  const body = `server exploded at http://admin:hunter2@internal.example/x?sig=abc ${'ошибка'.repeat(200)}`;
  proxy.inject({ method: 'DELETE', path: runPath(longError), action: { kind: 'status', status: 500, body } });
  // The real secret store: the login sealed in bastion_private.secrets under the hub's scope.
  const keys = new SecretKeyProvider({ dataDir: t.testdir({}), envKey: randomBytes(32).toString('base64') });
  await putWebdavSecret(pool, keys, 'hub', 'dav', credentials);
  const resolved: string[] = [];
  await startDeleteWorker(t, {
    resolveWebdavCredentials: (nodeId, name) => {
      resolved.push(`${nodeId}/${name}`);
      return resolveWebdavCredentials(pool, keys, nodeId, name);
    },
    webdavClient: { timeoutMs: 2000, retry: { attempts: 1 } },
  });
  await pool.query("update bastion.run_artifacts set target_snapshot = jsonb_set(target_snapshot, '{target,secret_name}', '\"missing\"') where run_id = $1", [wrongSecret]);
  await pool.query('select * from bastion.request_snapshot_deletes($1, $2::uuid[])', [job.id, ids]);

  const done = await settled(ok);
  t.same([done.status, done.outcome], ['done', 'deleted']);
  t.notOk(await exists(path.join(dav.dir, job.id, ok)), 'gone from the server');
  t.ok(proxy.requests.some((r) => r.method === 'DELETE' && r.rawPath.endsWith(`${ok}/`)), 'DELETE on the collection with a trailing slash');
  t.same([(await settled(notThere)).outcome, (await snapshotRow(pool, notThere))!.status], ['not_found', 'missing']);
  t.equal((await events(pool, notThere)).at(-1)!.message, 'remote snapshot dir missing; nothing to delete');
  for (const [id, status] of [[unauthorized, 401], [forbidden, 403]] as const) {
    const tk = await settled(id);
    t.same([tk.status, tk.last_error_kind], ['blocked', 'auth'], `${status} → blocked auth`);
    t.equal((await events(pool, id)).at(-1)!.fields!['http_status'], status);
    t.ok(await exists(path.join(dav.dir, job.id, id, 'complete.json')));
  }
  for (const [id, status] of [[refusedRecursive, 405], [refused403, 403]] as const) {
    const walked = await settled(id);
    t.same([walked.status, walked.outcome], ['done', 'deleted'], `${status} on the collection → PROPFIND walk`);
    t.equal((await events(pool, id)).at(-1)!.fields!['strategy'], 'walk');
    t.notOk(await exists(path.join(dav.dir, job.id, id)));
  }
  const limited = await settled(tooMany);
  t.same([limited.status, limited.last_error_kind], ['retrying', 'network'], '429 → network');
  const wait = (limited.next_attempt_at.getTime() - Date.now()) / 1000;
  t.ok(wait > 7000 && wait <= 7200, `Retry-After 7200 honoured (${wait.toFixed(0)} s)`);
  t.equal((await events(pool, tooMany)).at(-1)!.fields!['retry_after_secs'], 7200);
  const busy = await settled(unavailable);
  t.same([busy.status, busy.last_error_kind], ['retrying', 'network'], '503 → network');
  const w503 = (busy.next_attempt_at.getTime() - Date.now()) / 1000;
  t.ok(w503 > 50 && w503 <= backoffSeconds('network', 1, unavailable), `network backoff (${w503.toFixed(0)} s)`);
  const long = await settled(longError);
  t.ok(Buffer.byteLength(long.last_error) <= 500, 'at most 500 bytes');
  t.notOk(long.last_error.includes('\uFFFD'), 'cut on a character boundary');
  t.notOk(long.last_error.includes('hunter2'));
  const secret = await settled(wrongSecret);
  t.same([secret.status, secret.last_error_kind], ['blocked', 'config'], 'a missing secret blocks with config');
  t.equal((await events(pool, wrongSecret)).at(-1)!.fields!['error_code'], 'secret_not_found');
  t.ok(resolved.includes(`hub/dav`), 'credentials come from the snapshot node\'s scope');
  // No credential anywhere in what the database stores.
  const dump = JSON.stringify((await pool.query('select t.*, e.* from bastion.artifact_delete_tasks t left join bastion.artifact_delete_events e using (run_id) where t.job_id = $1', [job.id])).rows)
    + JSON.stringify((await pool.query('select * from bastion.run_artifacts where job_id = $1', [job.id])).rows);
  for (const s of [dav.password, encodeURIComponent(dav.password), Buffer.from(`${dav.username}:${dav.password}`).toString('base64'), 'hunter2']) t.notOk(dump.includes(s), `no ${s === 'hunter2' ? 'echoed' : 'stored'} credential`);
});

t.test('WebDAV: connection refused and a hung server are network failures', async (t) => {
  const dead = http.createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const port = (dead.address() as { port: number }).port;
  await new Promise<void>((r) => dead.close(() => r()));
  const dav = await startWebdavServer(t);
  const proxy = await startFaultProxy(t, dav.url);
  const refusedJob = await jobWithSnapshots(db, 1, { webdav: { base_url: `http://127.0.0.1:${port}/dav/`, secret_name: 'dav' } });
  const hungJob = await jobWithSnapshots(db, 1, { webdav: { base_url: proxy.url, secret_name: 'dav' } });
  proxy.inject({ method: 'DELETE', action: { kind: 'hang' } });
  await startDeleteWorker(t, { resolveWebdavCredentials: async () => ({ username: dav.username, password: dav.password }), webdavClient: { timeoutMs: 300, retry: { attempts: 1 } } });
  for (const { job, snapshots } of [refusedJob, hungJob]) await pool.query('select * from bastion.request_snapshot_delete($1, $2)', [job.id, snapshots[0]!.run_id]);
  for (const [{ snapshots }, reason] of [[refusedJob, 'connection'], [hungJob, 'timeout']] as const) {
    const tk = await settled(snapshots[0]!.run_id);
    t.same([tk.status, tk.last_error_kind], ['retrying', 'network'], reason);
    t.equal((await events(pool, snapshots[0]!.run_id)).at(-1)!.fields!['reason'], reason);
  }
});

const spawnWorker = (t: { teardown(fn: () => unknown): void }, env: Record<string, string>) => spawnQueueWorker(t, url, 'artifact-delete', env);

t.test('a worker process killed with SIGKILL mid-delete: the watchdog recovers the task, another worker finishes it', async (t) => {
  const root = await fs.realpath(t.testdir({}));
  const { job, snapshots } = await jobWithSnapshots(db, 1, { baseDir: root });
  const id = snapshots[0]!.run_id;
  await writeRunDir(root, job.id, id);
  const first = spawnWorker(t, { BLOCK_BEFORE_REMOVE: '1', HEARTBEAT_MS: '200' });
  await first.waitFor('ready');
  await pool.query('select * from bastion.request_snapshot_delete($1, $2)', [job.id, id]);
  await first.waitFor('blocked');
  const running = await task(pool, id);
  t.equal(running!.status, 'running', 'the attempt is in the middle of the delete');
  const lane = (await pool.query<{ queue_name: string }>("select queue_name from graphile_worker.jobs where task_identifier = 'artifact-delete' and locked_by = $1", [running!.claimed_by])).rows[0]?.queue_name;
  first.child.kill('SIGKILL');
  await new Promise((r) => first.child.once('exit', r));
  t.ok(await exists(path.join(root, job.id, id, 'complete.json')), 'nothing deleted yet');
  // The watchdog tick (every minute in production, 40 s staleness); here with a 1 s threshold once the heartbeat is that old.
  const recovered = await until(
    async () => {
      const { rows } = await pool.query("select * from bastion_private.task_watchdog('1 second', '0 seconds')");
      return rows.find((r) => r.run_id === id);
    },
    'the watchdog to recover the task',
    60_000,
  );
  t.equal(recovered.status, 'retrying');
  const ev = (await events(pool, id)).at(-1)!;
  t.same([ev.kind, ev.message, ev.fields!['worker']], ['failed', 'stuck running; recovered', running!.claimed_by]);
  if (lane) {
    const q = await pool.query('select locked_at from graphile_worker._private_job_queues where queue_name = $1', [lane]);
    t.equal(q.rows[0].locked_at, null, 'the dead worker\'s node lane was released');
  }
  const second = spawnWorker(t, { HEARTBEAT_MS: '200' });
  await second.waitFor('ready');
  const tk = await settled(id, ['done']);
  t.same([tk.status, tk.outcome, tk.attempts], ['done', 'deleted', 2]);
  t.notOk(await exists(path.join(root, job.id, id)), 'deleted by the second worker');
  t.same((await events(pool, id)).map((e) => e.kind), ['queued', 'attempt', 'failed', 'attempt', 'deleted']);
  second.child.stdin!.end();
  await new Promise((r) => second.child.once('exit', r));

});
