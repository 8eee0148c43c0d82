/**
 * A worker process for tests: graphile-worker running one queue's task
 * (QUEUE = artifact-delete or incomplete-cleanup; worker/tasks/) against
 * DATABASE_URL, as `bastion worker` does, with knobs a test needs:
 * BLOCK_BEFORE_REMOVE=1 makes every local removal stop after its safety
 * checks and wait (so a test can kill the process in the middle of it),
 * HEARTBEAT_MS shortens heartbeats. Prints `ready` once the worker runs and
 * `blocked` when a removal is waiting; exits when its stdin closes, so it
 * never outlives the test.
 */
import { Logger, run } from 'graphile-worker';
import { createPool } from '../db/pool.ts';
import { ARTIFACT_DELETE, artifactDeleteTask } from '../worker/tasks/artifact-delete.ts';
import { INCOMPLETE_CLEANUP, incompleteCleanupTask } from '../worker/tasks/incomplete-cleanup.ts';

const url = process.env['DATABASE_URL'];
if (!url) throw new Error('DATABASE_URL is required');
const queue = process.env['QUEUE'];
if (queue !== ARTIFACT_DELETE && queue !== INCOMPLETE_CLEANUP) throw new Error(`QUEUE must be ${ARTIFACT_DELETE} or ${INCOMPLETE_CLEANUP}`);
const options = {
  heartbeatMs: Number(process.env['HEARTBEAT_MS'] ?? 10_000),
  ...(process.env['BLOCK_BEFORE_REMOVE'] === '1' ? { local: { beforeRemove: () => new Promise<void>(() => process.stdout.write('blocked\n')) } } : {}),
};
const pool = createPool({ connectionString: url, max: 5, applicationName: `bastion-test-${queue}-worker` });
const runner = await run({
  pgPool: pool,
  taskList: { [queue]: (queue === ARTIFACT_DELETE ? artifactDeleteTask(options) : incompleteCleanupTask(options)) as never },
  noHandleSignals: true,
  logger: new Logger(() => () => {}),
  preset: { worker: { concurrentJobs: 2, pollInterval: 200 } },
});
process.stdout.write('ready\n');
process.stdin.resume();
process.stdin.on('end', () => {
  void runner.stop().finally(() => pool.end().finally(() => process.exit(0)));
});
