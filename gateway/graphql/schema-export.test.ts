import fs from 'node:fs/promises';
import t from 'tap';
import { testDatabase } from '../../test/db.ts';
import { SCHEMA_GRAPHQL_FILE, exportSchema } from './schema-export.ts';

t.test('gateway/schema.graphql matches the schema built from the migrations (run `npm run api:schema` after a migration)', async (t) => {
  const { pool } = await testDatabase(t);
  t.equal(await exportSchema(pool), await fs.readFile(SCHEMA_GRAPHQL_FILE, 'utf8'));
});
