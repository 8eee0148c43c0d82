/**
 * Agent identity end to end: enrollment (expired, exhausted, reused, revoked,
 * unknown and malformed tokens; concurrent uses; hostile names; throttling),
 * the key check at /agent/ws (missing and malformed keys get 401 at the
 * upgrade; unknown, revoked and rotated keys 4401 right after open), real `bastion agent` processes (identity file, later
 * starts, another hub refused, revoked and rotated agents kicked at once, a
 * new key from stdin), the admin REST routes, and the CLI with hostile flags.
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { enrollmentToken, spawnAgent, startHub, until, type InProcessHub } from './agent-harness.ts';
import { loginClient } from './api-harness.ts';
import { makeAgent, makeUser } from './factories.ts';
import { connectRaw, helloRaw } from './raw-agent-client.ts';

const MAIN = path.resolve(import.meta.dirname, '../cli/main.ts');

function runCli(args: string[], env: Record<string, string>, stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH ?? '', BASTION_LOG_LEVEL: 'warn', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.end(stdin ?? '');
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

async function enroll(hub: InProcessHub, body: unknown): Promise<{ status: number; body: Record<string, any>; headers: Headers }> {
  const res = await fetch(`${hub.url}/agent/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, any>, headers: res.headers };
}

t.test('enrollment tokens: one use, expiry, revocation, unknown and malformed tokens, concurrent uses, hostile names', async (t) => {
  const hub = await startHub(t, { workers: false });
  const token = await enrollmentToken(hub.pool);
  const ok = await enroll(hub, { token, name: 'nas-01' });
  t.equal(ok.status, 201);
  t.match(ok.body, { agent_id: /^[0-9a-f-]{36}$/, agent_key: /^bak_[A-Za-z0-9_-]{43}$/, name: 'nas-01' });
  const stored = (await hub.pool.query(`select (select string_agg(k::text, '') from bastion_private.agent_keys k) || (select string_agg(a::text, '') from bastion.agents a) as t`)).rows[0].t as string;
  t.notOk(stored.includes(ok.body.agent_key), 'the key itself is stored nowhere');
  t.equal((await hub.pool.query('select count(*)::int as n from bastion_private.agent_keys where key_hash = sha256(convert_to($1, \'UTF8\'))', [ok.body.agent_key])).rows[0].n, 1, 'its hash is');

  const reused = await enroll(hub, { token, name: 'nas-02' });
  t.equal(reused.status, 401, 'a one-time token used again');
  t.equal(reused.body.error, 'enrollment_token_exhausted');

  const expiring = await enrollmentToken(hub.pool);
  await hub.pool.query(`update bastion_private.enrollment_tokens set created_at = now() - interval '2 hours', expires_at = now() - interval '1 second' where token_hash = sha256(convert_to($1, 'UTF8'))`, [expiring]);
  const expired = await enroll(hub, { token: expiring, name: 'late' });
  t.equal(expired.status, 401);
  t.equal(expired.body.error, 'enrollment_token_expired');

  const revokedToken = (await hub.pool.query<{ id: string; token: string }>('select id, token from bastion.create_enrollment_token()')).rows[0]!;
  await hub.pool.query('select bastion.revoke_enrollment_token($1)', [revokedToken.id]);
  t.equal((await enroll(hub, { token: revokedToken.token, name: 'r' })).body.error, 'enrollment_token_revoked');

  t.equal((await enroll(hub, { token: `bet_${randomBytes(32).toString('base64url')}`, name: 'x' })).body.error, 'enrollment_token_invalid', 'unknown token');
  const malformed = await enroll(hub, { token: 'bet_short', name: 'x' });
  t.equal(malformed.status, 401);
  t.match(malformed.body, { error: 'enrollment_token_invalid', details: { field: 'token', reason: 'invalid_format' } });

  // Three uses, six agents at once: exactly three get in.
  const three = await enrollmentToken(hub.pool, { uses: 3 });
  const results = await Promise.all(Array.from({ length: 6 }, (_, i) => enroll(hub, { token: three, name: `burst-${i}` })));
  t.same(results.map((r) => r.status).sort(), [201, 201, 201, 401, 401, 401], 'uses are counted under concurrency');
  t.equal(results.filter((r) => r.status === 401).every((r) => r.body.error === 'enrollment_token_exhausted'), true);

  const named = await enrollmentToken(hub.pool, { uses: 10 });
  t.equal((await enroll(hub, { token: named, name: 'NAS-01' })).body.error, 'agent_name_taken', 'names are unique without regard to case');
  for (const name of ['', '   ', 'a\u0000b', 'tab\there', 'x'.repeat(65)]) {
    const r = await enroll(hub, { token: named, name });
    t.equal(r.status, 400, `name ${JSON.stringify(name.slice(0, 10))} refused`);
    t.match(r.body, { error: 'invalid_input', details: { field: 'name' } });
  }
  t.equal((await enroll(hub, { token: named, name: 'x', extra: true })).status, 400, 'unknown keys refused');
  t.equal((await enroll(hub, '{"token":')).body.error, 'invalid_json');
  t.equal((await enroll(hub, { token: named, name: 'x'.repeat(20_000) })).status, 413, 'a body over 16 KiB');
  t.equal((await hub.pool.query('select remaining_uses from bastion_private.enrollment_tokens where token_hash = sha256(convert_to($1, \'UTF8\'))', [named])).rows[0].remaining_uses, 10, 'refused attempts use nothing');
});

t.test('enrollment is throttled like login: 10 failures lock the address, even for a good token', async (t) => {
  const hub = await startHub(t, { workers: false });
  for (let i = 0; i < 10; i++) t.equal((await enroll(hub, { token: `bet_${randomBytes(32).toString('base64url')}`, name: 'guess' })).status, 401);
  const locked = await enroll(hub, { token: await enrollmentToken(hub.pool), name: 'legit' });
  t.equal(locked.status, 429);
  t.equal(locked.body.error, 'rate_limited');
  t.ok(Number(locked.headers.get('retry-after')) > 0, 'Retry-After');
  await hub.pool.query(`delete from bastion_private.login_throttle`);
  t.equal((await enroll(hub, { token: await enrollmentToken(hub.pool), name: 'legit' })).status, 201, 'after the lock a good token works');
});

t.test('/agent/ws: missing and malformed keys get 401 before any upgrade; unknown, revoked and rotated keys are closed with 4401 before any frame is handled', async (t) => {
  const hub = await startHub(t, { workers: false });
  const good = await makeAgent(hub.pool);
  const refused = async (headers: Record<string, string>) => {
    const r = await connectRaw(hub.url, headers);
    if ('send' in r) {
      r.close();
      throw new Error('upgraded');
    }
    return r;
  };
  /** Upgraded, said hello at once, and was closed without an answer. */
  const closedUnheard = async (key: string) => {
    const r = await connectRaw(hub.url, { authorization: `Bearer ${key}` });
    if (!('send' in r)) throw new Error(`refused at the upgrade: ${r.status}`);
    r.send({ type: 'hello', version: 'raw', capabilities: { kinds: ['snapshot_delete'], targets: ['local_dir'], formats: ['archive_v1'] } });
    const closed = await r.closed;
    return { ...closed, frames: r.received.length };
  };
  t.match(await refused({}), { status: 401, body: { error: 'agent_key_invalid' } }, 'no Authorization');
  t.match(await refused({ authorization: 'Basic abc' }), { status: 401, body: { error: 'agent_key_invalid' } });
  t.match(await refused({ authorization: `Bearer ${good.key}x` }), { status: 401, body: { error: 'agent_key_invalid' } }, 'malformed key');
  t.same(await closedUnheard(`bak_${randomBytes(32).toString('base64url')}`), { code: 4401, reason: 'agent_key_invalid', frames: 0 }, 'unknown key');
  const ok = await helloRaw(hub.url, good.key);
  t.pass('the real key is welcomed');
  ok.close();

  const rotated = await makeAgent(hub.pool);
  const newKey = (await hub.pool.query('select agent_key from bastion.rotate_agent_key($1)', [rotated.id])).rows[0].agent_key as string;
  t.same(await closedUnheard(rotated.key), { code: 4401, reason: 'agent_key_invalid', frames: 0 }, 'the old key after a rotation');
  const withNew = await helloRaw(hub.url, newKey);
  t.pass('the new key works');
  withNew.close();

  const revoked = await makeAgent(hub.pool);
  await hub.pool.query('select bastion.revoke_agent($1)', [revoked.id]);
  t.same(await closedUnheard(revoked.key), { code: 4401, reason: 'agent_key_revoked', frames: 0 });
  const { rows } = await hub.pool.query('select connected_session, last_seen_at from bastion.agents where id = $1', [revoked.id]);
  t.same(rows, [{ connected_session: null, last_seen_at: null }], 'the refused socket of the revoked agent was never registered');
});

