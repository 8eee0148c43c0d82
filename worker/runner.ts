/**
 * Starts graphile-worker for `bastion hub` and `bastion worker`: the task
 * list, the crontab and the preset in one place.
 *
 * Any number of processes may run this at once. graphile-worker gives each
 * cron slot to one of them (it records known crontab runs in its own table),
 * and our tasks are written for concurrent execution (claims, advisory locks).
 *
 * Shutdown is graceful: `stop()` stops taking jobs and waits for running ones;
 * after `gracefulShutdownAbortTimeout` their AbortSignal fires so long tasks
 * (backups) can stop cooperatively and record why.
 */
import { run, type Runner, type TaskList } from 'graphile-worker';
import type pg from 'pg';
import type { Logger } from 'pino';
import { workerLogger } from './logger.ts';
import { createTaskContext, type RunTiming, type TaskContext } from './task-context.ts';
import { resolveWebdavCredentials } from '../engine/secrets/secret-store.ts';
import { AGENT_WATCHDOG, agentWatchdog } from './tasks/agent-watchdog.ts';
import { ARTIFACT_DELETE, artifactDeleteTask } from './tasks/artifact-delete.ts';
import { INCOMPLETE_CLEANUP, incompleteCleanupTask } from './tasks/incomplete-cleanup.ts';
import { INCOMPLETE_CLEANUP_RECONCILE, incompleteCleanupReconcile } from './tasks/incomplete-cleanup-reconcile.ts';
import { PRUNE_AUTH_STATE, pruneAuthState } from './tasks/prune-auth-state.ts';
import { PRUNE_RUN_HISTORY, pruneRunHistory } from './tasks/prune-run-history.ts';
import { QUEUE_WATCHDOG, queueWatchdog } from './tasks/queue-watchdog.ts';
import { RETENTION_TICK, retentionTick } from './tasks/retention-tick.ts';
import { makeRunBackupTask, RUN_BACKUP } from './tasks/run-backup.ts';
import { makeRunWatchdogTask, RUN_WATCHDOG } from './tasks/run-watchdog.ts';
import { SCHEDULE_RUNS, scheduleRuns } from './tasks/schedule-runs.ts';

/** Worker settings (validated by the CLI config). */
export interface WorkerOptions {
  pool: pg.Pool;
  logger: Logger;
  /** Jobs run at once by this process. */
  concurrency: number;
  /** Milliseconds between polls for jobs scheduled in the future (new jobs arrive by LISTEN/NOTIFY). */
  pollIntervalMs?: number;
  /** How long a graceful stop waits before aborting running tasks (default 30 s). */
  shutdownAbortTimeoutMs?: number;
  /** The tasks to run (default: {@link taskList}); embedders and tests may extend it. */
  tasks?: TaskList;
  /** Data directory of this process: run staging and the secret key file (default ./data, like the CLI). */
  dataDir?: string;
  /** BASTION_SECRET_KEY (base64), when set; otherwise `<dataDir>/secret.key`. */
  secretKey?: string | undefined;
  /** Run heartbeat / progress / watchdog timing (tests shorten it). */
  timing?: Partial<RunTiming>;
}

/** A running worker pool. */
export interface Workers {
  /** True until the runner stops (cleanly or by a fatal error). */
  running(): boolean;
  /** Graceful stop: wait for running tasks (they are aborted after the timeout). Idempotent. */
  stop(): Promise<void>;
  /** Resolves when the runner has stopped. */
  readonly done: Promise<void>;
}

/**
 * Every task this build knows. Tasks that execute runs need the process
 * context (data directory, secret key); without one, `run-backup` is left
 * out, which only embedders that never execute runs should do.
 */
export function taskList(ctx?: TaskContext): TaskList {
  return {
    [PRUNE_RUN_HISTORY]: pruneRunHistory as TaskList[string],
    [PRUNE_AUTH_STATE]: pruneAuthState as TaskList[string],
    [SCHEDULE_RUNS]: scheduleRuns as TaskList[string],
    [RUN_WATCHDOG]: makeRunWatchdogTask(ctx) as TaskList[string],
    ...(ctx ? { [RUN_BACKUP]: makeRunBackupTask(ctx) as TaskList[string] } : {}),
    // Without a context WebDAV deletes fail with a config error (no secret store); local ones work.
    [ARTIFACT_DELETE]: artifactDeleteTask(ctx ? { resolveWebdavCredentials: (nodeId, name) => resolveWebdavCredentials(ctx.pool, ctx.secrets, nodeId, name) } : {}) as TaskList[string],
    [QUEUE_WATCHDOG]: queueWatchdog as TaskList[string],
    [AGENT_WATCHDOG]: agentWatchdog as TaskList[string],
    [RETENTION_TICK]: retentionTick as TaskList[string],
    // Like deletes: WebDAV cleanups need the secret store of the context.
    [INCOMPLETE_CLEANUP]: incompleteCleanupTask(ctx ? { resolveWebdavCredentials: (nodeId, name) => resolveWebdavCredentials(ctx.pool, ctx.secrets, nodeId, name) } : {}) as TaskList[string],
    [INCOMPLETE_CLEANUP_RECONCILE]: incompleteCleanupReconcile as TaskList[string],
  };
}

