/**
 * tap `before` script: one PostgreSQL server and one migrated template for
 * the whole run (see test/test-cluster.ts). Its parent is the tap process,
 * which is also the parent of every test file.
 */
import fs from 'node:fs/promises';
import { prepareServer, releaseAbandonedRuns, stateFile } from './test-cluster.ts';

await releaseAbandonedRuns();
const state = await prepareServer();
await fs.writeFile(stateFile(process.ppid), JSON.stringify(state));
