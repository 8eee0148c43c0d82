/**
 * A throw-away migrated database for developer scripts (type generation,
 * schema dump): a temporary database on `DATABASE_URL`'s server when it is
 * set, otherwise a temporary embedded cluster. Always removed afterwards.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from './embedded-postgres.ts';
import { migrate } from './migrator.ts';
import { createPool } from './pool.ts';

/** Replace the database name of a PostgreSQL URL. */
export function withDatabaseName(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = '/' + encodeURIComponent(name);
  return u.toString();
}

/** Run `fn` with the URL of a freshly migrated scratch database. */
export async function withScratchDatabase<T>(fn: (url: string) => Promise<T>): Promise<T> {
  const external = process.env.DATABASE_URL;
  if (external) {
    const name = `bastion_scratch_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: external });
    await admin.connect();
    try {
      await admin.query(`create database ${name}`);
      const url = withDatabaseName(external, name);
      try {
        const pool = createPool({ connectionString: url, max: 2 });
        try {
          await migrate(pool);
        } finally {
          await pool.end();
        }
        return await fn(url);
      } finally {
        await admin.query(`drop database if exists ${name} with (force)`);
      }
    } finally {
      await admin.end();
    }
  }
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bastion-scratch-'));
  const cluster = await startEmbeddedPostgres({ dataDir: dir, settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' } });
  try {
    const pool = createPool({ connectionString: cluster.connectionString, max: 2 });
    try {
      await migrate(pool);
    } finally {
      await pool.end();
    }
    return await fn(cluster.connectionString);
  } finally {
    await cluster.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
