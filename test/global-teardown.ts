/** tap `after` script: release this run's server (test/test-cluster.ts). */
import fs from 'node:fs/promises';
import { readRunState, releaseServer, stateFile } from './test-cluster.ts';

const state = await readRunState(process.ppid);
if (state) {
  await releaseServer(state);
  await fs.rm(stateFile(process.ppid), { force: true });
}
