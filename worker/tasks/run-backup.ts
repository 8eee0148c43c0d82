/**
 * Executes one queued run (graphile-worker job `run-backup`, key
 * `run-backup:<run_id>`, queue `run-backup:<job_id>`):
 *
 * 1. load the run and its job; anything but `queued` means a repeated or
 *    stale delivery, which ends quietly;
 * 2. validate the job's spec with zod (`invalid_spec` fails the run, naming
 *    the field) and pick the executor of the run's node. A run on an agent is
 *    dispatched instead (bastion_private.agent_dispatch_run, sql/migrations/
 *    0007): started and put in the agent's outbox in one transaction, and
 *    this task returns at once — the agent executes, its progress keeps the
 *    run alive through the gateway, its result ends the run. An agent that is
 *    not connected: a scheduled run fails with `agent_offline` at its slot; a
 *    manual run waits queued (re-checked every 10 minutes and at once when
 *    the agent connects; failed after 24 hours). See docs/agents.md;
 * 3. start the run with the target snapshot built from the spec (WebDAV URL
 *    redacted, no credentials);
 * 4. execute with a heartbeat every 10 s and a progress event at most once a
 *    second;
 * 5. success → summary, complete event and the snapshot index row in one
 *    transaction; failure → a stable error code and one clean line.
 *
 * Shutdown (graphile-worker's abortSignal fires after the graceful timeout):
 * the run goes back to `queued` and its job is queued again; the next
 * attempt resumes the same run directory, skipping what is already stored.
 * We chose this over failing with `worker_shutdown` because a rolling restart
 * should delay backups, not fail them. A run the watchdog failed meanwhile
 * (heartbeat answered "not running") stops writing and ends quietly.
 */
import type { Task } from 'graphile-worker';
import { z } from 'zod';
import { BastionError } from '../../core/errors.ts';
import { HUB_NODE_ID, isUuid } from '../../core/ids.ts';
import { parseJobSpec } from '../../core/job-input.ts';
import type { JobSpec } from '../../core/job-spec.ts';
import { makeTargetSnapshot } from '../../core/target-snapshot.ts';
import { dispatchAgentRun } from '../../db/queries/agents.ts';
import { failRun, finishRunSuccess, heartbeatRun, requeueRun, startRun, type RunRow } from '../../db/queries/runs.ts';
import { selectExecutor, type RunExecutor, type RunResult } from '../../engine/backup/executor.ts';
import { describeRunFailure } from '../../engine/backup/run-error.ts';
import { RunProgress } from '../../engine/backup/run-progress.ts';
import type { TaskContext } from '../task-context.ts';

/** Task identifier (also this file's name). */
export const RUN_BACKUP = 'run-backup';

declare global {
  namespace GraphileWorker {
    interface Tasks {
      'run-backup': { run_id: string };
    }
  }
}

const payloadSchema = z.object({ run_id: z.string().refine(isUuid, 'must be a run UUID') });

/** How one execution ended (for logs and tests); `dispatched` and `waiting` are agent runs (handed over, or waiting for the agent). */
export type RunOutcome = 'success' | 'failed' | 'requeued' | 'skipped' | 'lost' | 'dispatched' | 'waiting';

function isCode(err: unknown, code: string): boolean {
  return err instanceof BastionError && err.code === code;
}

/** Record a failure; a run that already ended (watchdog) is left alone. */
async function recordFailure(ctx: TaskContext, runId: string, err: unknown, secrets: readonly string[]): Promise<RunOutcome> {
  const f = describeRunFailure(err, secrets);
  try {
    await failRun(ctx.pool, runId, f.code, f.message, f.fields);
  } catch (e) {
    if (isCode(e, 'run_not_running')) return 'lost';
    throw e;
  }
  ctx.logger.warn({ run_id: runId, error_code: f.code, error: f.message }, 'run failed');
  return 'failed';
}

/** The summary stored on a successful run (runs.summary). */
function summaryOf(result: RunResult, nodeId: string): Record<string, unknown> {
  return { ...result, executor_node_id: nodeId };
}

/**
 * Execute run `runId` to its end (or back to the queue on shutdown). Throws
 * only when the database itself fails, so graphile-worker retries the
 * delivery; every other problem is recorded on the run.
 */
