/**
 * Write `sql/schema.sql` from a freshly migrated scratch database.
 *
 *   npm run db:dump-schema
 */
import fs from 'node:fs/promises';
import pg from 'pg';
import { SCHEMA_FILE, dumpSchema } from './schema-dump.ts';
import { withScratchDatabase } from './scratch-database.ts';

await withScratchDatabase(async (url) => {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await fs.writeFile(SCHEMA_FILE, await dumpSchema(client));
  } finally {
    await client.end();
  }
});
console.log('wrote sql/schema.sql');
