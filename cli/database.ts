/**
 * Where a command's database comes from: `DATABASE_URL` when set, otherwise
 * the embedded cluster of the data directory — started by `bastion hub` and
 * `bastion migrate`, joined by `bastion worker` when a hub already runs it.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { Logger } from 'pino';
import { BastionError } from '../core/errors.ts';
import { redactUrl } from '../core/redact.ts';
import { EMBEDDED_DATABASE, EMBEDDED_USER, startEmbeddedPostgres, type EmbeddedPostgres } from '../db/embedded-postgres.ts';
import { createPool } from '../db/pool.ts';
import { ConfigError, type Config } from './config.ts';

/** An open database for a command. */
export interface Database {
  pool: pg.Pool;
  /** Connection string (with credentials: never log it). */
  connectionString: string;
  /** Set when this process started an embedded cluster it must stop. */
  embedded?: EmbeddedPostgres;
  /** End the pool, then stop the embedded cluster if this process owns it. */
  close(): Promise<void>;
}

/**
 * How a command uses the embedded cluster when DATABASE_URL is unset:
 * `start` runs it and refuses when another live Bastion process already does
 * (two hubs on one data directory); `join` connects to the one a hub runs;
 * `start-or-join` joins a running one, else starts it for the command's
 * duration (migrate and operator tools).
 */
export type EmbeddedMode = 'start' | 'join' | 'start-or-join';

async function checkConnection(pool: pg.Pool, setting: string, url: string): Promise<void> {
  try {
    await pool.query('select 1');
  } catch (e) {
    const reason = ((e as Error).message || String(e)).split('\n')[0];
    throw new ConfigError(setting, `cannot connect to ${redactUrl(url)}: ${reason}`);
  }
}

/** Find the port of the embedded cluster a hub runs in `dataDir` (postmaster.pid line 4). */
async function findRunningEmbedded(dataDir: string): Promise<string | undefined> {
  try {
    const pid = await fs.readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8');
    const lines = pid.split('\n');
    process.kill(Number(lines[0]), 0);
    const port = Number(lines[3]);
    const auth = JSON.parse(await fs.readFile(path.join(dataDir, 'pg-auth.json'), 'utf8')) as { password: string };
    return `postgres://${EMBEDDED_USER}:${encodeURIComponent(auth.password)}@127.0.0.1:${port}/${EMBEDDED_DATABASE}`;
  } catch {
    return undefined;
  }
}

/** Open the database for a command (see the module comment for where it comes from). */
export async function openDatabase(config: Config, logger: Logger, mode: EmbeddedMode, applicationName: string): Promise<Database> {
  // pool.end() resolves before the server has seen every Terminate message; the
  // embedded server's shutdown then reports those sockets. Expected while closing.
  let closing = false;
  const onError = (err: Error) => {
    if (!closing) logger.warn({ err: err.message }, 'database connection error');
  };
  const end = async (pool: pg.Pool) => {
    closing = true;
    await pool.end().catch(() => {});
  };
  if (config.databaseUrl) {
    const pool = createPool({ connectionString: config.databaseUrl, applicationName, onError, max: config.workerConcurrency + 10 });
    await checkConnection(pool, 'DATABASE_URL', config.databaseUrl).catch(async (e) => {
      await pool.end().catch(() => {});
      throw e;
    });
    return { pool, connectionString: config.databaseUrl, close: () => end(pool) };
  }
  const join = async (): Promise<Database> => {
    const url = await findRunningEmbedded(config.dataDir);
    if (!url) throw new ConfigError('DATABASE_URL', `not set, and no hub is running an embedded PostgreSQL in ${config.dataDir}; start "bastion hub" first or set DATABASE_URL`);
    const pool = createPool({ connectionString: url, applicationName, onError, max: config.workerConcurrency + 10 });
    await checkConnection(pool, 'BASTION_DATA_DIR', url);
    return { pool, connectionString: url, close: () => end(pool) };
  };
  if (mode === 'join') return join();
  let embedded: EmbeddedPostgres;
  try {
    embedded = await startEmbeddedPostgres({ dataDir: config.dataDir, onLog: (m) => logger.info({ component: 'embedded-postgres' }, m) });
  } catch (e) {
    if (e instanceof BastionError && e.code === 'embedded_postgres_in_use') {
      if (mode === 'start-or-join') return join();
      throw new ConfigError('BASTION_DATA_DIR', `${config.dataDir} is in use by another Bastion process (pid ${String(e.details?.owner_pid)}); stop it, add workers with "bastion worker", or choose another data directory`);
    }
    throw new ConfigError('BASTION_DATA_DIR', `${config.dataDir}: ${(e as Error).message}`);
  }
  const pool = createPool({ connectionString: embedded.connectionString, applicationName, onError, max: config.workerConcurrency + 10 });
  return {
    pool,
    connectionString: embedded.connectionString,
    embedded,
    close: async () => {
      await end(pool);
      await embedded.stop();
    },
  };
}
