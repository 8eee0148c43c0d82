/**
 * GraphQL subscriptions over graphql-ws on /graphql: authentication (cookie
 * or bearer; header checks at the upgrade, the credential itself right after
 * open, before connection_ack), Origin checked for cookies, CSRF for
 * mutations over the socket, re-authentication per operation, and changes
 * delivered from LISTEN/NOTIFY.
 */
import t from 'tap';
import type { Client } from 'graphql-ws';
import WebSocket from 'ws';
import { startApi } from './api-harness.ts';
import { collect, listening, wsClient } from './graphql-ws-client.ts';
import { makeJob, makeRun, makeSnapshot } from './factories.ts';

t.test('a run change is delivered (bench figure printed, not asserted)', async (t) => {
  const api = await startApi(t);
  const viewer = await api.as('viewer');
  const job = await makeJob(api.db);
  const run = await makeRun(api.db, job, { status: 'running' });
  const sub = collect(wsClient(t, api, viewer), `subscription($id: UUID!) { runChanged(runId: $id) { table op runId status seq kind run { status progress } event { seq kind message } } }`, { id: run.id });
  await listening(api, sub, `bastion:run:${run.id}`, { run_id: run.id });
  const started = performance.now();
  await api.pool.query(`update bastion.runs set progress = '{"files_done": 3}' where id = $1`, [run.id]);
  const first = await sub.next();
  const ms = performance.now() - started;
  t.comment(`subscription delivered a run change in ${ms.toFixed(1)} ms`);
  t.match(first, { data: { runChanged: { table: 'runs', op: 'update', runId: run.id, status: 'running', run: { status: 'running', progress: { files_done: 3 } }, event: null } } });
  await api.pool.query(`select bastion_private.append_run_event($1, 'info', 'progress', 'copied 3 files')`, [run.id]);
  // append_run_event bumps runs.event_seq first (a runs update), then inserts the event.
  const events: any[] = [await sub.next(), await sub.next()];
  const eventChange = events.find((e) => e.data.runChanged.table === 'run_events');
  t.match(eventChange, { data: { runChanged: { op: 'insert', seq: 1, kind: 'progress', event: { seq: 1, kind: 'progress', message: 'copied 3 files' } } } });
  sub.dispose();
});

t.test('snapshot changes of a job, triggered through the REST API', async (t) => {
  const api = await startApi(t);
  const operator = await api.as('operator');
  const job = await makeJob(api.db);
  const snap = await makeSnapshot(api.db, job);
  const sub = collect(wsClient(t, api, operator), `subscription($id: UUID!) { snapshotChanged(jobId: $id) { op runId status snapshot { pinnedAt pinReason } } }`, { id: job.id });
  await listening(api, sub, `bastion:job:${job.id}:snapshots`, { job_id: job.id, run_id: snap.run_id });
  const pin = await operator.post(`/api/jobs/${job.id}/snapshots/${snap.run_id}/pin`, { reason: 'audit' });
  t.equal(pin.status, 200);
  const got = await sub.next();
  t.match(got, { data: { snapshotChanged: { op: 'update', runId: snap.run_id, status: 'present', snapshot: { pinReason: 'audit', pinnedAt: String } } } });
});

t.test('upgrade: credentials required, Origin checked for cookies, bearer works from anywhere; unknown credentials closed with 4401 after open', async (t) => {
  const api = await startApi(t);
  const viewer = await api.as('viewer');
  const token = await api.as('viewer', { via: 'token' });
  const url = `${api.base.replace('http', 'ws')}/graphql`;
  /** The HTTP status of the upgrade, or 101 and how the socket ended after connection_init. */
  const attempt = (headers: Record<string, string>) =>
    new Promise<{ status: number; close?: number; reason?: string; acked?: boolean }>((resolve) => {
      const ws = new WebSocket(url, 'graphql-transport-ws', { headers });
      let acked = false;
      ws.on('unexpected-response', (req, res) => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0 });
      });
      ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: {} })));
      ws.on('message', (m) => {
        acked = JSON.parse(String(m)).type === 'connection_ack';
        ws.close(1000);
      });
      ws.on('close', (code, reason) => resolve({ status: 101, close: code, reason: reason.toString(), acked }));
      ws.on('error', () => {});
    });
  t.match(await attempt({}), { status: 401 });
  t.match(await attempt({ authorization: 'Bearer bst_nope' }), { status: 401 }, 'malformed token');
  t.match(await attempt({ cookie: 'bastion_session=nope' }), { status: 401 }, 'malformed cookie');
  t.match(await attempt({ cookie: viewer.cookie as string, origin: 'http://evil.example' }), { status: 403 }, 'cross-site page with the user’s cookie');
  t.match(await attempt({ cookie: viewer.cookie as string, origin: api.base }), { status: 101, close: 1000, acked: true });
  t.match(await attempt({ authorization: `Bearer ${token.token}`, origin: 'http://elsewhere.example' }), { status: 101, close: 1000, acked: true }, 'bearer tokens are not ambient credentials');
  const unknown = `bst_${'A'.repeat(43)}`;
  t.match(await attempt({ authorization: `Bearer ${unknown}` }), { status: 101, close: 4401, reason: 'invalid_token', acked: false }, 'a well-formed unknown token: closed before connection_ack');
  await api.pool.query('delete from bastion_private.sessions where user_id = $1', [viewer.userId]);
  t.match(await attempt({ cookie: viewer.cookie as string, origin: api.base }), { status: 101, close: 4401, reason: 'session_expired', acked: false }, 'an ended session');
});

