/**
 * A fresh database per test file, cloned from the run's migrated template
 * (test/test-cluster.ts), dropped when the test file's root test ends.
 *
 *   const tdb = await testDatabase(t);
 *   await tdb.pool.query(…);  tdb.db.selectFrom('bastion.jobs')…
 *
 * Run a test file on its own (`npm exec -- node some.test.ts`) and it starts a
 * private server for itself instead.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import tap from 'tap';
import { createDb, type Db } from '../db/kysely.ts';
import { createPool } from '../db/pool.ts';
import { withDatabaseName } from '../db/scratch-database.ts';
import { prepareServer, readRunState, releaseServer, type TestRunState } from './test-cluster.ts';

/** A test file's own database. */
export interface TestDatabase {
  name: string;
  /** Connection URL (embedded owner credentials; test use only). */
  url: string;
  pool: pg.Pool;
  db: Db;
}

let privateServer: Promise<TestRunState> | undefined;

async function runState(): Promise<TestRunState> {
  const shared = await readRunState();
  if (shared) return shared;
  privateServer ??= prepareServer().then((s) => {
    tap.teardown(() => releaseServer(s));
    return s;
  });
  return privateServer;
}

/** Create (by cloning the template) a database for this test file. */
export async function testDatabase(t: { teardown(fn: () => unknown): void }, options: { poolMax?: number } = {}): Promise<TestDatabase> {
  const state = await runState();
  const name = `${state.template}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: state.serverUrl });
  await admin.connect();
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.query(`create database ${name} template ${state.template}`);
        break;
      } catch (e) {
        // "source database is being accessed by other users": another clone is in progress.
        if ((e as { code?: string }).code !== '55006' || attempt >= 50) throw e;
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
      }
    }
  } finally {
    await admin.end();
  }
  const url = withDatabaseName(state.serverUrl, name);
  const pool = createPool({ connectionString: url, max: options.poolMax ?? 10, applicationName: 'bastion-test' });
  const db = createDb(pool);
  t.teardown(async () => {
    await pool.end().catch(() => {});
    const c = new pg.Client({ connectionString: state.serverUrl });
    await c.connect();
    try {
      await c.query(`drop database if exists ${name} with (force)`);
    } finally {
      await c.end();
    }
  });
  return { name, url, pool, db };
}
