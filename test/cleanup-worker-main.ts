/**
 * A worker process for tests: graphile-worker running the incomplete-cleanup
 * task (worker/tasks/incomplete-cleanup.ts) against DATABASE_URL, as `bastion
 * worker` does, with knobs a test needs: BLOCK_BEFORE_REMOVE=1 makes every
 * local cleanup stop after its safety checks and wait (so a test can kill the
 * process mid-cleanup), HEARTBEAT_MS shortens heartbeats. Prints `ready` once
 * the worker runs and `blocked` when a cleanup is waiting; exits when its
 * stdin closes, so it never outlives the test.
 */
import { Logger, run } from 'graphile-worker';
import { createPool } from '../db/pool.ts';
import { INCOMPLETE_CLEANUP, incompleteCleanupTask } from '../worker/tasks/incomplete-cleanup.ts';

const url = process.env['DATABASE_URL'];
if (!url) throw new Error('DATABASE_URL is required');
const block = process.env['BLOCK_BEFORE_REMOVE'] === '1';
const pool = createPool({ connectionString: url, max: 5, applicationName: 'bastion-test-cleanup-worker' });
const runner = await run({
  pgPool: pool,
  taskList: {
    [INCOMPLETE_CLEANUP]: incompleteCleanupTask({
      heartbeatMs: Number(process.env['HEARTBEAT_MS'] ?? 10_000),
      ...(block ? { local: { beforeRemove: () => new Promise<void>(() => process.stdout.write('blocked\n')) } } : {}),
    }) as never,
  },
  noHandleSignals: true,
  logger: new Logger(() => () => {}),
  preset: { worker: { concurrentJobs: 2, pollInterval: 200 } },
});
process.stdout.write('ready\n');
process.stdin.resume();
process.stdin.on('end', () => {
  void runner.stop().finally(() => pool.end().finally(() => process.exit(0)));
});
