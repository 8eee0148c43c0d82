/**
 * Workers for the queue tests (artifact deletes, incomplete cleanups): an
 * in-process graphile-worker pool running one task, and a separate worker
 * process (test/queue-worker-main.ts) a test can SIGKILL in the middle of an
 * attempt.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Logger, run, type Runner, type Task } from 'graphile-worker';
import type pg from 'pg';
import { until } from './until.ts';

type Teardown = { teardown(fn: () => unknown): void };

/** An in-process worker pool running only `task` as `identifier`; stopped at teardown. */
export async function startQueueWorker(t: Teardown, pool: pg.Pool, identifier: string, task: Task<never>): Promise<Runner> {
  const runner = await run({
    pgPool: pool,
    taskList: { [identifier]: task as never },
    noHandleSignals: true,
    logger: new Logger(() => () => {}),
    preset: { worker: { concurrentJobs: 4, pollInterval: 100 } },
  });
  t.teardown(() => runner.stop());
  return runner;
}

const WORKER_MAIN = fileURLToPath(new URL('./queue-worker-main.ts', import.meta.url));

/** A worker process running `queue` against `url` (env: BLOCK_BEFORE_REMOVE, HEARTBEAT_MS); SIGKILLed at teardown if still alive. */
export function spawnQueueWorker(t: Teardown, url: string, queue: 'artifact-delete' | 'incomplete-cleanup', env: Record<string, string>): { child: ChildProcess; lines: string[]; waitFor(line: string): Promise<void> } {
  const child = spawn(process.execPath, [WORKER_MAIN], { env: { ...process.env, DATABASE_URL: url, QUEUE: queue, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let err = '';
  child.stdout!.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return {
    child,
    lines,
    waitFor: (line) => until(async () => lines.includes(line) || (child.exitCode !== null ? Promise.reject(new Error(`worker exited: ${err}`)) : false), `worker to print ${line} (stderr: ${err.slice(-500)})`, 60_000).then(() => undefined),
  };
}
