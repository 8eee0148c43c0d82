/**
 * Liveness of agent work: the gateway keeps an agent's attempts alive while
 * the agent reports (and only then), work in flight on an agent that stays
 * away fails with kind offline after the grace period, and the watchdog does
 * the same for the agents of a gateway that died.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import t from 'tap';
import { agentLost } from '../db/queries/agents.ts';
import { deleteTask, startHub, until, type InProcessHub } from './agent-harness.ts';
import { testDatabase } from './db.ts';
import { makeAgent, makeDeleteTask, makeJob, makeSnapshot, makeSpec } from './factories.ts';
import { helloRaw } from './raw-agent-client.ts';

/** A delete attempt running on `agentId` (claimed by it, heartbeat long ago) with its open message. */
async function inFlight(db: InProcessHub['tdb'], agentId: string, base: string) {
  const job = await makeJob(db.db, { node_id: agentId, spec: makeSpec({ target: { type: 'local_dir', base_dir: base } }) });
  const snapshot = await makeSnapshot(db.db, job, { runId: randomUUID() });
  await makeDeleteTask(db.db, snapshot, { status: 'running', worker: `agent:${agentId}`, attempts: 1, heartbeatAt: new Date(Date.now() - 300_000) });
  const messageId = randomUUID();
  await db.pool.query(
    `insert into bastion.agent_outbox (id, agent_id, kind, queue, run_id, attempt, payload, delivered_at, delivery_count, acked_at) values ($1, $2, 'snapshot_delete', 'artifact_delete', $3, 1, '{}', now(), 1, now())`,
    [messageId, agentId, snapshot.run_id],
  );
  return { runId: snapshot.run_id, messageId };
}

const heartbeatOf = async (hub: InProcessHub, runId: string) =>
  (await hub.pool.query<{ h: Date }>('select heartbeat_at as h from bastion.artifact_delete_tasks where run_id = $1', [runId])).rows[0]!.h;

t.test('attempts stay alive while the agent reports; silence stops the heartbeats; a long absence fails them offline', async (t) => {
  const hub = await startHub(t, { workers: false, agentTiming: { beatMs: 200, reportingWindowMs: 1000, lostGraceMs: 1500 } });
  const a = await makeAgent(hub.pool);
  const work = await inFlight(hub.tdb, a.id, path.join(t.testdir(), 'base'));
  const agent = await helloRaw(hub.url, a.key);
  const beatAt = Date.now();
  await until(async () => (await heartbeatOf(hub, work.runId)).getTime() > beatAt - 1000, 'the gateway heartbeats the attempt');
  t.pass('an agent that reports keeps its attempt alive');
  t.ok((await hub.pool.query('select last_seen_at from bastion.agents where id = $1', [a.id])).rows[0].last_seen_at, 'last seen recorded');

  // The agent stops sending anything (no pings): after the reporting window the heartbeats stop.
  await new Promise((r) => setTimeout(r, 1500));
  const frozen = (await heartbeatOf(hub, work.runId)).getTime();
  await new Promise((r) => setTimeout(r, 800));
  t.equal((await heartbeatOf(hub, work.runId)).getTime(), frozen, 'a silent agent\'s attempt is not kept alive');

  agent.close();
  const failed = await until(async () => {
    const d = await deleteTask(hub.pool, work.runId);
    return d?.status === 'retrying' ? d : null;
  }, 'the attempt to fail after the grace period', 15_000);
  t.equal(failed.last_error_kind, 'offline');
  t.match(failed.last_error, /did not come back within/);
  t.match((await hub.pool.query('select result from bastion.agent_outbox where id = $1', [work.messageId])).rows[0].result, { status: 'lost' });
  const ev = (await hub.pool.query(`select fields from bastion.artifact_delete_events where run_id = $1 and kind = 'failed'`, [work.runId])).rows[0];
  t.match(ev.fields, { agent_id: a.id, reason: 'lost', error_kind: 'offline' });
});

t.test('a reconnect within the grace period keeps the work: the same message is sent again', async (t) => {
  const hub = await startHub(t, { workers: false, agentTiming: { lostGraceMs: 3000 } });
  const a = await makeAgent(hub.pool);
  const work = await inFlight(hub.tdb, a.id, path.join(t.testdir(), 'base'));
  const first = await helloRaw(hub.url, a.key);
  await first.next('snapshot_delete', (f) => f.message_id === work.messageId);
  first.close();
  await first.closed;
  const second = await helloRaw(hub.url, a.key);
  t.match(await second.next('snapshot_delete'), { message_id: work.messageId, attempt: 1 }, 'sent again on the new socket');
  await new Promise((r) => setTimeout(r, 3500));
  t.equal((await deleteTask(hub.pool, work.runId))?.status, 'running', 'still the agent\'s after the grace period: it came back');
  second.send({ type: 'task_result', message_id: work.messageId, result: { outcome: 'not_found', message: 'already gone' } });
  await until(async () => (await deleteTask(hub.pool, work.runId))?.status === 'done', 'done');
  t.equal((await deleteTask(hub.pool, work.runId))?.outcome, 'not_found');
});

t.test('the watchdog fails the work of agents whose gateway died', async (t) => {
  const tdb = await testDatabase(t);
  const a = await makeAgent(tdb.pool);
  const gateway = randomUUID();
  await tdb.pool.query('select bastion_private.gateway_register($1, $2, 1, $3)', [gateway, 'dead-host', 'test']);
  await tdb.pool.query('select bastion_private.agent_connected($1, $2, $3)', [a.id, gateway, randomUUID()]);
  const work = await inFlight(tdb, a.id, '/srv/backups');
  t.equal((await agentLost(tdb.pool, null, 25)).tasks, 0, 'a live gateway\'s agents keep their work');
  await tdb.pool.query(`update bastion_private.gateways set heartbeat_at = now() - interval '2 minutes' where id = $1`, [gateway]);
  t.equal((await tdb.pool.query('select bastion.agents_online(x) as o from bastion.agents x where id = $1', [a.id])).rows[0].o, false, 'offline once its gateway is silent');
  t.match(await agentLost(tdb.pool, null, 25), { agents: 1, tasks: 1 });
  t.match(await deleteTask(tdb.pool, work.runId), { status: 'retrying', last_error_kind: 'offline' });
  t.match((await tdb.pool.query('select connected_gateway, disconnected_at from bastion.agents where id = $1', [a.id])).rows[0], { connected_gateway: null, disconnected_at: Date });
});
