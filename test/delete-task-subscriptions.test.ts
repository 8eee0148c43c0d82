/**
 * deleteTaskChanged over graphql-ws, fed by the delete queue's NOTIFY
 * triggers (sql/migrations/0004, topic bastion:run:<run_id>:delete): a
 * request made through the REST API reaches a viewer's subscription as the
 * task insert and its queued event; a claim arrives, a heartbeat does not; a
 * bulk request notifies each snapshot's own topic only; a task deleted with
 * its job arrives as a delete. Ordering, not timing, shows what was silent:
 * NOTIFYs are delivered in commit order, so a probe sent after a silent
 * transaction is the next thing the subscriber sees.
 */
import t from 'tap';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { startApi, type Api, type ApiClient } from './api-harness.ts';
import { makeJob, makeSnapshot } from './factories.ts';

/** A graphql-ws client authenticating like `who` (cookie or bearer). */
function wsClient(t: { teardown(fn: () => unknown): void }, api: Api, who: ApiClient): Client {
  const headers: Record<string, string> = {};
  if (who.cookie) headers.cookie = who.cookie;
  if (who.token) headers.authorization = `Bearer ${who.token}`;
  headers.origin = api.base;
  class AuthWebSocket extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols, { headers });
    }
  }
  const client = createClient({ url: `${api.base.replace('http', 'ws')}/graphql`, webSocketImpl: AuthWebSocket, retryAttempts: 0, lazy: false });
  t.teardown(() => client.dispose());
  return client;
}

