/**
 * Agents against a real hub on loopback, for the agent suites:
 *
 *   const hub = await startHub(t);                 // gateway + graphile workers on a fresh database
 *   const token = await enrollmentToken(hub.pool);
 *   const agent = spawnAgent(t, { hub, dataDir, enrollToken: token, name: 'nas' });
 *   await agent.waitFor(/connected to/);
 *
 * The hub runs in this process (its gateway and workers can be stopped and
 * started again on the same port); agents are real `bastion agent` processes
 * whose console lines the test reads. Hub processes (cli/main.ts hub) are in
 * {@link spawnHub} for the restart and two-gateway suites.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type pg from 'pg';
import { pino, type Logger } from 'pino';
import { createPool } from '../db/pool.ts';
import { parseSecretKey, SecretKeyProvider } from '../engine/secrets/secret-key.ts';
import { createGateway, type Gateway } from '../gateway/app.ts';
import type { AgentHubTiming } from '../gateway/agents/agent-hub.ts';
import { startWorkers, type Workers } from '../worker/runner.ts';
import { testDatabase, type TestDatabase } from './db.ts';

const MAIN = path.resolve(import.meta.dirname, '../cli/main.ts');

/** Something with a teardown (a tap test). */
interface T {
  teardown(fn: () => unknown): void;
}

/** A hub in this process. */
export interface InProcessHub {
  url: string;
  port: number;
  tdb: TestDatabase;
  pool: pg.Pool;
  secretKey: string;
  secretKeys: SecretKeyProvider;
  gateway: Gateway;
  workers: Workers;
  logs: string[];
  /** Stop gateway and workers (agents see their sockets close). */
  stop(): Promise<void>;
  /** Start gateway and workers again on the same port and database. */
  restart(): Promise<void>;
}

function captureLogger(logs: string[]): Logger {
  return pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(chunk.toString('utf8'));
        if (logs.length > 20_000) logs.splice(0, 10_000);
        cb();
      },
    }),
  );
}

/** A free loopback port (for processes that must keep their port across restarts). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Start a gateway and graphile workers on a fresh test database (or `tdb`). */
export async function startHub(t: T, options: { tdb?: TestDatabase; agentTiming?: Partial<AgentHubTiming>; concurrency?: number; workers?: boolean } = {}): Promise<InProcessHub> {
  const tdb = options.tdb ?? (await testDatabase(t, { poolMax: 10 }));
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'bastion-hub-'));
  t.teardown(() => fs.rm(dataDir, { recursive: true, force: true }));
  const secretKey = randomBytes(32).toString('base64');
  const secretKeys = SecretKeyProvider.fromKey(parseSecretKey(secretKey, 'test'));
  const logs: string[] = [];
  const logger = captureLogger(logs);
  let gatewayPool: pg.Pool;
  let workerPool: pg.Pool;
  let gateway!: Gateway;
  let workers!: Workers;
  let port = 0;
  const up = async () => {
    gatewayPool = createPool({ connectionString: tdb.url, max: 20, applicationName: 'bastion-test-gateway' });
    workerPool = createPool({ connectionString: tdb.url, max: 12, applicationName: 'bastion-test-worker' });
    workers =
      options.workers === false
        ? { running: () => true, stop: async () => {}, done: Promise.resolve() }
        : await startWorkers({ pool: workerPool, logger, concurrency: options.concurrency ?? 8, dataDir, secretKey, pollIntervalMs: 500 });
    gateway = createGateway({ pool: gatewayPool, logger, version: 'test', workersRunning: workers.running, graphql: false, secretKeys, agentTiming: options.agentTiming ?? {} });
    await gateway.ready();
    port = await gateway.listen('127.0.0.1', port);
  };
  const down = async () => {
    await gateway.close();
    await workers.stop();
    await gatewayPool.end().catch(() => {});
    await workerPool.end().catch(() => {});
  };
  await up();
  let running = true;
  const hub: InProcessHub = {
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    tdb,
    pool: tdb.pool,
    secretKey,
    secretKeys,
    get gateway() {
      return gateway;
    },
    get workers() {
      return workers;
    },
    logs,
    stop: async () => {
      if (!running) return;
      running = false;
      await down();
    },
    restart: async () => {
      if (running) await down();
      await up();
      running = true;
    },
  };
  t.teardown(() => hub.stop());
  return hub;
}

