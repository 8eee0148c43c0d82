/**
 * The protocol at the gateway with raw sockets: frames before hello, malformed,
 * binary, oversized and out-of-order frames answered with protocol errors,
 * a flood of invalid frames closing only that socket, one live socket per
 * agent, forged and late results changing nothing, and a fuzz of random and
 * mutated frames — while a real agent on the same gateway keeps getting work
 * done.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { CLOSE_CODES, HARD_MAX_FRAME_BYTES, INVALID_FRAME_LIMIT, MAX_FRAME_BYTES } from '../core/agent-protocol.ts';
import { deleteTask, enrollmentToken, spawnAgent, startHub, until, type InProcessHub } from './agent-harness.ts';
import { makeAgent, makeDeleteTask, makeJob, makeSnapshot, makeSpec, writeRunDir } from './factories.ts';
import { connectRaw, helloRaw, type RawAgent } from './raw-agent-client.ts';

async function raw(hub: InProcessHub, key: string): Promise<RawAgent> {
  const c = await connectRaw(hub.url, { authorization: `Bearer ${key}` });
  if (!('send' in c)) throw new Error(`refused ${c.status}`);
  return c;
}

const errorsOf = (c: RawAgent) => c.received.filter((f): f is Extract<typeof f, { type: 'protocol_error' }> => 'type' in f && f.type === 'protocol_error').map((f) => f.code);

t.test('before hello only hello and ping; malformed, binary, oversized and out-of-order frames get protocol errors', async (t) => {
  const hub = await startHub(t, { workers: false });
  const a = await makeAgent(hub.pool);
  const c = await raw(hub, a.key);
  c.send({ type: 'ping', seq: 1 });
  t.match(await c.next('pong'), { seq: 1 }, 'ping works before hello');
  c.send({ type: 'ack', message_id: randomUUID() });
  await c.next('protocol_error', (f) => f.code === 'hello_required');
  c.send({ type: 'hello', version: 'raw', capabilities: { kinds: ['snapshot_delete'], targets: ['local_dir'], formats: ['archive_v1'] } });
  t.match(await c.next('welcome'), { agent_id: a.id, max_frame_bytes: MAX_FRAME_BYTES });
  const sent: Array<[string | Buffer, string]> = [
    ['{not json', 'invalid_json'],
    ['[]', 'invalid_frame'],
    [JSON.stringify({ v: 2, type: 'ping' }), 'unsupported_version'],
    [JSON.stringify({ v: 1, type: 'welcome' }), 'unknown_type'],
    [JSON.stringify({ v: 1, type: 'ack', message_id: '../../etc/passwd' }), 'invalid_frame'],
    [Buffer.from([1, 2, 3]), 'binary_not_supported'],
    [JSON.stringify({ v: 1, type: 'hello', version: 'again', capabilities: { kinds: [], targets: [], formats: [] } }), 'unexpected_hello'],
    [JSON.stringify({ v: 1, type: 'ack', message_id: randomUUID() }), 'unknown_message'],
    [JSON.stringify({ v: 1, type: 'task_result', message_id: randomUUID(), result: { outcome: 'deleted', message: 'x' } }), 'unknown_message'],
    [JSON.stringify({ v: 1, type: 'run_result', message_id: randomUUID(), result: { status: 'failed', error_code: 'x', error: 'y' } }), 'unknown_message'],
    [JSON.stringify({ v: 1, type: 'ping', pad: 'x'.repeat(MAX_FRAME_BYTES) }), 'frame_too_large'],
  ];
  for (const [frame] of sent) c.sendText(frame);
  c.send({ type: 'ping', seq: 2 });
  await c.next('pong', (f) => f.seq === 2);
  t.same(errorsOf(c).slice(1), sent.map(([, code]) => code), 'each refused with its code, in order');
  t.ok(c.isOpen(), 'a dozen mistakes do not close the socket');
  const refused = c.received.find((f) => 'type' in f && f.type === 'protocol_error' && f.code === 'unknown_message') as { message_id?: string } | undefined;
  t.ok(refused?.message_id, 'the refusal names the message id it refers to');
  t.notOk(JSON.stringify(c.received).includes('passwd'), 'refusals never echo values');

  c.sendText(Buffer.alloc(HARD_MAX_FRAME_BYTES + 10, 0x20).toString());
  const closed = await c.closed;
  t.ok(closed.code === CLOSE_CODES.tooBig || closed.code === 1006, `above the hard limit uWS drops the socket (client sees ${closed.code})`);
  const after = await helloRaw(hub.url, a.key);
  t.ok(after.isOpen(), 'and the agent can connect again');
  after.close();
});

t.test('a flood of invalid frames closes that socket only; the agent next to it keeps working', async (t) => {
  const hub = await startHub(t);
  const dir = t.testdir({ base: {} });
  const good = spawnAgent(t, { hubUrl: hub.url, dataDir: path.join(dir, 'agent'), enrollToken: await enrollmentToken(hub.pool), name: 'steady' });
  await good.waitFor(/connected to/);
  const goodId = (await hub.pool.query<{ id: string }>(`select id from bastion.agents where name = 'steady'`)).rows[0]!.id;
  const bad = await makeAgent(hub.pool);
  const flooder = await helloRaw(hub.url, bad.key);
  for (let i = 0; i <= INVALID_FRAME_LIMIT; i++) flooder.sendText(`garbage ${i}`);
  t.match(await flooder.closed, { code: CLOSE_CODES.flood }, `the ${INVALID_FRAME_LIMIT + 1}st invalid frame within 10 s closes the socket (4400)`);
  t.equal(errorsOf(flooder).length, INVALID_FRAME_LIMIT + 1, 'each was answered first');

  const job = await makeJob(hub.tdb.db, { node_id: goodId, spec: makeSpec({ target: { type: 'local_dir', base_dir: path.join(dir, 'base') } }) });
  const runId = randomUUID();
  await writeRunDir(path.join(dir, 'base'), job.id, runId);
  await makeSnapshot(hub.tdb.db, job, { runId });
  await hub.pool.query('select bastion.request_snapshot_delete($1, $2)', [job.id, runId]);
  await until(async () => (await deleteTask(hub.pool, runId))?.status === 'done', 'the other agent\'s delete');
  t.pass('the other agent was served');
  const again = await helloRaw(hub.url, bad.key);
  t.ok(again.isOpen(), 'the flooder may reconnect (with a fresh budget)');
  again.close();
});

t.test('one live socket per agent: a new one replaces the old; the old one\'s close changes nothing', async (t) => {
  const hub = await startHub(t, { workers: false });
  const a = await makeAgent(hub.pool);
  const first = await helloRaw(hub.url, a.key);
  const second = await helloRaw(hub.url, a.key);
  t.match(await first.closed, { code: CLOSE_CODES.replaced });
  t.ok(second.isOpen());
  const row = (await hub.pool.query('select connected_session, bastion.agents_online(x) as online from bastion.agents x where id = $1', [a.id])).rows[0];
  t.equal(row.online, true, 'still online after the old socket closed');
  t.ok(row.connected_session);
  second.close();
  await second.closed;
  await until(async () => (await hub.pool.query('select connected_gateway from bastion.agents where id = $1', [a.id])).rows[0].connected_gateway === null, 'offline');
});

t.test('forged, late and duplicate results change nothing', async (t) => {
  const hub = await startHub(t, { workers: false });
  const dir = t.testdir({ base: {} });
  const owner = await makeAgent(hub.pool);
  const intruder = await makeAgent(hub.pool);
  const job = await makeJob(hub.tdb.db, { node_id: owner.id, spec: makeSpec({ target: { type: 'local_dir', base_dir: path.join(dir, 'base') } }) });
  const runId = randomUUID();
  await writeRunDir(path.join(dir, 'base'), job.id, runId);
  const snapshot = await makeSnapshot(hub.tdb.db, job, { runId });
  await makeDeleteTask(hub.tdb.db, snapshot, { status: 'running', worker: `agent:${owner.id}`, attempts: 2 });
  const messageId = randomUUID();
  await hub.pool.query(`insert into bastion.agent_outbox (id, agent_id, kind, queue, run_id, attempt, payload) values ($1, $2, 'snapshot_delete', 'artifact_delete', $3, 2, '{}')`, [messageId, owner.id, runId]);

  const evil = await helloRaw(hub.url, intruder.key);
  evil.send({ type: 'task_result', message_id: messageId, result: { outcome: 'deleted', message: 'trust me' } });
  evil.send({ type: 'ack', message_id: messageId });
  await evil.next('protocol_error', (f) => f.code === 'unknown_message' && f.message_id === messageId);
  t.equal((await deleteTask(hub.pool, runId))?.status, 'running', 'another agent\'s result for this message is refused');

  // The attempt moves on (the watchdog recovered it, a new attempt runs): the owner's late result is stale.
  await hub.pool.query(`update bastion.artifact_delete_tasks set attempts = 3 where run_id = $1`, [runId]);
  const late = await helloRaw(hub.url, owner.key);
  late.send({ type: 'task_result', message_id: messageId, result: { outcome: 'deleted', message: 'late' } });
  late.send({ type: 'ping', seq: 9 });
  await late.next('pong', (f) => f.seq === 9);
  t.match(await deleteTask(hub.pool, runId), { status: 'running', attempts: 3 }, 'a result for attempt 2 does not finish attempt 3');
  const m = (await hub.pool.query('select completed_at, result from bastion.agent_outbox where id = $1', [messageId])).rows[0];
  t.ok(m.completed_at, 'the stale message is closed, so it is not sent again');

  late.send({ type: 'task_result', message_id: messageId, result: { outcome: 'deleted', message: 'again' } });
  late.send({ type: 'ping', seq: 10 });
  await late.next('pong', (f) => f.seq === 10);
  t.equal(errorsOf(late).length, 0, 'a duplicate result is not an error (it may cross a redelivery)');
  t.match(await deleteTask(hub.pool, runId), { status: 'running', attempts: 3 });
});

/** Deterministic PRNG (replayable). */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = Math.imul(s ^ (s >>> 15), 1 | s);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('fuzz: random and mutated frames from several sockets; the gateway keeps serving a real agent and the database keeps its invariants', async (t) => {
  const hub = await startHub(t);
  const dir = t.testdir({ base: {} });
  const good = spawnAgent(t, { hubUrl: hub.url, dataDir: path.join(dir, 'agent'), enrollToken: await enrollmentToken(hub.pool), name: 'fuzz-neighbour' });
  await good.waitFor(/connected to/);
  const goodId = (await hub.pool.query<{ id: string }>(`select id from bastion.agents where name = 'fuzz-neighbour'`)).rows[0]!.id;
  const fuzzers = await Promise.all([makeAgent(hub.pool), makeAgent(hub.pool), makeAgent(hub.pool)]);
  // A real open message of one fuzzer, so mutated frames can hit a known id.
  const job = await makeJob(hub.tdb.db, { node_id: fuzzers[0]!.id, spec: makeSpec({ target: { type: 'local_dir', base_dir: path.join(dir, 'base') } }) });
  const runId = randomUUID();
  const snapshot = await makeSnapshot(hub.tdb.db, job, { runId });
  await makeDeleteTask(hub.tdb.db, snapshot, { status: 'running', worker: `agent:${fuzzers[0]!.id}`, attempts: 1 });
  const knownId = randomUUID();
  await hub.pool.query(`insert into bastion.agent_outbox (id, agent_id, kind, queue, run_id, attempt, payload) values ($1, $2, 'snapshot_delete', 'artifact_delete', $3, 1, '{}')`, [knownId, fuzzers[0]!.id, runId]);

  const rnd = prng(8);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const weird: unknown[] = [null, true, -1, 1e308, '', 'x'.repeat(3000), [], {}, '../../..', '\u0000', 2 ** 53 + 1, knownId, randomUUID()];
  const templates: Array<Record<string, unknown>> = [
    { v: 1, type: 'ping', seq: 1 },
    { v: 1, type: 'ack', message_id: knownId },
    { v: 1, type: 'task_event', message_id: knownId, level: 'info', kind: 'progress', message: 'm' },
    { v: 1, type: 'task_result', message_id: knownId, result: { kind: 'io', error: 'e' } },
    { v: 1, type: 'run_progress', message_id: knownId, progress: null, message: null },
    { v: 1, type: 'run_event', message_id: knownId, level: 'warn', kind: 'agent_note', message: 'n' },
    { v: 1, type: 'run_result', message_id: knownId, result: { status: 'failed', error_code: 'x', error: 'y' } },
    { v: 1, type: 'hello', version: 'f', capabilities: { kinds: [], targets: [], formats: [] } },
    { v: 1, type: 'protocol_error', code: 'invalid_frame', message: 'm' },
  ];
  const mutate = (v: Record<string, unknown>): string => {
    const o: Record<string, unknown> = { ...v };
    const keys = Object.keys(o);
    const r = rnd();
    if (r < 0.3) o[pick(keys)] = pick(weird);
    else if (r < 0.5) delete o[pick(keys)];
    else if (r < 0.6) o[pick(['__proto__', 'constructor', 'extra'])] = pick(weird);
    let text = JSON.stringify(o);
    if (rnd() < 0.2) {
      const at = Math.floor(rnd() * text.length);
      text = text.slice(0, at) + pick(['{', '"', '\\', ']', '\u0000']) + text.slice(at + 1);
    }
    return text;
  };
  let sent = 0;
  let reconnects = 0;
  const frames = 3000;
  await Promise.all(
    fuzzers.map(async (f) => {
      let c = await helloRaw(hub.url, f.key);
      for (let i = 0; i < frames / fuzzers.length; i++) {
        if (!c.isOpen()) {
          reconnects++;
          c = await helloRaw(hub.url, f.key);
        }
        const mode = rnd();
        c.sendText(mode < 0.15 ? randomBytes(Math.floor(rnd() * 64)).toString('latin1') : mode < 0.2 ? Buffer.from(randomBytes(16)) : mutate(pick(templates)));
        sent++;
        if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
      }
      c.send({ type: 'ping', seq: 777 });
      await c.next('pong', (p) => p.seq === 777).catch(() => undefined);
      c.close();
    }),
  );
  t.comment(`${sent} fuzz frames on ${fuzzers.length} sockets, ${reconnects} reconnects after flood closes`);

  // The real agent on the same gateway still gets its work done.
  const goodJob = await makeJob(hub.tdb.db, { node_id: goodId, spec: makeSpec({ target: { type: 'local_dir', base_dir: path.join(dir, 'base') } }) });
  const goodRun = randomUUID();
  await writeRunDir(path.join(dir, 'base'), goodJob.id, goodRun);
  await makeSnapshot(hub.tdb.db, goodJob, { runId: goodRun });
  await hub.pool.query('select bastion.request_snapshot_delete($1, $2)', [goodJob.id, goodRun]);
  await until(async () => (await deleteTask(hub.pool, goodRun))?.status === 'done', 'the neighbour\'s delete');
  t.pass('the neighbour was served throughout');
  t.equal((await fetch(`${hub.url}/healthz`)).status, 200, 'the gateway is healthy');
  // Whatever the fuzz did to the fuzzer's task, it went through the guarded functions: a valid state.
  const task = await deleteTask(hub.pool, runId);
  t.ok(task && ['running', 'retrying', 'blocked', 'done'].includes(task.status), `the fuzzed task is in a valid state (${task?.status})`);
  await fs.rm(path.join(dir, 'base'), { recursive: true, force: true });
});
