import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import t from 'tap';
import { checkHub, loadIdentity, saveIdentity, type AgentIdentity } from './identity.ts';

const identity = (): AgentIdentity => ({
  v: 1,
  hub_url: 'https://hub.example.com',
  agent_id: randomUUID(),
  name: 'nas',
  key: `bak_${randomBytes(32).toString('base64url')}`,
  enrolled_at: new Date().toISOString(),
});

t.test('saved with mode 0600 in a 0700 directory, read back, no temporary file left', async (t) => {
  const dir = path.join(t.testdir(), 'data');
  t.equal(await loadIdentity(dir), null, 'no identity yet');
  const id = identity();
  await saveIdentity(dir, id);
  t.same(await loadIdentity(dir), id);
  t.equal((await fs.stat(path.join(dir, 'agent.json'))).mode & 0o777, 0o600);
  t.equal((await fs.stat(dir)).mode & 0o777, 0o700);
  t.same(await fs.readdir(dir), ['agent.json']);
});

t.test('a file readable by others is tightened; a damaged one is refused with a code', async (t) => {
  const dir = t.testdir();
  await saveIdentity(dir, identity());
  await fs.chmod(path.join(dir, 'agent.json'), 0o644);
  await loadIdentity(dir);
  t.equal((await fs.stat(path.join(dir, 'agent.json'))).mode & 0o777, 0o600);
  for (const text of ['{', '[]', JSON.stringify({ ...identity(), key: 'short' }), JSON.stringify({ ...identity(), hub_url: 'https://u:p@h/' }), JSON.stringify({ ...identity(), agent_id: '../x' })]) {
    await fs.writeFile(path.join(dir, 'agent.json'), text);
    await t.rejects(loadIdentity(dir), { code: 'agent_identity_mismatch' });
  }
});

t.test('another hub URL is refused', async (t) => {
  const id = identity();
  t.doesNotThrow(() => checkHub(id, 'https://hub.example.com'));
  t.throws(() => checkHub(id, 'https://other.example.com'), { code: 'agent_identity_mismatch' });
});
