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
import { startApi, type Api } from './api-harness.ts';
import { makeJob, makeSnapshot } from './factories.ts';
import { collect, listening, wsClient, type Collector } from './graphql-ws-client.ts';

/** Send a probe on the topic and wait for it; the results before it are returned (what arrived in between). */
async function untilProbe(api: Api, sub: Collector, runId: string, marker: string): Promise<any[]> {
  await api.pool.query('select pg_notify($1, $2)', [`bastion:run:${runId}:delete`, JSON.stringify({ table: marker, op: 'probe', run_id: runId })]);
  const seen: any[] = [];
  for (;;) {
    const got = await sub.next();
    if (got?.failure) throw new Error(`the subscription failed: ${JSON.stringify(got.failure)}`);
    if (got?.data?.deleteTaskChanged?.table === marker) return seen;
    seen.push(got);
  }
}

/** Wait until the server LISTENs on the run's delete topic. */
const listeningOn = (api: Api, sub: Collector, runId: string) => listening(api, sub, `bastion:run:${runId}:delete`, { run_id: runId });

const QUERY = `subscription($id: UUID!) { deleteTaskChanged(runId: $id) { table op runId status seq task { status attempts deleteReason } event { seq kind } } }`;

t.test('a delete requested through the REST API reaches a viewer: task insert and queued event; a claim arrives, a heartbeat does not', async (t) => {
  const api = await startApi(t);
  const viewer = await api.as('viewer');
  const operator = await api.as('operator');
  const job = await makeJob(api.db);
  const snap = await makeSnapshot(api.db, job);
  const sub = collect(wsClient(t, api, viewer, { origin: api.base }), QUERY, { id: snap.run_id });
  await listeningOn(api, sub, snap.run_id);

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
  const sub = collect(wsClient(t, api, operator, { origin: api.base }), QUERY, { id: b!.run_id });
  await listeningOn(api, sub, b!.run_id);

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
