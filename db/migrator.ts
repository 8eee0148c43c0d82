/**
 * The migrator: graphile-worker's schema first (our SQL functions schedule
 * jobs with graphile_worker.add_job), then every `sql/migrations/NNNN_name.sql`
 * not applied yet, in order, each in its own transaction, recorded in
 * `bastion_private.migrations` with the file's SHA-256.
 *
 * Any number of processes may migrate at once (several hubs and workers
 * starting together): a session advisory lock lets one apply while the others
 * wait, then find nothing left to do. Migrations are forward-only; changing a
 * file that was already applied is refused, as is running code older than the
 * database.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runMigrations } from 'graphile-worker';
import type pg from 'pg';
import { BastionError } from '../core/errors.ts';

/** Directory of the numbered migration files. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../sql/migrations/', import.meta.url));

/** Arbitrary constant identifying "Bastion migrates this database" among advisory locks. */
const MIGRATION_LOCK_KEY = 7_201_955_012_001n;

const FILE_RE = /^(\d{4})_([a-z0-9_]+)\.sql$/;

/** One migration file. */
export interface MigrationFile {
  id: number;
  name: string;
  sql: string;
  sha256: string;
}

/** What a migrate call did. */
export interface MigrateResult {
  /** Names of the files applied by this call (empty when the database was current). */
  applied: string[];
  /** Highest migration id now in the database. */
  current: number;
}

/** Read and check the migration files: contiguous ids from 1, no duplicates. */
export async function readMigrationFiles(dir: string = MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const names = (await fs.readdir(dir)).filter((n) => n.endsWith('.sql')).sort();
  const files: MigrationFile[] = [];
  for (const name of names) {
    const m = FILE_RE.exec(name);
    if (!m) throw new BastionError('migration_failed', `migration file ${name} does not match NNNN_snake_name.sql`);
    const id = Number(m[1]);
    if (id !== files.length + 1) throw new BastionError('migration_failed', `migration ${name} is out of sequence: expected ${String(files.length + 1).padStart(4, '0')}_*.sql`);
    const sql = await fs.readFile(path.join(dir, name), 'utf8');
    files.push({ id, name, sql, sha256: createHash('sha256').update(sql).digest('hex') });
  }
  return files;
}

/** Minimal logger the migrator needs. */
export interface MigrateLogger {
  info(obj: object, msg: string): void;
}

/**
 * Bring the database up to date. Safe to call concurrently from many
 * processes; returns what this call applied.
 */
export async function migrate(pool: pg.Pool, options: { logger?: MigrateLogger; dir?: string } = {}): Promise<MigrateResult> {
  const files = await readMigrationFiles(options.dir);
  const client = await pool.connect();
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
    try {
      await runMigrations({ pgPool: pool, logger: undefined });
      await client.query(`
        create schema if not exists bastion_private;
        create table if not exists bastion_private.migrations (
          id integer primary key,
          name text not null,
          sha256 text not null,
          applied_at timestamptz not null default now()
        );`);
      const { rows } = await client.query<{ id: number; name: string; sha256: string }>('select id, name, sha256 from bastion_private.migrations order by id');
      for (const row of rows) {
        const file = files[row.id - 1];
        if (!file) {
          throw new BastionError('migration_failed', `the database is at migration ${row.id} (${row.name}) but this build only knows migrations up to ${files.length}; run a newer Bastion`);
        }
        if (file.sha256 !== row.sha256) {
          throw new BastionError('migration_changed', `migration ${file.name} was changed after it was applied; migrations are forward-only: revert the edit and add a new migration`);
        }
      }
      const applied: string[] = [];
      for (const file of files.slice(rows.length)) {
        const started = Date.now();
        try {
          await client.query('begin');
          await client.query(file.sql);
          await client.query('insert into bastion_private.migrations (id, name, sha256) values ($1, $2, $3)', [file.id, file.name, file.sha256]);
          await client.query('commit');
        } catch (cause) {
          await client.query('rollback').catch(() => {});
          const e = cause as { message?: string; position?: string };
          const where = e.position ? ` at character ${e.position}` : '';
          throw new BastionError('migration_failed', `migration ${file.name} failed${where}: ${e.message ?? String(cause)}`, { cause });
        }
        options.logger?.info({ migration: file.name, ms: Date.now() - started }, 'migration applied');
        applied.push(file.name);
      }
      return { applied, current: files.length };
    } finally {
      await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY.toString()]).catch(() => {});
    }
  } finally {
    client.release();
  }
}

/** Migration state for readiness checks: is the database exactly at this build's latest migration? */
export async function migrationStatus(pool: pg.Pool, dir?: string): Promise<{ current: number; expected: number }> {
  const expected = (await readMigrationFiles(dir)).length;
  const { rows: exists } = await pool.query<{ t: string | null }>(`select to_regclass('bastion_private.migrations')::text as t`);
  if (!exists[0]?.t) return { current: 0, expected };
  const { rows } = await pool.query<{ max: number | null }>('select max(id) as max from bastion_private.migrations');
  return { current: rows[0]?.max ?? 0, expected };
}
