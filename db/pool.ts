/**
 * PostgreSQL connection pools. Every process (hub, worker, CLI, tests) gets
 * its pools from here so type parsing and error handling are the same
 * everywhere.
 */
import pg from 'pg';

// int8 columns hold byte counts and file counts far below 2^53: read them as
// numbers (db/codegen.ts maps int8 to number to match).
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/** Options for {@link createPool}. */
export interface PoolOptions {
  connectionString: string;
  /** Maximum connections (default 10). */
  max?: number;
  /** Shown in pg_stat_activity, so a DBA can tell the hub from a worker. */
  applicationName?: string;
  /** Called for errors of idle clients (a restarted server); without it they would crash the process. */
  onError?: (err: Error) => void;
}

/** A pool with Bastion's defaults. */
export function createPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'bastion',
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  const onError = options.onError ?? (() => {});
  pool.on('error', onError);
  // A checked-out client whose server connection dies emits 'error' on the
  // client; without a listener that would crash the process.
  pool.on('connect', (client) => client.on('error', onError));
  return pool;
}

/** Run `fn` in a transaction on one client: commit on success, roll back on error. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    const result = await fn(client);
    await client.query('commit');
    return result;
  } catch (e) {
    await client.query('rollback').catch(() => {});
    throw e;
  } finally {
    client.release();
  }
}
