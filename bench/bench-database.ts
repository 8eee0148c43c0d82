/**
 * The scratch database a benchmark runs on: a new database on the server in
 * DATABASE_URL, or on an embedded PostgreSQL started under `work` when it is
 * unset. Both are removed by the cleanups the caller runs at exit.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../db/embedded-postgres.ts';
import { withDatabaseName } from '../db/scratch-database.ts';

/** Create the database; push what removes it (and the embedded server) onto `cleanups`; resolve with its URL. */
export async function benchDatabase(work: string, cleanups: Array<() => Promise<unknown>>, settings: Record<string, string | number>): Promise<string> {
  let serverUrl = process.env['DATABASE_URL'];
  if (!serverUrl) {
    const cluster = await startEmbeddedPostgres({ dataDir: path.join(work, 'pg'), settings });
    cleanups.push(() => cluster.stop());
    serverUrl = cluster.connectionString;
  }
  const server = serverUrl;
  const name = `bastion_bench_${randomUUID().slice(0, 8)}`;
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  cleanups.push(async () => {
    const c = new pg.Client({ connectionString: server });
    await c.connect();
    await c.query(`drop database if exists ${name} with (force)`);
    await c.end();
  });
  return withDatabaseName(server, name);
}
