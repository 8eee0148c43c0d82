/**
 * The GraphQL schema as SDL, for `gateway/schema.graphql` (committed, so a
 * reviewer sees every API change as a diff, like sql/schema.sql for the
 * database). Types and fields are sorted; the output depends only on the
 * migrations and the preset. A test fails when the committed file is stale.
 *
 *   npm run api:schema
 */
import '../graphile-env.ts';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { pino } from 'pino';
import { lexicographicSortSchema, printSchema } from 'graphql';
import { makeSchema } from 'postgraphile';
import { makeBastionPreset } from './preset.ts';

/** Path of the committed schema. */
export const SCHEMA_GRAPHQL_FILE = fileURLToPath(new URL('../schema.graphql', import.meta.url));

/** Build the schema from the database behind `pool` and print it. */
export async function exportSchema(pool: pg.Pool): Promise<string> {
  const preset = makeBastionPreset({ pool, logger: pino({ level: 'silent' }), graphiql: false });
  const { schema } = await makeSchema(preset);
  const services = (preset.pgServices ?? []) as unknown as Array<{ release?: () => unknown }>;
  for (const s of services) await Promise.resolve(s.release?.()).catch(() => {});
  return printSchema(lexicographicSortSchema(schema)) + '\n';
}
