/**
 * `bastion user` as an operator meets it: a headless install creates its
 * first admin with a piped password, then signs in through the API.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { startApi } from './api-harness.ts';

const MAIN = path.resolve(import.meta.dirname, '../cli/main.ts');

function cli(url: string, cwd: string, args: string[], stdin = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { cwd, env: { PATH: process.env.PATH ?? '', HOME: cwd, DATABASE_URL: url, BASTION_DATA_DIR: cwd } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.stdin.end(stdin);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

t.test('create the first admin from stdin, list users, reset a password; bad input exits 2 without a stack', async (t) => {
  const api = await startApi(t);
  const dir = t.testdir();
  let r = await cli(api.url, dir, ['user', 'list']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /no users/);

  r = await cli(api.url, dir, ['user', 'create', '--username', 'root', '--role', 'admin'], 'correct horse battery staple\n');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^created admin root \([0-9a-f-]{36}\)\n$/);
  t.same(await (await api.fetch('/api/setup/status')).json(), { needs_setup: false }, 'setup is closed');
  const admin = await api.login('root', 'correct horse battery staple');
  t.equal(admin.role, 'admin');

  r = await cli(api.url, dir, ['user', 'create', '--username', 'ROOT', '--role', 'viewer'], 'another long password');
  t.equal(r.code, 1);
  t.match(r.stderr, /^bastion: username_taken: /);
  r = await cli(api.url, dir, ['user', 'create', '--username', 'x', '--role', 'admin'], 'short');
  t.equal(r.code, 2);
  t.match(r.stderr, /^bastion: user create: password must be at least 12 characters\n$/);
  r = await cli(api.url, dir, ['user', 'create', '--username', 'x', '--role', 'root'], 'long enough password');
  t.equal(r.code, 2);
  t.match(r.stderr, /--role must be one of viewer, operator, admin/);
  r = await cli(api.url, dir, ['user', 'create', '--role', 'admin'], 'long enough password');
  t.equal(r.code, 2);
  t.match(r.stderr, /--username is required/);
  r = await cli(api.url, dir, ['user', 'frob']);
  t.equal(r.code, 2);

  r = await cli(api.url, dir, ['user', 'set-password', '--username', 'root'], 'a different long password');
  t.equal(r.code, 0, r.stderr);
  t.equal((await admin.get('/api/users')).status, 401, 'sessions ended');
  await api.login('root', 'a different long password');
  r = await cli(api.url, dir, ['user', 'list']);
  t.match(r.stdout, /^root\s+admin\s+enabled/);
});
