/**
 * The `bastion` command as an operator meets it: real processes, real exit
 * codes, real stderr.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import t from 'tap';

const MAIN = path.resolve(import.meta.dirname, '../cli/main.ts');

function runCli(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

t.test('a bad setting: exit 2, one line naming it, no stack trace', async (t) => {
  const cwd = t.testdir();
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['hub'], { BASTION_LISTEN: 'nonsense' }, /^bastion: invalid BASTION_LISTEN: expected host:port/],
    [['hub', '--listen', '1.2.3.4:99999'], {}, /^bastion: invalid --listen: /],
    [['hub'], { BASTION_WORKER_CONCURRENCY: '-3' }, /^bastion: invalid BASTION_WORKER_CONCURRENCY: must be at least 1/],
    [['hub'], { DATABASE_URL: 'postgres://nobody:secret-pw@127.0.0.1:1/none' }, /^bastion: invalid DATABASE_URL: cannot connect to postgres:\/\/127\.0\.0\.1:1\/none/],
    [['migrate'], { DATABASE_URL: 'http://example.com' }, /^bastion: invalid DATABASE_URL: expected a URL like postgres:/],
    [['hub', '--no-such-flag'], {}, /^bastion: Unknown option '--no-such-flag'/],
    [['frobnicate'], {}, /^bastion: unknown command "frobnicate"/],
  ];
  for (const [args, env, expected] of cases) {
    const r = await runCli(args, env, cwd);
    t.equal(r.code, 2, `${args.join(' ')} ${JSON.stringify(env)} exits 2`);
    t.match(r.stderr, expected);
    t.equal(r.stderr.trim().split('\n').length, 1, 'exactly one line');
    t.notMatch(r.stderr, /secret-pw|    at /, 'no credentials, no stack');
  }
});

t.test('help', async (t) => {
  const r = await runCli(['--help'], {}, t.testdir());
  t.equal(r.code, 0);
  t.match(r.stdout, /usage: bastion <command>/);
  t.match(r.stdout, /BASTION_LISTEN/);
});
