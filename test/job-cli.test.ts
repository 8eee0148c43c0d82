/**
 * `bastion job` and `bastion secret` as an operator meets them: real CLI
 * processes against the test database (DATABASE_URL), with a worker pool in
 * this process executing the runs they request.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { startWorkers } from '../worker/runner.ts';
import { harness, MiB, specFor, type Harness } from './backup-harness.ts';
import { startWebdavServer } from './webdav-server.ts';

const MAIN = path.resolve(import.meta.dirname, '../cli/main.ts');

function cli(h: Harness, args: string[], stdin = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      cwd: h.dir,
      env: { PATH: process.env.PATH ?? '', HOME: h.dir, DATABASE_URL: h.tdb.url, BASTION_DATA_DIR: h.dataDir, BASTION_SECRET_KEY: h.secretKey },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.stdin.end(stdin);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

t.test('create, list and run a job from the command line; --follow prints the run and its outcome', async (t) => {
  const h = await harness(t, { bigBytes: 2 * MiB });
  const workers = await startWorkers({ pool: h.tdb.pool, logger: pino({ level: 'silent' }), concurrency: 2, pollIntervalMs: 100, dataDir: h.dataDir, secretKey: h.secretKey, timing: h.ctx.timing });
  t.teardown(() => workers.stop());
  await fs.writeFile(`${h.dir}/spec.json`, JSON.stringify(specFor(h)));

  let r = await cli(h, ['job', 'create', '--name', 'docs', '--spec-file', `${h.dir}/spec.json`, '--schedule', '0 3 * * *', '--timezone', 'Europe/Berlin']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^created job docs \([0-9a-f-]{36}\) on hub: local_dir .*, archive_v1\nschedule 0 3 \* \* \* \(Europe\/Berlin\); next runs: \d{4}-\d\d-\d\dT0[12]:00:00Z/);

  r = await cli(h, ['job', 'list']);
  t.equal(r.code, 0);
  t.match(r.stdout, /^NAME +NODE +SCHEDULE +OVERLAP +TARGET +LAST RUN +ID\ndocs +hub +0 3 \* \* \* Europe\/Berlin +queue +local_dir /);

  r = await cli(h, ['job', 'run', 'docs', '--follow']);
  t.equal(r.code, 0, `exit 0 on success: ${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  t.match(lines[0], /^run [0-9a-f-]{36} of job docs queued$/);
  t.ok(lines.some((l) => / info +start +started on hub$/.test(l)), 'the start event');
  t.ok(lines.some((l) => / info +progress +packaging: \d+\/\d+ files/.test(l) || / info +progress +/.test(l)), 'progress as plain lines when stdout is not a terminal');
  t.ok(lines.some((l) => / info +complete +backup complete$/.test(l)), 'the complete event');
  t.match(lines.at(-1), /^run [0-9a-f-]{36} succeeded in \S+: \d+ files, [\d.]+ MiB, [\d.]+ MiB written$/);
  t.notMatch(r.stdout, /\r|\x1b\[/, 'no terminal control sequences when not on a terminal');

  r = await cli(h, ['job', 'list', '--json']);
  t.match(JSON.parse(r.stdout), [{ name: 'docs', last_run: { status: 'success' } }]);
});

t.test('failures and misuse: exit codes and one clear line', async (t) => {
  const h = await harness(t, { tree: false });
  const workers = await startWorkers({ pool: h.tdb.pool, logger: pino({ level: 'silent' }), concurrency: 2, pollIntervalMs: 100, dataDir: h.dataDir, secretKey: h.secretKey, timing: h.ctx.timing });
  t.teardown(() => workers.stop());
  await fs.writeFile(`${h.dir}/missing.json`, JSON.stringify(specFor(h, { paths: ['/no/such/source'] })));
  await fs.writeFile(`${h.dir}/relative.json`, JSON.stringify(specFor(h, { paths: ['relative/path'] })));
  await fs.writeFile(`${h.dir}/broken.json`, '{"source": ');

  let r = await cli(h, ['job', 'create', '--name', 'gone', '--spec-file', `${h.dir}/missing.json`, '--overlap', 'reject']);
  t.equal(r.code, 0, r.stderr);
  r = await cli(h, ['job', 'run', 'gone', '--follow']);
  t.equal(r.code, 1, 'a failed run exits 1');
  t.match(r.stdout.trim().split('\n').at(-1), /^run \S+ failed in \S+: source_not_found: .*\/no\/such\/source/);

  const cases: Array<[string[], number, RegExp]> = [
    [['job', 'create', '--name', 'rel', '--spec-file', `${h.dir}/relative.json`], 1, /^bastion: invalid_spec: spec\.source\.paths\[0\]: must be an absolute path\n$/],
    [['job', 'create', '--name', 'cron', '--spec-file', `${h.dir}/missing.json`, '--schedule', '0 25 * * *'], 1, /^bastion: invalid_schedule: schedule: /],
    [['job', 'create', '--name', 'tz', '--spec-file', `${h.dir}/missing.json`, '--schedule', '@daily', '--timezone', 'Mars/Olympus'], 1, /^bastion: invalid_timezone: /],
    [['job', 'create', '--name', 'gone', '--spec-file', `${h.dir}/missing.json`], 1, /^bastion: job_name_taken: /],
    [['job', 'create', '--name', 'broken', '--spec-file', `${h.dir}/broken.json`], 2, /^bastion: --spec-file: .*broken\.json is not JSON/],
    [['job', 'create', '--name', 'nofile', '--spec-file', `${h.dir}/nope.json`], 2, /^bastion: --spec-file: cannot read .*ENOENT/],
    [['job', 'create', '--spec-file', `${h.dir}/missing.json`], 2, /^bastion: job create: --name is required/],
    [['job', 'run', 'no-such-job'], 1, /^bastion: job_not_found: /],
    [['job', 'run'], 2, /^bastion: "job run" needs 1 argument/],
    [['job', 'list', '--follow'], 2, /^bastion: --follow does not apply to "job list"/],
    [['job', 'frobnicate'], 2, /^bastion: job: unknown subcommand "frobnicate"/],
    [['job'], 2, /^bastion: job: missing subcommand/],
    [['secret', 'put-webdav', '--name', 'nas'], 2, /^bastion: secret put-webdav: --username is required/],
    [['secret', 'delete', '--kind', 'ftp', '--name', 'nas'], 2, /^bastion: secret delete: --kind must be webdav or backup_age_identity/],
    [['secret', 'delete', '--kind', 'webdav', '--name', 'nas'], 1, /^bastion: secret_not_found: /],
  ];
  // Independent of each other: run them side by side (each is a Node process start).
  const results = await Promise.all(cases.map(([args]) => cli(h, args)));
  cases.forEach(([args, code, stderr], i) => {
    const res = results[i]!;
    t.equal(res.code, code, `${args.join(' ')} exits ${code}`);
    t.match(res.stderr, stderr, args.join(' '));
    t.equal(res.stderr.trim().split('\n').length, 1, 'one line');
  });
  // The second request of a reject-policy job while the first is queued is refused on the spot.
  await workers.stop();
  r = await cli(h, ['job', 'run', 'gone']);
  t.equal(r.code, 0);
  r = await cli(h, ['job', 'run', 'gone']);
  t.equal(r.code, 1);
  t.match(r.stderr, /^bastion: overlap_rejected: run \S+ of this job is queued or running/);
});

t.test('secrets from the command line: the password comes from stdin and goes nowhere else', async (t) => {
  const h = await harness(t, { bigBytes: 1000 });
  const dav = await startWebdavServer(t);
  let r = await cli(h, ['secret', 'put-webdav', '--name', 'nas', '--username', dav.username], dav.password + '\n');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^stored WebDAV secret nas of node hub \(key BASTION_SECRET_KEY\)\n$/);
  r = await cli(h, ['secret', 'list']);
  t.match(r.stdout, /^hub  webdav +nas  key [0-9a-f]{16}  updated /);
  t.notOk(r.stdout.includes(dav.password));

  // The stored login works for a backup.
  const workers = await startWorkers({ pool: h.tdb.pool, logger: pino({ level: 'silent' }), concurrency: 2, pollIntervalMs: 100, dataDir: h.dataDir, secretKey: h.secretKey, timing: h.ctx.timing });
  t.teardown(() => workers.stop());
  await fs.writeFile(`${h.dir}/spec.json`, JSON.stringify(specFor(h, { target: { type: 'webdav', base_url: dav.url, secret_name: 'nas' } })));
  r = await cli(h, ['job', 'create', '--name', 'dav', '--spec-file', `${h.dir}/spec.json`]);
  t.equal(r.code, 0, r.stderr);
  r = await cli(h, ['job', 'run', 'dav', '--follow']);
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.notOk(r.stdout.includes(dav.password) || r.stderr.includes(dav.password), 'not in the output');

  r = await cli(h, ['secret', 'delete', '--kind', 'webdav', '--name', 'nas']);
  t.equal(r.code, 0);
  r = await cli(h, ['secret', 'list']);
  t.equal(r.stdout, 'no secrets\n');
});