t.test('over the socket: queries, CSRF for mutations with a cookie, revocation on the next operation', async (t) => {
  const api = await startApi(t);
  const admin = await api.as('admin');
  const plain = wsClient(t, api, admin, { origin: api.base });
  const once = (client: Client, query: string) => collect(client, query).next();
  t.match(await once(plain, '{ me { username } }'), { data: { me: { username: admin.username } } });
  const mutation = 'mutation { createApiToken(input: { name: "ws", role: viewer }) { result { role } } }';
  t.match(await once(plain, mutation), { errors: [{ extensions: { code: 'invalid_csrf' } }] }, 'no csrf_token in connection_init');
  const withCsrf = wsClient(t, api, admin, { origin: api.base, connectionParams: { csrf_token: admin.csrf } });
  t.match(await once(withCsrf, mutation), { data: { createApiToken: { result: { role: 'viewer' } } } });

  const token = await api.as('viewer', { via: 'token' });
  const tokenClient = wsClient(t, api, token);
  t.match(await once(tokenClient, '{ me { username } }'), { data: { me: { username: token.username } } });
  await api.pool.query('update bastion_private.api_tokens set revoked_at = now() where user_id = $1', [token.userId]);
  const after = await once(tokenClient, '{ me { username } }');
  t.match(after, { failure: [{ message: /token/i, extensions: { code: 'invalid_token' } }] }, 'refused on the same socket');
});

t.test('cleanup task changes of a run (topic bastion:run:<run_id>:cleanup)', async (t) => {
  const api = await startApi(t);
  const { rows } = await api.pool.query(`select to_regclass('bastion.incomplete_cleanup_tasks') as t`);
  if (!rows[0]?.t) {
    t.todo('waiting for sql/migrations/0006', async () => {});
    return;
  }
  const operator = await api.as('operator');
  const job = await makeJob(api.db);
  const run = await makeRun(api.db, job, { status: 'failed' });
  await api.pool.query(
    `insert into bastion.incomplete_cleanup_tasks (run_id, job_id, node_id, target_type, target_snapshot, status, attempts, next_attempt_at, last_attempt_at, last_error_kind, last_error)
     values ($1, $2, 'hub', 'local_dir', $3, 'retrying', 1, now() + interval '1 hour', now(), 'network', 'connection refused')`,
    [run.id, job.id, JSON.stringify(run.target_snapshot)],
  );
  const sub = collect(wsClient(t, api, operator), `subscription($id: UUID!) { cleanupTaskChanged(runId: $id) { table op status seq task { status attempts } event { kind } } }`, { id: run.id });
  await listening(api, sub, `bastion:run:${run.id}:cleanup`, { run_id: run.id });
  t.equal((await operator.post(`/api/maintenance/incomplete-cleanup/${run.id}/retry-now`)).status, 200);
  const seen: any[] = [];
  while (!seen.some((e) => e.data?.cleanupTaskChanged?.task?.status === 'queued') || !seen.some((e) => e.data?.cleanupTaskChanged?.event)) seen.push(await sub.next());
  t.ok(seen.some((e) => e.data.cleanupTaskChanged.table === 'incomplete_cleanup_tasks' && e.data.cleanupTaskChanged.task.attempts === 0), 'task change delivered');
  t.ok(seen.some((e) => e.data.cleanupTaskChanged.table === 'incomplete_cleanup_events' && e.data.cleanupTaskChanged.event.kind === 'retry_now'), 'event delivered');
});

t.test('hostile WebSocket input: garbage and oversized messages close that socket only', async (t) => {
  const api = await startApi(t);
  const token = await api.as('viewer', { via: 'token' });
  const url = `${api.base.replace('http', 'ws')}/graphql`;
  const closeCode = (send: (ws: WebSocket) => void) =>
    new Promise<number>((resolve) => {
      const ws = new WebSocket(url, 'graphql-transport-ws', { headers: { authorization: `Bearer ${token.token}` } });
      ws.on('open', () => send(ws));
      ws.on('close', (code: number) => resolve(code));
      ws.on('error', () => {});
    });
  t.equal(await closeCode((ws) => (ws as unknown as { send(d: string): void }).send('{not json')), 4400, 'malformed message');
  t.equal(await closeCode((ws) => (ws as unknown as { send(d: string): void }).send(JSON.stringify({ type: 'subscribe', id: '1', payload: { query: '{ me { username } }' } }))), 4401, 'subscribe before connection_init');
  const big = await closeCode((ws) => (ws as unknown as { send(d: string): void }).send('x'.repeat(200_000)));
  t.ok(big === 1009 || big === 1006, `message over the size limit closes the socket (${big})`);
  // A burst right at open, while the credential is still being looked up:
  // at most 8 are held (then 4429), and any that get through are repeated
  // connection_inits, which graphql-ws also answers with 4429.
  const burst = JSON.stringify({ type: 'connection_init', payload: {} });
  t.equal(await closeCode((ws) => { for (let i = 0; i < 50; i++) (ws as unknown as { send(d: string): void }).send(burst); }), 4429, 'a burst of messages before authentication');
  const ok = collect(wsClient(t, api, token), '{ me { username } }');
  t.match(await ok.next(), { data: { me: { username: token.username } } }, 'the server keeps serving');
});
