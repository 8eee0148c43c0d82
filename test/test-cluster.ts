/**
 * The PostgreSQL a test run uses, shared by test/global-setup.ts,
 * test/global-teardown.ts and test/db.ts.
 *
 * One server per `tap` run: the embedded cluster (in a temporary directory)
 * unless DATABASE_URL names a server. On it, one template database migrated
 * once; every test file clones its own database from the template (~20–60 ms).
 * The run's state file is keyed by the tap process id, which the setup script
 * and every test process share as their parent, so several test runs on one
 * machine (or one checkout) never meet.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../db/embedded-postgres.ts';
import { migrate } from '../db/migrator.ts';
import { createPool } from '../db/pool.ts';
import { withDatabaseName } from '../db/scratch-database.ts';

/** What the setup script leaves for the test processes. */
export interface TestRunState {
  /** URL of a maintenance database on the server (used to create and drop databases). */
  serverUrl: string;
  /** Name of the migrated template database. */
  template: string;
  /** Present when the run started its own embedded cluster. */
  cluster?: { dataDir: string; pid: number };
}

/** Settings for throw-away test clusters: durability off, room for many pools. */
export const TEST_CLUSTER_SETTINGS = { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: 400 } as const;

/** Path of the state file of the tap run whose process id is `tapPid`. */
export function stateFile(tapPid: number): string {
  return path.join(os.tmpdir(), `bastion-test-run-${tapPid}.json`);
}

/** Read the state of this process's tap run, or undefined when not under tap's setup. */
export async function readRunState(tapPid: number = process.ppid): Promise<TestRunState | undefined> {
  try {
    return JSON.parse(await fs.readFile(stateFile(tapPid), 'utf8')) as TestRunState;
  } catch {
    return undefined;
  }
}

/** Start a server (embedded unless DATABASE_URL is set) and migrate a fresh template on it. */
export async function prepareServer(): Promise<TestRunState> {
  let serverUrl = process.env.DATABASE_URL;
  let cluster: TestRunState['cluster'];
  if (!serverUrl) {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'bastion-test-pg-'));
    const c = await startEmbeddedPostgres({ dataDir, settings: TEST_CLUSTER_SETTINGS });
    serverUrl = c.connectionString;
    cluster = { dataDir, pid: c.pid };
  }
  const template = `bastion_tpl_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${template}`);
  } finally {
    await admin.end();
  }
  const pool = createPool({ connectionString: withDatabaseName(serverUrl, template), max: 2 });
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
  return { serverUrl, template, ...(cluster ? { cluster } : {}) };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stop what {@link prepareServer} started: drop the template (external server) or stop and delete the cluster. */
export async function releaseServer(state: TestRunState): Promise<void> {
  if (state.cluster) {
    const { pid, dataDir } = state.cluster;
    if (isAlive(pid)) {
      process.kill(pid, 'SIGQUIT');
      for (let i = 0; i < 200 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 25));
    }
    await fs.rm(dataDir, { recursive: true, force: true });
    return;
  }
  const admin = new pg.Client({ connectionString: state.serverUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ datname: string }>(`select datname from pg_database where datname like 'bastion_t%'`);
    // This run's template and any test database cloned from it that a killed test left behind.
    for (const r of rows) if (r.datname === state.template || r.datname.startsWith(`${state.template}_`)) await admin.query(`drop database if exists ${r.datname} with (force)`);
  } finally {
    await admin.end();
  }
}

/** Release the servers of earlier runs that were killed before their teardown ran. */
export async function releaseAbandonedRuns(): Promise<void> {
  const dir = os.tmpdir();
  for (const name of await fs.readdir(dir)) {
    const m = /^bastion-test-run-(\d+)\.json$/.exec(name);
    if (!m || isAlive(Number(m[1]))) continue;
    const state = await readRunState(Number(m[1]));
    if (state) await releaseServer(state).catch(() => {});
    await fs.rm(path.join(dir, name), { force: true });
  }
}
