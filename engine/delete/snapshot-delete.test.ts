import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { TaskAttemptError } from '../../core/task-attempt-error.ts';
import { writeRunDir } from '../../test/factories.ts';
import { executeSnapshotDelete } from './snapshot-delete.ts';

const noSecrets = { resolveWebdavCredentials: () => Promise.reject(new Error('no secrets in this test')) };

t.test('reads the location from the target snapshot: local_dir on the hub is deleted, twice is not_found', async (t) => {
  const base = await fs.realpath(t.testdir({}));
  const job = randomUUID();
  const run = randomUUID();
  await writeRunDir(base, job, run);
  const task = { run_id: run, job_id: job, node_id: 'hub', target_snapshot: { node_id: 'hub', target: { type: 'local_dir', base_dir: base } } };
  const r = await executeSnapshotDelete(task, noSecrets);
  t.same([r.outcome, r.message, r.fields['path']], ['deleted', 'deleted snapshot data', path.join(base, job, run)]);
  t.equal((await executeSnapshotDelete(task, noSecrets)).outcome, 'not_found');
});

t.test('agent-owned local data fails offline, naming the agent; nothing on the hub is touched', async (t) => {
  const base = await fs.realpath(t.testdir({}));
  const agent = randomUUID();
  const job = randomUUID();
  const run = randomUUID();
  await writeRunDir(base, job, run);
  const err = await executeSnapshotDelete({ run_id: run, job_id: job, node_id: agent, target_snapshot: { node_id: agent, target: { type: 'local_dir', base_dir: base } } }, noSecrets).catch((e) => e);
  t.type(err, TaskAttemptError);
  t.same([err.kind, err.fields.agent_id], ['offline', agent]);
  t.match(err.message, agent);
  t.ok(await fs.stat(path.join(base, job, run, 'complete.json')), 'the hub does not delete an agent\'s path on its own disk');
});

t.test('an invalid target snapshot is a config failure that never echoes the value', async (t) => {
  for (const snapshot of [
    null,
    { node_id: 'hub' },
    { node_id: 'hub', target: { type: 's3', bucket: 'b' } },
    { node_id: 'hub', target: { type: 'webdav', base_url: 'https://eve:t0ps3cret@dav.example/', secret_name: 'dav' } },
    { node_id: '../hub', target: { type: 'local_dir', base_dir: '/b' } },
  ]) {
    const err = await executeSnapshotDelete({ run_id: randomUUID(), job_id: randomUUID(), node_id: 'hub', target_snapshot: snapshot }, noSecrets).catch((e) => e);
    t.type(err, TaskAttemptError);
    t.same([err.kind, err.reason], ['config', 'invalid_target_snapshot']);
    t.notOk(err.message.includes('t0ps3cret'));
  }
});