t.test('a real agent: identity file, later starts without a token, another hub refused, revoked and rotated agents kicked', async (t) => {
  const hub = await startHub(t, { workers: false });
  const dir = t.testdir();
  const dataDir = path.join(dir, 'agent-data');
  const first = spawnAgent(t, { hubUrl: hub.url, dataDir, enrollToken: await enrollmentToken(hub.pool), name: 'box' });
  await first.waitFor(/enrolled with/);
  await first.waitFor(/connected to/);
  const identityFile = path.join(dataDir, 'agent.json');
  t.equal((await fs.stat(identityFile)).mode & 0o777, 0o600, 'agent.json is 0600');
  t.equal((await fs.stat(dataDir)).mode & 0o777, 0o700, 'the data directory is 0700');
  const identity = JSON.parse(await fs.readFile(identityFile, 'utf8'));
  t.match(identity, { v: 1, hub_url: hub.url, name: 'box', key: /^bak_/, agent_id: /^[0-9a-f-]{36}$/ });
  const row = (await hub.pool.query('select name, version, capabilities, bastion.agents_online(a) as online, last_seen_at from bastion.agents a where id = $1', [identity.agent_id])).rows[0];
  t.match(row, { name: 'box', online: true, capabilities: { kinds: ['backup_run', 'snapshot_delete', 'incomplete_cleanup'] } });
  t.ok(row.version, 'version reported in hello');
  t.equal(await first.kill('SIGTERM'), 0);

  const later = spawnAgent(t, { hubUrl: hub.url, dataDir });
  await later.waitFor(/connected to/);
  t.equal(later.count(/enrolled/), 0, 'no second enrollment');
  await later.kill('SIGINT');

  const other = spawnAgent(t, { hubUrl: 'http://127.0.0.1:9', dataDir });
  t.equal(await other.exited, 1, 'another hub URL: refused');
  t.match(other.lines.join('\n'), /agent_identity_mismatch: this data directory belongs to the agent box of hub http:\/\/127\.0\.0\.1:\d+/);

  // Revoked while connected: the socket closes at once and the agent stops.
  const admin = await makeUser(hub.tdb.db, { role: 'admin' });
  const api = await loginClient(hub.url, admin.username, admin.password);
  const running = spawnAgent(t, { hubUrl: hub.url, dataDir });
  await running.waitFor(/connected to/);
  const rotatedRes = await api.post(`/api/agents/${identity.agent_id}/rotate-key`);
  t.equal(rotatedRes.status, 200);
  const rotated = (await rotatedRes.json()) as { agent_id: string; agent_key: string };
  t.match(rotated, { agent_id: identity.agent_id, agent_key: /^bak_/ });
  t.equal(await running.exited, 1, 'a rotated key kicks the agent, which stops (its key is no longer valid)');
  t.match(running.lines.join('\n'), /stopped: .*key/);

  const replaced = spawnAgent(t, { hubUrl: hub.url, dataDir, args: ['--replace-key'], stdin: `${rotated.agent_key}\n` });
  await replaced.waitFor(/stored the new key/);
  await replaced.waitFor(/connected to/);
  t.equal(JSON.parse(await fs.readFile(identityFile, 'utf8')).key, rotated.agent_key, 'the new key is kept');
  t.equal((await fs.stat(identityFile)).mode & 0o777, 0o600);

  const revoke = await api.post(`/api/agents/${identity.agent_id}/revoke`);
  t.equal(revoke.status, 200);
  t.equal(await replaced.exited, 1, 'revoked: kicked and stopped');
  t.match(replaced.lines.join('\n'), /stopped: .*(revoked|no longer valid)/);
  const after = (await hub.pool.query('select revoked_at, connected_gateway, bastion.agents_online(a) as online from bastion.agents a where id = $1', [identity.agent_id])).rows[0];
  t.ok(after.revoked_at);
  t.equal(after.online, false);
  const again = spawnAgent(t, { hubUrl: hub.url, dataDir });
  t.equal(await again.exited, 1, 'a revoked agent cannot come back');
  t.match(again.lines.join('\n'), /agent_key_revoked/);
});

