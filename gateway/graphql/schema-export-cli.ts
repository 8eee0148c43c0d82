/**
 * Write `gateway/schema.graphql` from a freshly migrated scratch database,
 * and the REST route table of docs/api.md from gateway/rest/routes.ts.
 *
 *   npm run api:schema
 */
import fs from 'node:fs/promises';
import { API_DOC_FILE, renderRouteTable, withRouteTable } from '../rest/route-docs.ts';
import { REST_ROUTES } from '../rest/routes.ts';
import { createPool } from '../../db/pool.ts';
import { withScratchDatabase } from '../../db/scratch-database.ts';
import { SCHEMA_GRAPHQL_FILE, exportSchema } from './schema-export.ts';

await withScratchDatabase(async (url) => {
  const pool = createPool({ connectionString: url, max: 4 });
  try {
    await fs.writeFile(SCHEMA_GRAPHQL_FILE, await exportSchema(pool));
  } finally {
    await pool.end();
  }
});
console.log('wrote gateway/schema.graphql');
await fs.writeFile(API_DOC_FILE, withRouteTable(await fs.readFile(API_DOC_FILE, 'utf8'), renderRouteTable(REST_ROUTES)));
console.log('wrote the route table of docs/api.md');