export async function executeRun(ctx: TaskContext, runId: string, shutdown?: AbortSignal): Promise<RunOutcome> {
  const log = ctx.logger.child({ run_id: runId });
  const { rows } = await ctx.pool.query<{ status: string; node_id: string; job_id: string; spec: unknown }>(
    'select r.status, r.node_id, r.job_id, j.spec from bastion.runs r join bastion.jobs j on j.id = r.job_id where r.id = $1',
    [runId],
  );
  const row = rows[0];
  if (!row) {
    log.warn('run-backup: the run does not exist (deleted); nothing to do');
    return 'skipped';
  }
  if (row.status !== 'queued') {
    log.info({ status: row.status }, 'run-backup: the run is not queued (repeated delivery); nothing to do');
    return 'skipped';
  }

  let spec: JobSpec;
  let executor: RunExecutor;
  try {
    spec = parseJobSpec(row.spec);
  } catch (err) {
    return recordFailure(ctx, runId, err, []);
  }
  if (row.node_id !== HUB_NODE_ID) {
    try {
      return await dispatchToAgent(ctx, runId, row.node_id, spec);
    } catch (err) {
      if (err instanceof BastionError && (err.code === 'target_changed' || err.code === 'invalid_input')) return recordFailure(ctx, runId, err, []);
      throw err;
    }
  }
  try {
    executor = selectExecutor(row.node_id, ctx);
  } catch (err) {
    return recordFailure(ctx, runId, err, []);
  }

  let run: RunRow | undefined;
  try {
    run = await startRun(ctx.pool, runId, makeTargetSnapshot(row.node_id, spec.target));
  } catch (err) {
    if (err instanceof BastionError && (err.code === 'target_changed' || err.code === 'invalid_input')) return recordFailure(ctx, runId, err, []);
    throw err;
  }
  if (!run) {
    log.info('run-backup: the run was claimed elsewhere or its job was archived; nothing to do');
    return 'skipped';
  }
  log.info({ job_id: row.job_id, node_id: row.node_id, target: spec.target.type, format: spec.format }, 'run started');

  const progress = new RunProgress({
    send: (doc, message) => heartbeatRun(ctx.pool, runId, doc as unknown as Record<string, unknown> | null, message),
    heartbeatMs: ctx.timing.heartbeatMs,
    progressEventMs: ctx.timing.progressEventMs,
    onError: (err) => log.warn({ err: describeRunFailure(err).message }, 'heartbeat failed; retrying at the next beat'),
  });
  const signal = shutdown ? AbortSignal.any([progress.lost, shutdown]) : progress.lost;
  progress.start();
  let result: RunResult;
  try {
    result = await executor.execute({
      runId,
      jobId: row.job_id,
      nodeId: row.node_id,
      startedAt: run.started_at ?? new Date(),
      spec,
      signal,
      onProgress: (p) => progress.report(p),
    });
  } catch (err) {
    await progress.stop();
    if (progress.lost.aborted) {
      log.warn('the run was ended elsewhere (watchdog) while it executed; stopped writing');
      await executor.discard(runId);
      return 'lost';
    }
    if (shutdown?.aborted) {
      try {
        await requeueRun(ctx.pool, runId, 'the worker is shutting down; the next attempt resumes where this one stopped');
      } catch (e) {
        if (isCode(e, 'run_not_running')) return 'lost';
        throw e;
      }
      log.info('run requeued: worker shutting down');
      return 'requeued';
    }
    const outcome = await recordFailure(ctx, runId, err, executor.secretsOf(runId));
    await executor.discard(runId);
    return outcome;
  }
  await progress.stop();
  try {
    await finishRunSuccess(ctx.pool, runId, summaryOf(result, row.node_id));
  } catch (err) {
    if (!isCode(err, 'run_not_running')) throw err;
    log.warn('the run was ended elsewhere (watchdog) just before it completed; its data is on the target but it is not indexed');
    await executor.discard(runId);
    return 'lost';
  }
  await executor.discard(runId);
  log.info({ files: result.source_total.files, bytes: result.source_total.bytes, transfer_bytes: result.transfer_total_bytes }, 'run succeeded');
  return 'success';
}

/**
 * Hand a queued run to its agent (or record why not). The payload is the
 * validated spec without credentials; the gateway adds a WebDAV login when it
 * sends the run. The retention policy stays on the hub.
 */
async function dispatchToAgent(ctx: TaskContext, runId: string, nodeId: string, spec: JobSpec): Promise<RunOutcome> {
  const r = await dispatchAgentRun(ctx.pool, runId, makeTargetSnapshot(nodeId, spec.target), { spec: { ...spec, retention: null } });
  const log = ctx.logger.child({ run_id: runId, agent_id: nodeId });
  switch (r.disposition) {
    case 'dispatched':
      log.info({ message_id: r.message_id }, 'run dispatched to its agent');
      return 'dispatched';
    case 'waiting':
      log.info('run waits for its agent to connect');
      return 'waiting';
    case 'failed':
      log.warn('run failed: its agent is offline, revoked or unknown');
      return 'failed';
    case 'skipped':
      return 'skipped';
  }
}

/** The graphile-worker task. */
export function makeRunBackupTask(ctx: TaskContext): Task<'run-backup'> {
  return async (payload, helpers) => {
    const parsed = payloadSchema.safeParse(payload);
    if (!parsed.success) {
      helpers.logger.error('run-backup: the payload must be {"run_id": "<uuid>"}; dropping this job');
      return;
    }
    await executeRun(ctx, parsed.data.run_id, helpers.abortSignal);
  };
}
