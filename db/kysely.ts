/**
 * The kysely instance: typed queries over the same pg pool. Types come from
 * `db/types.ts`, generated from the migrated schema by `npm run db:codegen`
 * (a test fails when they are stale).
 */
import { Kysely, PostgresDialect } from 'kysely';
import type pg from 'pg';
import type { DB } from './types.ts';

/** Typed query builder for Bastion's schemas (tables are named `bastion.jobs`, `bastion_private.sessions`, …). */
export type Db = Kysely<DB>;

/** Build a Kysely instance on an existing pool (the pool stays owned by the caller). */
export function createDb(pool: pg.Pool): Db {
  return new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
}
