/**
 * The generic attempt runner of the durable task queues (DESIGN §5), used by
 * the graphile-worker task of each queue (worker/tasks/artifact-delete.ts,
 * worker/tasks/incomplete-cleanup.ts):
 *
 *   claim (the job's task + due siblings of the same node, one statement)
 *   → heartbeat every 10 s while anything runs
 *   → execute each task with an AbortSignal (a few at once), classify failures
 *   → record outcomes in batches (one statement per batch)
 *   → give back claimed tasks that never started when the worker stops.
 *
 * Batching is what makes the queue fast: one graphile job, one claim and a
 * few outcome statements serve up to `batchSize` tasks instead of one job and
 * two round trips per task (bench/delete.ts has the figures). The siblings'
 * own graphile jobs are dropped by the claim, in its transaction.
 *
 * Attempts of tasks whose executor is an agent are handed to that agent right
 * after the claim (bastion_private.agent_dispatch_tasks, sql/migrations/0007):
 * an outbox message, the attempt's claim moves to `agent:<id>`, and the
 * gateway heartbeats it and records the agent's outcome. Only attempts for
 * agents that are offline stay here, where the executor fails them with kind
 * `offline` (revoked agents' attempts are failed by the dispatch itself). A
 * runner that dispatched something also sweeps the due tasks of the other
 * online agents (bastion_private.agent_dispatch_due, 20 nodes per call), so
 * a burst of work for many agents does not wait for one graphile job per
 * agent (bench/agents.ts: p99 from ~0.9 s to ~0.4 s for 100 agents at once).
 *
 * An attempt that outlives `attemptTimeoutMs` is recorded as a failure of
 * `timeoutKind` and its signal is aborted; an attempt the database no longer
 * counts as ours (the watchdog recovered it after a stall, an operator acted)
 * is aborted and its result dropped — the outcome functions would refuse it.
 *
 * Every attempt executed here is observed in the process-wide histogram
 * `bastion_task_attempt_duration_seconds{queue, outcome}` (core/metrics.ts,
 * served at /metrics): `queue` is the queue name, `outcome` the success label
 * (`deleted`, `not_found`, `skip_complete`, …), `failed_<kind>` for a
 * failure (`failed_network`, `failed_auth`, a timeout's kind, …) or `lost`
 * when the task was taken away mid-attempt. Attempts handed to agents are
 * timed by the agent, not here.
 */
import { performance } from 'node:perf_hooks';
import { HUB_NODE_ID } from '../../core/ids.ts';
import { TaskAttemptError, type AttemptFields } from '../../core/task-attempt-error.ts';
import { dispatchAgentTasks, dispatchDueAgentTasks } from '../../db/queries/agents.ts';
import { taskAttemptSeconds } from '../../core/metrics.ts';
import { HEARTBEAT_INTERVAL_MS, type TaskErrorKind, type TaskStatus } from '../../core/task-status.ts';
import { classifyFailure, type ClassifiedFailure } from './classify-failure.ts';
import { TaskQueueSql, type AttemptResult, type ClaimedTask, type WithPgClient } from './task-queue-sql.ts';

/** A successful attempt: the outcome label the queue's task table accepts, and its event. */
export interface AttemptSuccess {
  outcome: string;
  message: string;
  fields?: AttemptFields;
}

/** What makes a queue: its SQL name, its graphile task, and how to execute one task. */
export interface QueueDefinition {
  /** Name in bastion_private.task_queues. */
  name: string;
  /** graphile-worker task identifier. */
  identifier: string;
  /** Tasks claimed by one graphile job, per target type of the job's task (payload.target_type). */
  batchSize(targetType: string | undefined): number;
  /** Tasks of one batch executed at once. */
  concurrency: number;
  /** An attempt running longer than this is recorded as failed. */
  attemptTimeoutMs: number;
  /** Kind recorded for a timed-out attempt of `task`. */
  timeoutKind(task: ClaimedTask): TaskErrorKind;
  /** Execute one task; throw on failure (TaskAttemptError, WebdavError, … — see classify-failure.ts). */
  execute(task: ClaimedTask, signal: AbortSignal): Promise<AttemptSuccess>;
  /**
   * Adjust a classified failure (timeouts included) before it is recorded. A
   * queue whose task table accepts fewer error kinds than classify-failure.ts
   * produces maps them here (the cleanup queue has no `http` kind), so an
   * outcome batch is never refused by the table's CHECK.
   */
  mapFailure?(failure: ClassifiedFailure, task: ClaimedTask): ClassifiedFailure;
}