/** Subscribe and collect results; `next()` waits (up to `timeoutMs`) for the next one. */
function collect(client: Client, query: string, variables: Record<string, unknown>) {
  const queue: any[] = [];
  const waiters: Array<(v: any) => void> = [];
  let probes = 0;
  let failure: unknown;
  const dispose = client.subscribe(
    { query, variables },
    {
      next: (v: any) => {
        // listening()'s probes are counted, never delivered: a late one must not
        // stand in for the change a test waits for.
        if (v?.data?.deleteTaskChanged?.op === LISTEN_PROBE) probes++;
        else (waiters.shift() ?? ((x: unknown) => queue.push(x)))(v);
      },
      error: (e) => {
        failure = e;
        const waiter = waiters.shift();
        if (waiter) waiter({ failure: e });
        else queue.push({ failure: e });
      },
      complete: () => {},
    },
  );
  return {
    dispose,
    probes: () => probes,
    failure: () => failure,
    next(timeoutMs = 10_000): Promise<any> {
      if (queue.length) return Promise.resolve(queue.shift());
      return new Promise((resolve, reject) => {
        const waiter = (v: unknown) => {
          clearTimeout(timer);
          resolve(v);
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`no subscription result within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.push(waiter);
      });
    },
  };
}

type Sub = ReturnType<typeof collect>;

/** Send a probe on the topic and wait for it; the results before it are returned (what arrived in between). */
async function untilProbe(api: Api, sub: Sub, runId: string, marker: string): Promise<any[]> {
  await api.pool.query('select pg_notify($1, $2)', [`bastion:run:${runId}:delete`, JSON.stringify({ table: marker, op: 'probe', run_id: runId })]);
  const seen: any[] = [];
  for (;;) {
    const got = await sub.next();
    if (got?.failure) throw new Error(`the subscription failed: ${JSON.stringify(got.failure)}`);
    if (got?.data?.deleteTaskChanged?.table === marker) return seen;
    seen.push(got);
  }
}

const LISTEN_PROBE = 'listen-probe';

/** Wait until the server LISTENs on the run's delete topic (PostGraphile LISTENs after the subscribe message is handled). */
async function listening(api: Api, sub: Sub, runId: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (sub.failure()) throw new Error(`the subscription failed: ${JSON.stringify(sub.failure())}`);
    await api.pool.query('select pg_notify($1, $2)', [`bastion:run:${runId}:delete`, JSON.stringify({ table: LISTEN_PROBE, op: LISTEN_PROBE, run_id: runId })]);
    await new Promise((r) => setTimeout(r, 50));
    if (sub.probes() > 0) return;
  }
  throw new Error(`nobody listens on bastion:run:${runId}:delete`);
}

const QUERY = `subscription($id: UUID!) { deleteTaskChanged(runId: $id) { table op runId status seq task { status attempts deleteReason } event { seq kind } } }`;

t.test('a delete requested through the REST API reaches a viewer: task insert and queued event; a claim arrives, a heartbeat does not', async (t) => {
  const api = await startApi(t);
  const viewer = await api.as('viewer');
  const operator = await api.as('operator');
  const job = await makeJob(api.db);
  const snap = await makeSnapshot(api.db, job);
  const sub = collect(wsClient(t, api, viewer), QUERY, { id: snap.run_id });
  await listening(api, sub, snap.run_id);

  const res = await operator.post(`/api/jobs/${job.id}/snapshots/${snap.run_id}/delete`, { reason: 'old data' });
  t.equal(res.status, 200, await res.clone().text());
  const queued = (await untilProbe(api, sub, snap.run_id, 'p1')).map((r) => r.data.deleteTaskChanged);
  t.match(queued, [
    { table: 'artifact_delete_tasks', op: 'insert', runId: snap.run_id, status: 'queued', task: { status: 'queued', attempts: 0, deleteReason: 'old data' }, event: null },
    { table: 'artifact_delete_events', op: 'insert', runId: snap.run_id, seq: 1, event: { seq: 1, kind: 'queued' } },
  ], 'the task and its first event, in write order');
  t.equal(queued.length, 2);

  await api.pool.query(`select * from bastion_private.task_claim('artifact_delete', $1, 'worker-1')`, [snap.run_id]);
  const claimed = (await untilProbe(api, sub, snap.run_id, 'p2')).map((r) => r.data.deleteTaskChanged);
  t.match(claimed, [
    { table: 'artifact_delete_tasks', op: 'update', status: 'running', task: { status: 'running', attempts: 1 } },
    { table: 'artifact_delete_events', op: 'insert', seq: 2, event: { kind: 'attempt' } },
  ]);
  t.equal(claimed.length, 2);

  const { rows } = await api.pool.query(`select bastion_private.task_heartbeat('artifact_delete', 'worker-1', array[$1]::uuid[]) as held`, [snap.run_id]);
  t.same(rows[0].held, [snap.run_id], 'the heartbeat was recorded');
  t.same(await untilProbe(api, sub, snap.run_id, 'p3'), [], 'a heartbeat notifies nobody');
});

t.test('a bulk request notifies each snapshot on its own topic; a task deleted with its job arrives as a delete', async (t) => {
  const api = await startApi(t);
  const operator = await api.as('operator');
  const admin = await api.as('admin');
  const job = await makeJob(api.db);
  const [a, b, c] = [await makeSnapshot(api.db, job), await makeSnapshot(api.db, job), await makeSnapshot(api.db, job)];
  const sub = collect(wsClient(t, api, operator), QUERY, { id: b!.run_id });
  await listening(api, sub, b!.run_id);

  const res = await operator.post(`/api/jobs/${job.id}/snapshots/delete`, { run_ids: [a!.run_id, b!.run_id, c!.run_id] });
  t.equal(res.status, 200, await res.clone().text());
  const seen = (await untilProbe(api, sub, b!.run_id, 'p1')).map((r) => r.data.deleteTaskChanged);
  t.same(seen.map((s) => [s.table, s.op, s.runId]), [
    ['artifact_delete_tasks', 'insert', b!.run_id],
    ['artifact_delete_events', 'insert', b!.run_id],
  ], 'only this snapshot’s changes, though one statement wrote three tasks');

  // keep_data removes the job with its index and queue rows (nothing running).
  const del = await admin.graphql(`mutation($id: UUID!) { deleteJob(input: { jobId: $id, mode: keep_data }) { result } }`, { id: job.id });
  t.notOk(del.body.errors, JSON.stringify(del.body.errors));
  t.match(del.body.data.deleteJob.result, { job_deleted: true, mode: 'keep_data' });
  const gone = (await untilProbe(api, sub, b!.run_id, 'p2')).map((r) => r.data.deleteTaskChanged);
  t.match(gone, [{ table: 'artifact_delete_tasks', op: 'delete', runId: b!.run_id, status: 'queued', task: null }]);
  t.equal(gone.length, 1, 'the cascaded event rows are not announced one by one');
});