t.test('REST: list with online state, rename, tokens; CLI: agents list/token/revoke', async (t) => {
  const hub = await startHub(t, { workers: false });
  const admin = await makeUser(hub.tdb.db, { role: 'admin' });
  const viewer = await makeUser(hub.tdb.db, { role: 'viewer' });
  const api = await loginClient(hub.url, admin.username, admin.password);
  const view = await loginClient(hub.url, viewer.username, viewer.password);
  const created = await api.post('/api/enrollment-tokens', { ttl_seconds: 600, uses: 2, note: 'rack 4' });
  t.equal(created.status, 201);
  const token = (await created.json()) as { id: string; token: string; remaining_uses: number; note: string };
  t.match(token, { token: /^bet_/, remaining_uses: 2, note: 'rack 4' });
  const listed = (await (await api.get('/api/enrollment-tokens')).json()) as { items: Array<Record<string, unknown>> };
  t.equal(listed.items.length, 1);
  t.notOk(JSON.stringify(listed).includes(token.token), 'lists never show the token');
  t.equal((await view.get('/api/enrollment-tokens')).status, 403, 'viewers cannot see tokens');
  t.equal((await api.post('/api/enrollment-tokens', { ttl_seconds: 5 })).status, 400, 'ttl below a minute');
  t.equal((await api.post('/api/enrollment-tokens', { uses: 0 })).status, 400);

  const agent = spawnAgent(t, { hubUrl: hub.url, dataDir: path.join(t.testdir(), 'a'), enrollToken: token.token, name: 'lister' });
  await agent.waitFor(/connected to/);
  const agents = (await (await view.get('/api/agents')).json()) as { items: Array<{ id: string; name: string; online: boolean; last_seen_at: string }> };
  t.match(agents.items, [{ name: 'lister', online: true }], 'viewers see agents and whether they are online');
  const id = agents.items[0]!.id;
  const one = (await (await view.get(`/api/agents/${id}`)).json()) as { agent: { id: string }; open_messages: unknown[] };
  t.match(one, { agent: { id }, open_messages: [] });
  t.equal((await view.get(`/api/agents/${randomUUID()}`)).status, 404);
  t.equal((await view.get('/api/agents/not-a-uuid')).status, 400);
  t.equal((await view.request('PUT', `/api/agents/${id}/name`, { name: 'x' })).status, 403, 'viewers cannot rename');
  const renamed = await api.put(`/api/agents/${id}/name`, { name: 'renamed' });
  t.equal(renamed.status, 200);
  t.match(await renamed.json(), { agent: { name: 'renamed' } });
  t.equal((await api.put(`/api/agents/${id}/name`, { name: 'bad\u0007name' })).status, 400);

  await agent.kill('SIGINT');
  await until(async () => (await hub.pool.query('select bastion.agents_online(a) as o from bastion.agents a where id = $1', [id])).rows[0]?.o === false, 'offline in lists');

  const env = { DATABASE_URL: hub.tdb.url };
  const list = await runCli(['agents', 'list'], env);
  t.equal(list.code, 0, list.stderr);
  t.match(list.stdout, new RegExp(`renamed\\s+${id}\\s+offline`));
  const tok = await runCli(['agents', 'token', '--ttl', '120', '--uses', '1'], env);
  t.equal(tok.code, 0, tok.stderr);
  t.match(tok.stdout, /^bet_[A-Za-z0-9_-]{43}\n$/);
  t.match(tok.stderr, /shown only now/);
  t.equal((await runCli(['agents', 'token', '--ttl', '5'], env)).code, 2, 'a ttl below a minute');
  t.equal((await runCli(['agents', 'token', '--uses', 'many'], env)).code, 2);
  t.equal((await runCli(['agents', 'frob'], env)).code, 2);
  t.equal((await runCli(['agents', 'revoke'], env)).code, 2, 'revoke needs a name');
  const rv = await runCli(['agents', 'revoke', 'RENAMED'], env);
  t.equal(rv.code, 0, rv.stderr);
  t.match(rv.stdout, /revoked agent renamed/);
  const json = await runCli(['agents', 'list', '--all', '--json'], env);
  t.match(JSON.parse(json.stdout), [{ id, revoked_at: /./ }]);
});

