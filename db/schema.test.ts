import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { testDatabase } from '../test/db.ts';
import { generateTypes, TYPES_FILE } from './codegen.ts';
import { dumpSchema, SCHEMA_FILE } from './schema-dump.ts';

t.test('sql/schema.sql matches the migrated database (run `npm run db:dump-schema` after a migration)', async (t) => {
  const tdb = await testDatabase(t);
  const client = await tdb.pool.connect();
  try {
    const live = await dumpSchema(client);
    const committed = await fs.readFile(SCHEMA_FILE, 'utf8');
    t.equal(live, committed);
  } finally {
    client.release();
  }
});

t.test('db/types.ts matches the migrated database (run `npm run db:codegen` after a migration)', async (t) => {
  const tdb = await testDatabase(t);
  const out = path.join(os.tmpdir(), `bastion-types-check-${process.pid}.ts`);
  t.teardown(() => fs.rm(out, { force: true }));
  await generateTypes(tdb.url, out);
  t.equal(await fs.readFile(out, 'utf8'), await fs.readFile(TYPES_FILE, 'utf8'));
});

t.test('every table and column of the Bastion schemas has a comment (DBAs read them)', async (t) => {
  const tdb = await testDatabase(t);
  const { rows } = await tdb.pool.query<{ what: string }>(`
    select format('table %I.%I', n.nspname, c.relname) as what
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname in ('bastion', 'bastion_private') and c.relkind in ('r', 'p', 'v')
       and c.relname <> 'migrations' and obj_description(c.oid, 'pg_class') is null
    union all
    select format('column %I.%I.%I', n.nspname, c.relname, a.attname)
      from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
     where n.nspname in ('bastion', 'bastion_private') and c.relkind in ('r', 'p', 'v') and c.relname <> 'migrations'
       and a.attnum > 0 and not a.attisdropped and col_description(c.oid, a.attnum) is null
    union all
    select format('function %I.%I', n.nspname, p.proname)
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname in ('bastion', 'bastion_private') and obj_description(p.oid, 'pg_proc') is null`);
  t.same(rows.map((r) => r.what), [], 'nothing without a comment');
});

t.test('no Bastion function is executable by PUBLIC; every bastion table has row-level security', async (t) => {
  const tdb = await testDatabase(t);
  const { rows: fns } = await tdb.pool.query<{ f: string }>(`
    select format('%I.%I', n.nspname, p.proname) as f
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname in ('bastion', 'bastion_private') and has_function_privilege('public', p.oid, 'execute')`);
  t.same(fns.map((r) => r.f), []);
  const { rows: tables } = await tdb.pool.query<{ t: string }>(`
    select c.relname as t from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'bastion' and c.relkind = 'r' and not c.relrowsecurity`);
  t.same(tables.map((r) => r.t), []);
});

t.test('application roles: viewers read but cannot call admin functions', async (t) => {
  const tdb = await testDatabase(t);
  const c = await tdb.pool.connect();
  t.teardown(() => c.release());
  await c.query('begin');
  await c.query('set local role bastion_viewer');
  const { rows } = await c.query('select count(*)::int as n from bastion.settings');
  t.equal(rows[0].n, 1, 'viewer reads settings');
  await t.rejects(c.query('select bastion.prune_run_history(10)'), { code: '42501' });
  await c.query('rollback');
  await c.query('begin');
  await c.query('set local role bastion_admin');
  const r = await c.query('select bastion.prune_run_history(10) as n');
  t.equal(r.rows[0].n, 0, 'admin may prune');
  await c.query('rollback');
  await c.query('begin');
  await c.query('set local role bastion_viewer');
  await t.rejects(c.query(`insert into bastion.jobs (name, spec) values ('x', '{}')`), { code: '42501' }, 'tables are read-only for application roles');
  await c.query('rollback');
});
