import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import t, { type Test } from 'tap';
import { migrate, MIGRATIONS_DIR, readMigrationFiles } from './migrator.ts';
import { createPool } from './pool.ts';
import { withDatabaseName } from './scratch-database.ts';
import { readRunState } from '../test/test-cluster.ts';
import { testDatabase } from '../test/db.ts';

/** An empty database (not from the template) on the run's server. */
async function emptyDatabase(t: Test): Promise<string> {
  await testDatabase(t); // makes sure the run's server exists even when this file runs alone
  const state = await readRunState() ?? (() => { throw new Error('no server'); })();
  const name = `${state.template}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: state.serverUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: state.serverUrl });
    await c.connect();
    await c.query(`drop database if exists ${name} with (force)`);
    await c.end();
  });
  return withDatabaseName(state.serverUrl, name);
}

t.test('fresh install applies every migration and records it; a re-run is a no-op', async (t) => {
  const url = await emptyDatabase(t);
  const pool = createPool({ connectionString: url, max: 3 });
  t.teardown(() => pool.end());
  const files = await readMigrationFiles();
  const first = await migrate(pool);
  t.same(first.applied, files.map((f) => f.name));
  t.equal(first.current, files.length);
  const { rows } = await pool.query('select id, name, sha256 from bastion_private.migrations order by id');
  t.same(rows.map((r) => r.sha256), files.map((f) => f.sha256));
  const { rows: gw } = await pool.query(`select count(*)::int as n from graphile_worker.migrations`);
  t.ok(gw[0].n > 0, 'graphile-worker schema installed');
  const second = await migrate(pool);
  t.same(second.applied, [], 'nothing applied the second time');
});

t.test('five concurrent migrators: every migration applied exactly once, all succeed', async (t) => {
  const url = await emptyDatabase(t);
  const pools = Array.from({ length: 5 }, () => createPool({ connectionString: url, max: 2 }));
  t.teardown(() => Promise.all(pools.map((p) => p.end())));
  const results = await Promise.all(pools.map((p) => migrate(p)));
  const applied = results.flatMap((r) => r.applied);
  const files = await readMigrationFiles();
  t.same([...applied].sort(), files.map((f) => f.name).sort(), 'each file applied by exactly one process');
  const { rows } = await pools[0]!.query('select count(*)::int as n from bastion_private.migrations');
  t.equal(rows[0].n, files.length);
});

t.test('a changed, applied migration is refused; files out of sequence are refused', async (t) => {
  const url = await emptyDatabase(t);
  const pool = createPool({ connectionString: url, max: 2 });
  t.teardown(() => pool.end());
  const dir = t.testdir();
  for (const f of await fs.readdir(MIGRATIONS_DIR)) await fs.copyFile(path.join(MIGRATIONS_DIR, f), path.join(dir, f));
  await migrate(pool, { dir });
  const first = (await fs.readdir(dir)).sort()[0]!;
  await fs.appendFile(path.join(dir, first), '\n-- edited after the fact\n');
  await t.rejects(migrate(pool, { dir }), { code: 'migration_changed' });

  const gapDir = t.testdir({ '0001_a.sql': 'select 1;', '0003_c.sql': 'select 1;' });
  await t.rejects(readMigrationFiles(gapDir), { code: 'migration_failed', message: /out of sequence/ });
  const badName = t.testdir({ '0001_A-B.sql': 'select 1;' });
  await t.rejects(readMigrationFiles(badName), { code: 'migration_failed', message: /does not match/ });
});

t.test('a failing migration rolls back completely and names the file', async (t) => {
  const url = await emptyDatabase(t);
  const pool = createPool({ connectionString: url, max: 2 });
  t.teardown(() => pool.end());
  const dir = t.testdir({ '0001_ok.sql': 'create table public.t1 (x int);', '0002_broken.sql': 'create table public.t2 (x int);\nselect * from nowhere;' });
  await t.rejects(migrate(pool, { dir }), { code: 'migration_failed', message: /0002_broken\.sql failed/ });
  const { rows } = await pool.query(`select to_regclass('public.t1')::text as t1, to_regclass('public.t2')::text as t2`);
  t.same(rows[0], { t1: 't1', t2: null }, 'first file kept, second rolled back');
  const { rows: m } = await pool.query('select name from bastion_private.migrations');
  t.same(m.map((r) => r.name), ['0001_ok.sql']);
});

t.test('code older than the database is refused', async (t) => {
  const url = await emptyDatabase(t);
  const pool = createPool({ connectionString: url, max: 2 });
  t.teardown(() => pool.end());
  await migrate(pool, { dir: t.testdir({ '0001_a.sql': 'select 1;', '0002_b.sql': 'select 1;' }) });
  await t.rejects(migrate(pool, { dir: t.testdir({ '0001_a.sql': 'select 1;' }) }), { code: 'migration_failed', message: /run a newer Bastion/ });
});