/** An enrollment token (through the real function). */
export async function enrollmentToken(pool: pg.Pool, options: { uses?: number; ttlSeconds?: number } = {}): Promise<string> {
  const { rows } = await pool.query<{ token: string }>('select token from bastion.create_enrollment_token(ttl_seconds => $1, uses => $2)', [options.ttlSeconds ?? 600, options.uses ?? 1]);
  return rows[0]?.token as string;
}

/** A `bastion agent` process. */
export interface AgentProcess {
  child: ChildProcess;
  /** Console lines so far (stdout and stderr). */
  lines: string[];
  /** Resolves with the first line (already printed or to come) matching `re`. */
  waitFor(re: RegExp, ms?: number): Promise<string>;
  /** Lines matching `re`. */
  count(re: RegExp): number;
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Spawn `bastion agent` (killed at teardown). */
export function spawnAgent(
  t: T,
  options: { hubUrl: string; dataDir: string; enrollToken?: string; name?: string; env?: Record<string, string>; args?: string[]; stdin?: string },
): AgentProcess {
  const args = [MAIN, 'agent', '--hub-url', options.hubUrl, '--data-dir', options.dataDir];
  if (options.enrollToken) args.push('--enroll-token', options.enrollToken);
  if (options.name) args.push('--name', options.name);
  args.push(...(options.args ?? []));
  const child = spawn(process.execPath, args, {
    env: { PATH: process.env.PATH ?? '', BASTION_LOG_LEVEL: 'warn', ...options.env },
    stdio: [options.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (options.stdin !== undefined) child.stdin!.end(options.stdin);
  const lines: string[] = [];
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  const onLine = (l: string) => {
    lines.push(l);
    for (const w of [...waiters]) {
      if (w.re.test(l)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
    }
  };
  for (const stream of [child.stdout!, child.stderr!]) {
    let buf = '';
    stream.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
  }
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  const proc: AgentProcess = {
    child,
    lines,
    count: (re) => lines.filter((l) => re.test(l)).length,
    waitFor: (re, ms = 30_000) => {
      const found = lines.find((l) => re.test(l));
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { re, resolve: (l: string) => (clearTimeout(timer), resolve(l)) };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`agent: no line matching ${re} within ${ms} ms; output:\n${lines.slice(-40).join('\n')}`));
        }, ms);
        waiters.push(w);
        void exited.then((code) => {
          if (!waiters.includes(w)) return;
          waiters.splice(waiters.indexOf(w), 1);
          clearTimeout(timer);
          reject(new Error(`agent exited (${code}) before a line matching ${re}; output:\n${lines.slice(-40).join('\n')}`));
        });
      });
    },
    exited,
    kill: async (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  t.teardown(() => proc.kill('SIGKILL'));
  return proc;
}

/** A `bastion hub` process on DATABASE_URL (killed at teardown). */
export interface HubProcess {
  url: string;
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Spawn `bastion hub` with DATABASE_URL on `port` (0 = any) and wait until it listens. */
export async function spawnHub(t: T, options: { databaseUrl: string; port?: number; secretKey: string; dataDir: string }): Promise<HubProcess> {
  const child = spawn(process.execPath, [MAIN, 'hub'], {
    env: {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: options.databaseUrl,
      BASTION_LISTEN: `127.0.0.1:${options.port ?? 0}`,
      BASTION_SECRET_KEY: options.secretKey,
      BASTION_DATA_DIR: options.dataDir,
      BASTION_LOG_LEVEL: 'info',
      BASTION_GRAPHIQL: 'off',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hub not ready in 60 s:\n${out}`)), 60_000);
    const onData = (d: Buffer) => {
      out += d;
      const m = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (out += d));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`hub exited with ${code} before it was ready:\n${out}`));
    });
  });
  const hub: HubProcess = {
    url,
    child,
    output: () => out,
    exited,
    stop: async (signal = 'SIGINT') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  t.teardown(() => hub.stop('SIGKILL'));
  return hub;
}

export { until } from './until.ts';

/** The status (and outcome) of a delete task. */
export async function deleteTask(pool: pg.Pool, runId: string): Promise<{ status: string; outcome: string | null; last_error_kind: string | null; last_error: string | null; attempts: number; claimed_by: string | null } | undefined> {
  const { rows } = await pool.query('select status, outcome, last_error_kind, last_error, attempts, claimed_by from bastion.artifact_delete_tasks where run_id = $1', [runId]);
  return rows[0];
}
