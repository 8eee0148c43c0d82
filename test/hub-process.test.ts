/**
 * `bastion hub` as `npm start` runs it: a real process with its own embedded
 * PostgreSQL (or DATABASE_URL), answering health and readiness, stopping
 * cleanly on SIGINT, and finding its data again on the next start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { testDatabase } from './db.ts';

const MAIN = path.resolve(import.meta.dirname, '../cli/main.ts');

interface Hub {
  child: ChildProcess;
  base: string;
  exited: Promise<number | null>;
  output: () => string;
}

function startHub(env: Record<string, string>): Promise<Hub> {
  const child = spawn(process.execPath, [MAIN, 'hub'], { env: { PATH: process.env.PATH ?? '', BASTION_LISTEN: '127.0.0.1:0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hub not ready in 60 s:\n${out}`)), 60_000);
    const onData = (d: Buffer) => {
      out += d;
      const m = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, base: m[1] as string, exited, output: () => out });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (out += d));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`hub exited with ${code} before it was ready:\n${out}`));
    });
  });
}

async function stop(hub: Hub): Promise<number | null> {
  hub.child.kill('SIGINT');
  return hub.exited;
}

t.test('embedded PostgreSQL: ready, clean stop, data kept across restarts', async (t) => {
  const dataDir = path.join(t.testdir(), 'data');
  const first = await startHub({ BASTION_DATA_DIR: dataDir });
  t.equal((await fetch(`${first.base}/healthz`)).status, 200);
  const ready = await fetch(`${first.base}/readyz`);
  t.equal(ready.status, 200, 'readyz 200');
  // Leave a mark through the hub's own database.
  const pid = (await fs.readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n');
  const auth = JSON.parse(await fs.readFile(path.join(dataDir, 'pg-auth.json'), 'utf8')) as { user: string; password: string };
  const url = `postgres://${auth.user}:${encodeURIComponent(auth.password)}@127.0.0.1:${pid[3]}/bastion`;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query('update bastion.settings set run_retention_days = 99');
  await c.end();
  t.equal(await stop(first), 0, 'exit code 0 on SIGINT');
  t.match(first.output(), /Bastion hub stopped/);
  const postmaster = Number(pid[0]);
  t.throws(() => process.kill(postmaster, 0), 'embedded PostgreSQL stopped with the hub');

  const second = await startHub({ BASTION_DATA_DIR: dataDir });
  t.teardown(() => second.child.kill('SIGKILL'));
  t.equal((await fetch(`${second.base}/readyz`)).status, 200);
  const pid2 = (await fs.readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n');
  const c2 = new pg.Client({ connectionString: url.replace(/:\d+\/bastion$/, `:${pid2[3]}/bastion`) });
  await c2.connect();
  const { rows } = await c2.query('select run_retention_days from bastion.settings');
  await c2.end();
  t.equal(rows[0].run_retention_days, 99, 'the second start found the data of the first');
  t.notMatch(second.output(), /initialising a new PostgreSQL cluster/);
  t.equal(await stop(second), 0);
});

t.test('DATABASE_URL: uses that server and creates nothing under <data_dir>/pg', async (t) => {
  const tdb = await testDatabase(t);
  await tdb.pool.end();
  const dataDir = path.join(t.testdir(), 'data');
  const hub = await startHub({ BASTION_DATA_DIR: dataDir, DATABASE_URL: tdb.url });
  t.equal((await fetch(`${hub.base}/readyz`)).status, 200);
  await t.rejects(fs.access(path.join(dataDir, 'pg')), 'no embedded cluster');
  t.match(hub.output(), /"database":"DATABASE_URL"/);
  t.notMatch(hub.output(), new RegExp(tdb.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'the URL with its password is never logged');
  t.equal(await stop(hub), 0);
});

t.test('a hub killed with SIGKILL leaves an orphaned postmaster; the next start recovers it', async (t) => {
  const dataDir = path.join(t.testdir(), 'data');
  const first = await startHub({ BASTION_DATA_DIR: dataDir });
  const orphan = Number((await fs.readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
  first.child.kill('SIGKILL');
  await first.exited;
  t.doesNotThrow(() => process.kill(orphan, 0), 'postmaster survived the kill');
  const second = await startHub({ BASTION_DATA_DIR: dataDir });
  t.teardown(() => second.child.kill('SIGKILL'));
  t.match(second.output(), /stopping PostgreSQL left running by an earlier process/);
  t.equal((await fetch(`${second.base}/readyz`)).status, 200);
  t.equal(await stop(second), 0);
});

t.test('a second process on a running hub\'s data directory: migrate joins, a second hub is refused, the first keeps running', async (t) => {
  const dataDir = path.join(t.testdir(), 'data');
  const hub = await startHub({ BASTION_DATA_DIR: dataDir });
  t.teardown(() => hub.child.kill('SIGKILL'));
  const run = (args: string[]) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH ?? '', BASTION_DATA_DIR: dataDir, BASTION_LISTEN: '127.0.0.1:0' } });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d));
      child.on('exit', (code) => resolve({ code, stderr }));
    });
  const migrated = await run(['migrate']);
  t.equal(migrated.code, 0, 'migrate joins the running cluster');
  const second = await run(['hub']);
  t.equal(second.code, 2);
  t.match(second.stderr, /^bastion: invalid BASTION_DATA_DIR: .* is in use by another Bastion process \(pid \d+\)/);
  t.equal((await fetch(`${hub.base}/readyz`)).status, 200, 'the first hub and its database are untouched');
  t.equal(await stop(hub), 0);
});