t.test('bastion agent: hostile flags exit 2 naming the flag, never echoing a secret', async (t) => {
  const dir = t.testdir();
  const dataDir = path.join(dir, 'd');
  const token = `bet_${randomBytes(32).toString('base64url')}`;
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['agent', '--data-dir', dataDir], {}, /invalid --hub-url: required/],
    [['agent', '--hub-url', 'https://admin:hunter2@hub.example.com', '--data-dir', dataDir], {}, /invalid --hub-url: must not contain a user name or password/],
    [['agent', '--hub-url', 'ftp://hub.example.com', '--data-dir', dataDir], {}, /invalid --hub-url: must start with http/],
    [['agent', '--hub-url', 'https://hub.example.com/?key=hunter2', '--data-dir', dataDir], {}, /invalid --hub-url: must not have a query/],
    [['agent', '--data-dir', dataDir], { BASTION_HUB_URL: 'javascript:alert(1)' }, /invalid --hub-url/],
    [['agent', '--hub-url', 'http://127.0.0.1:9', '--enroll-token', 'hunter2', '--data-dir', dataDir], {}, /invalid --enroll-token: expected bet_/],
    [['agent', '--hub-url', 'http://127.0.0.1:9', '--enroll-token', token, '--name', 'a\u0007b', '--data-dir', dataDir], {}, /invalid --name: must not contain control characters/],
    [['agent', '--hub-url', 'http://127.0.0.1:9', '--enroll-token', token, '--name', 'x'.repeat(65), '--data-dir', dataDir], {}, /invalid --name: must be at most 64/],
    [['agent', '--hub-url', 'http://127.0.0.1:9'], {}, /invalid --data-dir: required for an agent/],
    [['agent', '--hub-url', 'http://127.0.0.1:9', '--data-dir', dataDir, '--frobnicate'], {}, /Unknown option '--frobnicate'/],
    [['agent', 'extra', '--hub-url', 'http://127.0.0.1:9', '--data-dir', dataDir], {}, /unexpected argument/],
  ];
  for (const [args, env, expected] of cases) {
    const r = await runCli(args, env);
    t.equal(r.code, 2, `${args.slice(1, 3).join(' ')} exits 2`);
    t.match(r.stderr, expected);
    t.notMatch(r.stderr + r.stdout, /hunter2|    at /, 'no secret, no stack');
  }
  const notEnrolled = await runCli(['agent', '--hub-url', 'http://127.0.0.1:9', '--data-dir', dataDir], {});
  t.equal(notEnrolled.code, 1);
  t.match(notEnrolled.stderr, /invalid_config: .* holds no agent identity: the first start needs --enroll-token/);
  await fs.mkdir(dataDir, { recursive: true });
  await fs.writeFile(path.join(dataDir, 'agent.json'), '{"v":1,"hub_url":"http://x"');
  const damaged = await runCli(['agent', '--hub-url', 'http://127.0.0.1:9', '--data-dir', dataDir], {});
  t.equal(damaged.code, 1);
  t.match(damaged.stderr, /agent_identity_mismatch: .*agent\.json is damaged/);
});