/** The logging surface the runner needs (graphile-worker's helpers.logger fits). */
export interface RunnerLogger {
  debug(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  error(message: string, meta?: Record<string, unknown>): void;
}

/** Where the runner runs. */
export interface RunnerContext {
  withPgClient: WithPgClient;
  /** Identity of this worker process in task rows (graphile-worker's pool id, so the watchdog can release its locks). */
  workerId: string;
  /** Fires when the worker must stop (graceful shutdown timed out). */
  abortSignal?: AbortSignal | undefined;
  logger: RunnerLogger;
  /** Heartbeat period (default 10 s). */
  heartbeatMs?: number;
  /** Outcomes are written at least this often while a batch runs (default 1 s), and at its end. */
  flushMs?: number;
}

/** What one run of the runner did. */
export interface AttemptReport {
  claimed: number;
  /** Final statuses of the tasks whose outcome was recorded. */
  statuses: Partial<Record<TaskStatus, number>>;
  /** Outcomes the database refused (the attempt was no longer ours). */
  dropped: number;
  /** Claimed tasks given back unstarted. */
  released: number;
  /** Claimed tasks handed to their agents (or failed because their agent is revoked). */
  dispatched: number;
}

const FLUSH_BATCH = 256;

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new Error('aborted');
}

/** Run the attempts a graphile job stands for. Resolves when every claimed task has an outcome or was released. */
export async function runAttempts(def: QueueDefinition, trigger: { run_id: string; target_type?: string | undefined }, ctx: RunnerContext): Promise<AttemptReport> {
  const sql = new TaskQueueSql(def.name, ctx.withPgClient);
  const report: AttemptReport = { claimed: 0, statuses: {}, dropped: 0, released: 0, dispatched: 0 };
  const claimed = await sql.claim(trigger.run_id, ctx.workerId, Math.max(1, Math.trunc(def.batchSize(trigger.target_type))));
  report.claimed = claimed.length;
  if (claimed.length === 0) return report;
  const onAgents = claimed.filter((t) => t.executor_node_id !== HUB_NODE_ID).map((t) => t.run_id);
  const handed = onAgents.length === 0 ? new Map<string, string>() : await ctx.withPgClient((c) => dispatchAgentTasks(c, def.name, ctx.workerId, onAgents));
  const tasks = claimed.filter((t) => {
    const d = handed.get(t.run_id);
    return d === undefined || d === 'offline';
  });
  report.dispatched = claimed.length - tasks.length;
  // Work for other online agents is due too, each waiting for its own graphile
  // job: hand it over now, in one call (bastion_private.agent_dispatch_due).
  // A few nodes per call, each call its own transaction, so the first agents
  // get their work while the sweep goes on.
  if ([...handed.values()].includes('dispatched')) {
    for (let round = 0; round < 100; round++) {
      const n = await ctx.withPgClient((c) => dispatchDueAgentTasks(c, def.name, ctx.workerId, 20));
      report.dispatched += n;
      if (n === 0) break;
    }
  }
  if (tasks.length === 0) return report;

  /** Claimed and not yet recorded (heartbeats cover them). */
  const held = new Map<string, ClaimedTask>(tasks.map((t) => [t.run_id, t]));
  const controllers = new Map<string, AbortController>();
  const lost = new Set<string>();
  const pending: AttemptResult[] = [];
  let flushing: Promise<void> = Promise.resolve();
  let lastFlush = performance.now();

  const flush = (): Promise<void> => {
    if (pending.length === 0) return flushing;
    const batch = pending.splice(0, pending.length);
    lastFlush = performance.now();
    flushing = flushing.then(async () => {
      const changed = await sql.finish(ctx.workerId, batch);
      for (const c of changed) report.statuses[c.status] = (report.statuses[c.status] ?? 0) + 1;
      const applied = new Set(changed.map((c) => c.run_id));
      for (const r of batch) {
        held.delete(r.run_id);
        if (!applied.has(r.run_id)) {
          report.dropped += 1;
          ctx.logger.warn(`${def.name}: outcome of ${r.run_id} attempt ${r.attempt} was not recorded: the task is no longer held by this worker`, { run_id: r.run_id });
        }
      }
    });
    return flushing;
  };

  // Heartbeats for everything still held; a task the database no longer
  // counts as ours is aborted.
  let beating = false;
  const beat = async () => {
    if (beating || held.size === 0) return;
    beating = true;
    try {
      const asked = [...held.keys()];
      const still = await sql.heartbeat(ctx.workerId, asked);
      for (const id of asked) {
        if (!still.has(id) && held.has(id) && !lost.has(id)) {
          lost.add(id);
          controllers.get(id)?.abort(new TaskAttemptError('unknown', 'lost_claim', 'the task was taken away from this worker (watchdog or operator)'));
          ctx.logger.warn(`${def.name}: task ${id} is no longer held by this worker; its attempt stops`, { run_id: id });
        }
      }
    } catch (err) {
      ctx.logger.warn(`${def.name}: heartbeat failed: ${(err as Error)?.message ?? String(err)}`);
    } finally {
      beating = false;
    }
  };
  const timer = setInterval(() => void beat(), ctx.heartbeatMs ?? HEARTBEAT_INTERVAL_MS);

  const runOne = async (task: ClaimedTask): Promise<void> => {
    const ac = new AbortController();
    controllers.set(task.run_id, ac);
    const onStop = () => ac.abort(abortReason(ctx.abortSignal!));
    ctx.abortSignal?.addEventListener('abort', onStop, { once: true });
    const timeout = setTimeout(() => {
      const s = Math.round(def.attemptTimeoutMs / 1000);
      ac.abort(new TaskAttemptError(def.timeoutKind(task), 'attempt_timeout', `the attempt did not finish within ${s} s`));
    }, def.attemptTimeoutMs);
    const started = performance.now();
    try {
      const aborted = new Promise<never>((_, reject) => {
        if (ac.signal.aborted) reject(abortReason(ac.signal));
        ac.signal.addEventListener('abort', () => reject(abortReason(ac.signal)), { once: true });
      });
      aborted.catch(() => {});
      const ok = await Promise.race([def.execute(task, ac.signal), aborted]);
      const ms = performance.now() - started;
      taskAttemptSeconds.observe({ queue: def.name, outcome: ok.outcome }, ms / 1000);
      pending.push({ run_id: task.run_id, attempt: task.attempts, outcome: ok.outcome, message: ok.message, fields: { duration_ms: Math.round(ms), ...ok.fields } });
    } catch (err) {
      if (lost.has(task.run_id)) {
        taskAttemptSeconds.observe({ queue: def.name, outcome: 'lost' }, (performance.now() - started) / 1000);
        held.delete(task.run_id);
        report.dropped += 1;
        return;
      }
      const f = def.mapFailure ? def.mapFailure(classifyFailure(err), task) : classifyFailure(err);
      taskAttemptSeconds.observe({ queue: def.name, outcome: `failed_${f.kind}` }, (performance.now() - started) / 1000);
      pending.push({
        run_id: task.run_id,
        attempt: task.attempts,
        kind: f.kind,
        error: f.error,
        fields: { duration_ms: Math.round(performance.now() - started), ...f.fields },
        ...(f.retryAfterSeconds !== undefined ? { retry_after_secs: f.retryAfterSeconds } : {}),
      });
    } finally {
      clearTimeout(timeout);
      ctx.abortSignal?.removeEventListener('abort', onStop);
      controllers.delete(task.run_id);
    }
    if (pending.length >= FLUSH_BATCH || performance.now() - lastFlush >= (ctx.flushMs ?? 1000)) await flush();
  };

  const queue = [...tasks];
  try {
    const lanes = Array.from({ length: Math.max(1, Math.min(def.concurrency, queue.length)) }, async () => {
      for (let t = queue.shift(); t !== undefined; t = queue.shift()) {
        if (ctx.abortSignal?.aborted) {
          queue.unshift(t);
          return;
        }
        if (lost.has(t.run_id)) {
          held.delete(t.run_id);
          continue;
        }
        await runOne(t);
      }
    });
    await Promise.all(lanes);
    await flush();
    if (queue.length > 0) {
      const ids = queue.map((t) => t.run_id).filter((id) => !lost.has(id));
      report.released = await sql.release(ctx.workerId, ids);
      for (const id of ids) held.delete(id);
      ctx.logger.info(`${def.name}: gave back ${report.released} claimed tasks that did not start (worker stopping)`);
    }
  } finally {
    clearInterval(timer);
  }
  return report;
}
