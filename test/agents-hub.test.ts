/**
 * Agents against real `bastion hub` processes sharing one database: the hub
 * restarted while agents run (they reconnect and pending work continues,
 * including a delete that finished while the hub was away), and two gateways
 * on one database with agents spread across them (work for an agent reaches
 * the gateway that holds it; a second socket on the other gateway replaces
 * the first).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import t from 'tap';
import { CLOSE_CODES } from '../core/agent-protocol.ts';
import { createDb } from '../db/kysely.ts';
import { deleteTask, enrollmentToken, freePort, spawnAgent, spawnHub, until } from './agent-harness.ts';
import { testDatabase } from './db.ts';
import { makeJob, makeSnapshot, makeSpec, writeRunDir } from './factories.ts';
import { connectRaw } from './raw-agent-client.ts';

const exists = (p: string) =>
  fs.access(p).then(
    () => true,
    () => false,
  );

async function agentIdOf(pool: pg.Pool, name: string): Promise<string> {
  return (await pool.query<{ id: string }>('select id from bastion.agents where name = $1', [name])).rows[0]!.id;
}

async function snapshotOn(pool: pg.Pool, agentId: string, base: string) {
  const db = createDb(pool);
  const job = await makeJob(db, { node_id: agentId, spec: makeSpec({ target: { type: 'local_dir', base_dir: base } }) });
  const runId = randomUUID();
  const dir = await writeRunDir(base, job.id, runId);
  await makeSnapshot(db, job, { runId });
  return { jobId: job.id, runId, dir };
}

t.test('the hub restarted while agents run: they reconnect and pending work continues', async (t) => {
  const tdb = await testDatabase(t);
  const dir = t.testdir({ a: {}, b: {} });
  const secretKey = randomBytes(32).toString('base64');
  const port = await freePort();
  const hubDir = path.join(dir, 'hub');
  let hub = await spawnHub(t, { databaseUrl: tdb.url, port, secretKey, dataDir: hubDir });
  const a = spawnAgent(t, { hubUrl: hub.url, dataDir: path.join(dir, 'agent-a'), enrollToken: await enrollmentToken(tdb.pool), name: 'a', env: { BASTION_AGENT_PAUSE_BEFORE_REMOVE_MS: '3000' } });
  const b = spawnAgent(t, { hubUrl: hub.url, dataDir: path.join(dir, 'agent-b'), enrollToken: await enrollmentToken(tdb.pool), name: 'b' });
  await Promise.all([a.waitFor(/connected to/), b.waitFor(/connected to/)]);
  const [aId, bId] = [await agentIdOf(tdb.pool, 'a'), await agentIdOf(tdb.pool, 'b')];

  // A delete is in flight on agent a (held 3 s before its removal) when the hub stops.
  const inFlight = await snapshotOn(tdb.pool, aId, path.join(dir, 'a'));
  await tdb.pool.query('select bastion.request_snapshot_delete($1, $2)', [inFlight.jobId, inFlight.runId]);
  await a.waitFor(/holding the removal/);
  t.equal(await hub.stop('SIGINT'), 0, 'the hub stops cleanly');
  await Promise.all([a.waitFor(/disconnected .*retrying in/), b.waitFor(/disconnected .*retrying in/)]);

  // Work queued while the hub is down.
  const pending = [await snapshotOn(tdb.pool, bId, path.join(dir, 'b')), await snapshotOn(tdb.pool, bId, path.join(dir, 'b'))];
  for (const p of pending) await tdb.pool.query('select bastion.request_snapshot_delete($1, $2)', [p.jobId, p.runId]);
  await a.waitFor(/snapshot_delete .*: done \(deleted\) .*the hub is not connected/, 15_000);

  hub = await spawnHub(t, { databaseUrl: tdb.url, port, secretKey, dataDir: hubDir });
  await until(async () => a.count(/connected to/) >= 2 && b.count(/connected to/) >= 2, 'both agents back');
  for (const p of [inFlight, ...pending]) {
    const done = await until(async () => {
      const d = await deleteTask(tdb.pool, p.runId);
      return d?.status === 'done' ? d : null;
    }, `delete ${p.runId}`);
    t.equal(done.outcome, 'deleted');
    t.notOk(await exists(p.dir));
  }
  t.equal(a.count(/answered from the results cache/), 1, 'the delete that finished during the outage was answered from the cache after the restart');
  t.equal(a.count(/snapshot_delete .*: started/), 1, 'and executed once');
  t.equal(await hub.stop('SIGINT'), 0);
});

t.test('two gateways on one database: work reaches the gateway holding the agent; a socket on the other gateway replaces it', async (t) => {
  const tdb = await testDatabase(t);
  const dir = t.testdir({ one: {}, two: {} });
  const secretKey = randomBytes(32).toString('base64');
  const hubA = await spawnHub(t, { databaseUrl: tdb.url, secretKey, dataDir: path.join(dir, 'hub-a') });
  const hubB = await spawnHub(t, { databaseUrl: tdb.url, secretKey, dataDir: path.join(dir, 'hub-b') });
  const one = spawnAgent(t, { hubUrl: hubA.url, dataDir: path.join(dir, 'agent-one'), enrollToken: await enrollmentToken(tdb.pool), name: 'one' });
  const two = spawnAgent(t, { hubUrl: hubB.url, dataDir: path.join(dir, 'agent-two'), enrollToken: await enrollmentToken(tdb.pool), name: 'two' });
  await Promise.all([one.waitFor(/connected to/), two.waitFor(/connected to/)]);
  const [oneId, twoId] = [await agentIdOf(tdb.pool, 'one'), await agentIdOf(tdb.pool, 'two')];
  const gateways = (await tdb.pool.query<{ id: string; connected_gateway: string }>('select id, connected_gateway from bastion.agents order by name')).rows;
  t.equal(new Set(gateways.map((g) => g.connected_gateway)).size, 2, 'the agents are held by two different gateways');
  t.equal((await tdb.pool.query('select count(*)::int as n from bastion_private.gateways')).rows[0].n, 2);

  const snaps = [];
  for (let i = 0; i < 4; i++) snaps.push({ agent: oneId, ...(await snapshotOn(tdb.pool, oneId, path.join(dir, 'one'))) });
  for (let i = 0; i < 4; i++) snaps.push({ agent: twoId, ...(await snapshotOn(tdb.pool, twoId, path.join(dir, 'two'))) });
  for (const s of snaps) await tdb.pool.query('select bastion.request_snapshot_delete($1, $2)', [s.jobId, s.runId]);
  for (const s of snaps) {
    const done = await until(async () => {
      const d = await deleteTask(tdb.pool, s.runId);
      return d?.status === 'done' ? d : null;
    }, `delete on ${s.agent === oneId ? 'one' : 'two'}`);
    t.equal(done.outcome, 'deleted');
  }
  const delivered = (
    await tdb.pool.query<{ agent_id: string; ok: boolean }>(`select m.agent_id, m.delivered_session = a.connected_session as ok from bastion.agent_outbox m join bastion.agents a on a.id = m.agent_id`)
  ).rows;
  t.equal(delivered.length, 8);
  t.ok(delivered.every((d) => d.ok), 'each message was delivered on its agent\'s socket, by the gateway holding it');
  t.equal(one.count(/snapshot_delete .*: done/), 4);
  t.equal(two.count(/snapshot_delete .*: done/), 4);

  // Agent one's key opens a second socket on gateway B: gateway A closes the first one.
  const key = JSON.parse(await fs.readFile(path.join(dir, 'agent-one', 'agent.json'), 'utf8')).key as string;
  const intruder = await connectRaw(hubB.url, { authorization: `Bearer ${key}` });
  if (!('send' in intruder)) throw new Error('refused');
  await one.waitFor(/disconnected \(connection closed \(4409/);
  // The real agent reconnects to A, replacing the socket on B in turn.
  t.match(await intruder.closed, { code: CLOSE_CODES.replaced }, 'replacement works across gateways both ways');
  await until(async () => one.count(/connected to/) >= 2, 'agent one back on A');
});
