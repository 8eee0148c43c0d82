/**
 * Backups executed by agents, end to end: the run is dispatched (the worker
 * does not wait), the agent runs the format engine into its own local_dir or
 * into WebDAV with the login the gateway sent, progress keeps the run alive,
 * the result indexes the snapshot under the agent's node id, and a delete of
 * that snapshot is executed by the same agent. Scheduled runs for an offline
 * agent are recorded as missed; manual ones wait for it; a run whose agent
 * vanishes fails with agent_lost; no credential is stored or printed.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { parseJobInput } from '../core/job-input.ts';
import type { JobSpecInput } from '../core/job-spec.ts';
import { createJob } from '../db/queries/jobs.ts';
import { getRunDetail, requestRun } from '../db/queries/runs.ts';
import { makeSourceTree } from '../engine/format/round-trip-kit.ts';
import { putWebdavSecret } from '../engine/secrets/secret-store.ts';
import { deleteTask, enrollmentToken, spawnAgent, startHub, until, type InProcessHub } from './agent-harness.ts';
import { makeAgent } from './factories.ts';
import { helloRaw } from './raw-agent-client.ts';
import { startWebdavServer } from './webdav-server.ts';

const MiB = 1024 * 1024;
const exists = (p: string) =>
  fs.access(p).then(
    () => true,
    () => false,
  );

async function agentJob(hub: InProcessHub, agentId: string, spec: JobSpecInput, extra: { schedule?: string } = {}) {
  return createJob(hub.pool, parseJobInput({ name: `job-${randomUUID().slice(0, 8)}`, node_id: agentId, spec, ...extra }));
}

async function finalRun(hub: InProcessHub, runId: string, ms = 60_000) {
  return until(async () => {
    const d = await getRunDetail(hub.pool, runId);
    return ['success', 'failed', 'canceled', 'rejected'].includes(d.run.status) ? d : null;
  }, `run ${runId} to end`, ms);
}

t.test('local_dir on the agent: dispatched, executed there, indexed with the agent\'s node id, deleted by the same agent', async (t) => {
  const hub = await startHub(t);
  const dir = t.testdir({ src: {}, base: {} });
  await makeSourceTree(path.join(dir, 'src'), { bigBytes: 2 * MiB + 7 });
  const agent = spawnAgent(t, { hubUrl: hub.url, dataDir: path.join(dir, 'agent'), enrollToken: await enrollmentToken(hub.pool), name: 'backup-box' });
  await agent.waitFor(/connected to/);
  const agentId = (await hub.pool.query<{ id: string }>(`select id from bastion.agents where name = 'backup-box'`)).rows[0]!.id;
  const job = await agentJob(hub, agentId, { source: { type: 'filesystem', paths: [path.join(dir, 'src')] }, target: { type: 'local_dir', base_dir: path.join(dir, 'base') }, part_size_bytes: MiB });
  const queued = await requestRun(hub.pool, job.id);
  const { run, events } = await finalRun(hub, queued.id);
  t.equal(run.status, 'success', run.error ?? '');
  t.equal(run.node_id, agentId);
  t.match(run.summary, { executor_node_id: agentId, artifact_format: 'archive_v1', location: new RegExp(`local_dir:${path.join(dir, 'base')}`) });
  const kinds = events.map((e) => e.kind);
  t.same(kinds.slice(0, 3), ['queued', 'start', 'dispatched'], 'started and dispatched in one transaction');
  t.ok(kinds.includes('progress'), 'progress streamed live from the agent');
  t.equal(kinds.at(-1), 'complete');
  t.ok(await exists(path.join(dir, 'base', job.id, run.id, 'complete.json')), 'the data is on the agent\'s disk, complete');
  const snapshot = (await hub.pool.query('select node_id, status, target_snapshot, source_files from bastion.run_artifacts where run_id = $1', [run.id])).rows[0];
  t.match(snapshot, { node_id: agentId, status: 'present', target_snapshot: { node_id: agentId, target: { type: 'local_dir' } } });
  t.ok(snapshot.source_files > 0, 'metrics from the agent\'s summary');
  t.notOk(await exists(path.join(dir, 'agent', 'staging', run.id)), 'the agent removed its staging directory');
  await agent.waitFor(/backup_run .*: done/);

  await hub.pool.query('select bastion.request_snapshot_delete($1, $2)', [job.id, run.id]);
  await until(async () => (await deleteTask(hub.pool, run.id))?.status === 'done', 'delete done');
  const deleteEvents = (await hub.pool.query<{ kind: string; fields: Record<string, unknown> }>('select kind, fields from bastion.artifact_delete_events where run_id = $1 order by seq', [run.id])).rows;
  t.match(deleteEvents.find((e) => e.kind === 'dispatched'), { fields: { agent_id: agentId } }, 'the delete went to the agent that holds the data');
  t.notOk(await exists(path.join(dir, 'base', job.id, run.id)), 'gone from the agent\'s disk');
});

t.test('WebDAV from the agent with the login of its node scope, sent at delivery and stored nowhere', async (t) => {
  const hub = await startHub(t);
  const dir = t.testdir({ src: {} });
  await makeSourceTree(path.join(dir, 'src'), { bigBytes: MiB + 3 });
  const password = `pw-${randomUUID()}-Zz!`;
  const dav = await startWebdavServer(t, { password });
  const agent = spawnAgent(t, { hubUrl: hub.url, dataDir: path.join(dir, 'agent'), enrollToken: await enrollmentToken(hub.pool), name: 'dav-box' });
  await agent.waitFor(/connected to/);
  const agentId = (await hub.pool.query<{ id: string }>(`select id from bastion.agents where name = 'dav-box'`)).rows[0]!.id;
  await putWebdavSecret(hub.pool, hub.secretKeys, agentId, 'nas', { username: dav.username, password });
  const job = await agentJob(hub, agentId, { source: { type: 'filesystem', paths: [path.join(dir, 'src')] }, target: { type: 'webdav', base_url: dav.url, secret_name: 'nas' }, part_size_bytes: MiB });
  const queued = await requestRun(hub.pool, job.id);
  const { run } = await finalRun(hub, queued.id);
  t.equal(run.status, 'success', run.error ?? '');
  t.ok(await exists(path.join(dav.dir, job.id, run.id, 'complete.json')), 'on the WebDAV server');
  t.match(run.summary, { executor_node_id: agentId });

  const stored = (
    await hub.pool.query<{ t: string }>(`select coalesce((select string_agg(m::text, '') from bastion.agent_outbox m), '') || coalesce((select string_agg(e::text, '') from bastion.run_events e), '')
         || coalesce((select string_agg(r::text, '') from bastion.runs r), '') || coalesce((select string_agg(j::text, '') from graphile_worker.jobs j), '') as t`)
  ).rows[0]!.t;
  t.notOk(stored.includes(password), 'the password is in no outbox row, event, run or queue entry');
  t.notOk(agent.lines.join('\n').includes(password), 'nor in the agent\'s output');
  t.notOk(hub.logs.join('').includes(password), 'nor in the hub\'s log');
  const cacheFiles = await fs.readdir(path.join(dir, 'agent', 'results'));
  for (const f of cacheFiles) t.notOk((await fs.readFile(path.join(dir, 'agent', 'results', f), 'utf8')).includes(password), 'nor in the agent\'s results cache');

  // Without a secret in the agent's scope the gateway fails the run at delivery.
  await hub.pool.query(`select bastion.delete_secret($1, 'webdav', 'nas')`, [agentId]);
  const second = await requestRun(hub.pool, job.id);
  const failed = await finalRun(hub, second.id);
  t.match(failed.run, { status: 'failed', error_code: 'secret_not_found' });
  t.equal(agent.count(new RegExp(`backup_run ${second.id}`)), 0, 'nothing was sent to the agent');
});

t.test('offline agent: a scheduled run is recorded as missed, a manual run waits and runs when the agent connects', async (t) => {
  const hub = await startHub(t);
  const dir = t.testdir({ src: { 'a.txt': 'alpha' }, base: {} });
  const dataDir = path.join(dir, 'agent');
  const first = spawnAgent(t, { hubUrl: hub.url, dataDir, enrollToken: await enrollmentToken(hub.pool), name: 'sleepy' });
  await first.waitFor(/connected to/);
  await first.kill('SIGINT');
  const agentId = (await hub.pool.query<{ id: string }>(`select id from bastion.agents where name = 'sleepy'`)).rows[0]!.id;
  const spec: JobSpecInput = { source: { type: 'filesystem', paths: [path.join(dir, 'src')] }, target: { type: 'local_dir', base_dir: path.join(dir, 'base') }, part_size_bytes: MiB };
  const scheduled = await agentJob(hub, agentId, spec, { schedule: '* * * * *' });
  await hub.pool.query(`update bastion.jobs set schedule_cursor = now() - interval '2 minutes' where id = $1`, [scheduled.id]);
  const slot = (await hub.pool.query<{ id: string }>(`select (bastion.schedule_run($1, date_trunc('minute', now()))).id`, [scheduled.id])).rows[0]!.id;
  const missed = await finalRun(hub, slot);
  t.match(missed.run, { status: 'failed', error_code: 'agent_offline', trigger: 'schedule' });
  t.match(missed.run.error, /was not connected at the schedule slot/);

  const manualJob = await agentJob(hub, agentId, spec);
  const manual = await requestRun(hub.pool, manualJob.id);
  await until(async () => (await getRunDetail(hub.pool, manual.id)).events.some((e) => e.kind === 'waiting_for_agent'), 'waiting_for_agent');
  t.equal((await getRunDetail(hub.pool, manual.id)).run.status, 'queued', 'the manual run waits, queued');
  const job = (await hub.pool.query(`select run_at from graphile_worker.jobs where key = $1`, [`run-backup:${manual.id}`])).rows[0];
  t.ok(job && job.run_at.getTime() > Date.now() + 60_000, 'its next check is minutes away');

  const back = spawnAgent(t, { hubUrl: hub.url, dataDir });
  const done = await finalRun(hub, manual.id);
  t.equal(done.run.status, 'success', 'it ran as soon as the agent connected');
  await back.waitFor(/backup_run .*: done/);
});

t.test('a run whose agent disconnects and stays away fails with agent_lost; late progress is told to cancel', async (t) => {
  const hub = await startHub(t, { agentTiming: { lostGraceMs: 1500 } });
  const dir = t.testdir({ src: { 'a.txt': 'alpha' }, base: {} });
  const a = await makeAgent(hub.pool);
  const job = await agentJob(hub, a.id, { source: { type: 'filesystem', paths: [path.join(dir, 'src')] }, target: { type: 'local_dir', base_dir: path.join(dir, 'base') }, part_size_bytes: MiB });
  // A raw client plays an agent that takes the run and vanishes.
  const fake = await helloRaw(hub.url, a.key);
  const queued = await requestRun(hub.pool, job.id);
  const frame = await fake.next('backup_run');
  t.equal(frame.run_id, queued.id);
  t.notOk('credentials' in frame, 'no login for a local_dir target');
  fake.send({ type: 'ack', message_id: frame.message_id });
  fake.send({ type: 'run_progress', message_id: frame.message_id, progress: null, message: null });
  fake.close();
  const lost = await finalRun(hub, queued.id, 30_000);
  t.match(lost.run, { status: 'failed', error_code: 'agent_lost' });
  t.match((await hub.pool.query('select result from bastion.agent_outbox where id = $1', [frame.message_id])).rows[0].result, { status: 'lost' });
  const back = await helloRaw(hub.url, a.key);
  back.send({ type: 'run_progress', message_id: frame.message_id, progress: null, message: 'still here' });
  t.match(await back.next('cancel'), { message_id: frame.message_id }, 'an agent that comes back too late is told to stop');
  back.send({ type: 'run_result', message_id: frame.message_id, result: { status: 'failed', error_code: 'backup_aborted', error: 'canceled' } });
  back.send({ type: 'ping', seq: 1 });
  await back.next('pong');
  t.equal((await getRunDetail(hub.pool, queued.id)).run.error_code, 'agent_lost', 'its late result changes nothing');
});