/**
 * Recurring tasks. `jobKey` + `preserve_run_at` keeps one pending instance
 * even when a slot is backfilled; `max=1` means a failed tick is not retried
 * (the next tick does the same work).
 */
export function crontab(): string {
  return [
    `0 * * * * ${PRUNE_RUN_HISTORY} ?max=1&jobKey=${PRUNE_RUN_HISTORY}&jobKeyMode=preserve_run_at`,
    // Hourly: expired sessions and idle login-throttle rows.
    `30 * * * * ${PRUNE_AUTH_STATE} ?max=1&jobKey=${PRUNE_AUTH_STATE}&jobKeyMode=preserve_run_at`,
    // Every minute: the scheduler's resolution is the minute (5-field cron).
    `* * * * * ${SCHEDULE_RUNS} ?max=1&jobKey=${SCHEDULE_RUNS}&jobKeyMode=preserve_run_at`,
    // Every minute: with 45 s staleness a dead worker's run fails within 2 minutes.
    `* * * * * ${RUN_WATCHDOG} ?max=1&jobKey=${RUN_WATCHDOG}&jobKeyMode=preserve_run_at`,
    // Every minute: delete/cleanup tasks of a dead worker are retrying again within 40 s + 60 s.
    `* * * * * ${QUEUE_WATCHDOG} ?max=1&jobKey=${QUEUE_WATCHDOG}&jobKeyMode=preserve_run_at`,
    // Every minute: work in flight on agents that stayed away (a crashed gateway's agents included) fails after 25 s.
    `* * * * * ${AGENT_WATCHDOG} ?max=1&jobKey=${AGENT_WATCHDOG}&jobKeyMode=preserve_run_at`,
    // Every minute, but the work follows settings.retention_schedule (hourly by
    // default): a minute's tick does the current round's unprocessed jobs, if any.
    `* * * * * ${RETENTION_TICK} ?max=1&jobKey=${RETENTION_TICK}&jobKeyMode=preserve_run_at`,
    // Every 10 minutes: runs that never completed get their cleanup task
    // (bounded batches; off when settings.incomplete_cleanup_days is 0).
    `*/10 * * * * ${INCOMPLETE_CLEANUP_RECONCILE} ?max=1&jobKey=${INCOMPLETE_CLEANUP_RECONCILE}&jobKeyMode=preserve_run_at`,
  ].join('\n');
}

/**
 * graphile-worker settings of every Bastion worker process; benchmarks
 * (bench/delete.ts) use the same, so their figures are production's.
 */
export function workerPreset(options: { concurrency: number; pollIntervalMs?: number | undefined; shutdownAbortTimeoutMs?: number | undefined }) {
  return {
    concurrentJobs: options.concurrency,
    pollInterval: options.pollIntervalMs ?? 1000,
    gracefulShutdownAbortTimeout: options.shutdownAbortTimeoutMs ?? 30_000,
    // With the default (-1) a finished job is completed by a query nobody
    // awaits, so a graceful stop can return (and the process exit) while
    // the job and its named queue are still locked — for 4 hours, holding
    // back every later run of that backup job. Measured here: a run
    // requeued at shutdown stayed blocked in 2 of 5 suite runs. A batcher with
    // delay 0 completes at once and is flushed by the stop.
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  };
}

/** Start the workers. */
export async function startWorkers(options: WorkerOptions): Promise<Workers> {
  const ctx = createTaskContext({ pool: options.pool, logger: options.logger, dataDir: options.dataDir ?? 'data', secretKey: options.secretKey, timing: options.timing });
  const runner: Runner = await run({
    pgPool: options.pool,
    taskList: options.tasks ?? taskList(ctx),
    crontab: crontab(),
    noHandleSignals: true,
    logger: workerLogger(options.logger),
    preset: {
      worker: workerPreset({ concurrency: options.concurrency, pollIntervalMs: options.pollIntervalMs, shutdownAbortTimeoutMs: options.shutdownAbortTimeoutMs }),
    },
  });
  let isRunning = true;
  const done = runner.promise.then(
    () => {
      isRunning = false;
    },
    (err: unknown) => {
      isRunning = false;
      options.logger.error({ err }, 'worker runner stopped with an error');
    },
  );
  let stopping: Promise<void> | undefined;
  return {
    running: () => isRunning,
    done,
    stop: () =>
      (stopping ??= (async () => {
        if (isRunning) await runner.stop().catch((err: unknown) => options.logger.warn({ err }, 'worker stop reported an error'));
        await done;
      })()),
  };
}
