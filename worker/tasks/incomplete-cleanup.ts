/**
 * The incomplete-cleanup queue's graphile-worker task: each job stands for
 * one cleanup task (job key `incomplete-cleanup:<run_id>`, queue
 * `incomplete-cleanup:<node>:<lane>`, run_at = next_attempt_at), scheduled by
 * the SQL functions of sql/migrations/0006 in the same transaction as the task
 * row. Running it claims that task plus due siblings of the same node and
 * target type, runs the cleanups (engine/cleanup/incomplete-cleanup.ts) and
 * records the outcomes — all through the delete queue's generic machinery
 * (worker/queue/attempt-runner.ts and bastion_private.task_*).
 *
 * Batches follow the delete queue's measured trade-off (bench/delete.ts):
 * up to 256 local_dir tasks per job, one after the other, so a node runs at
 * most `lanes_per_node` (4) local cleanups at once; WebDAV tasks one per job,
 * so slow servers run in parallel lanes instead of queueing behind each other.
 *
 * Error kinds: this queue records network | io | auth | config | unknown |
 * offline (the issue's list; the table refuses `http`). WebDAV failures the
 * client classes as `http` are mapped here (reference §3.3 and §7): an
 * unexpected 3xx/4xx status means the target settings are wrong → `config`
 * (blocked, an operator looks); an unusable success answer or a walk that hit
 * its entry limit (the next attempt continues) → `unknown` (retrying).
 */
import { randomBytes } from 'node:crypto';
import type { Task } from 'graphile-worker';
import { z } from 'zod';
import { UUID_RE } from '../../core/ids.ts';
import { TaskAttemptError } from '../../core/task-attempt-error.ts';
import { FAILURE_HINTS, type TaskErrorKind } from '../../core/task-status.ts';
import type { WebdavCredentials } from '../../core/webdav-path.ts';
import { executeIncompleteCleanup, type IncompleteCleanupDeps } from '../../engine/cleanup/incomplete-cleanup.ts';
import { runAttempts, type QueueDefinition } from '../queue/attempt-runner.ts';
import type { ClassifiedFailure } from '../queue/classify-failure.ts';

/** Task identifier (also this file's name, the job key prefix and the queue name prefix; see bastion_private.task_queues). */
export const INCOMPLETE_CLEANUP = 'incomplete-cleanup';
/** Name of the queue in bastion_private.task_queues. */
export const INCOMPLETE_CLEANUP_QUEUE = 'incomplete_cleanup';

declare global {
  namespace GraphileWorker {
    interface Tasks {
      'incomplete-cleanup': { run_id: string; target_type?: 'local_dir' | 'webdav' };
    }
  }
}

const payloadSchema = z.object({
  run_id: z.string().regex(UUID_RE),
  target_type: z.enum(['local_dir', 'webdav']).optional(),
});

/** Error kinds the cleanup table accepts (sql/migrations/0006, incomplete_cleanup_tasks_error_kinds). */
export const CLEANUP_ERROR_KINDS: readonly TaskErrorKind[] = ['network', 'io', 'auth', 'config', 'unknown', 'offline'];

/** Hints of the cleanup's failure events (the shared ones speak of deletes where that matters). */
const CLEANUP_HINTS: Readonly<Record<TaskErrorKind, string>> = {
  ...FAILURE_HINTS,
  config: 'target settings are invalid or the server refused the request as malformed; verify the target and its secret',
  unknown: 'unknown cleanup failure; inspect the task error details and the worker logs',
};

/**
 * Map a classified failure onto the cleanup queue's kinds: `http` becomes
 * `config` when the server answered an unexpected status, else `unknown`.
 */
export function mapCleanupFailure(failure: ClassifiedFailure): ClassifiedFailure {
  let kind = failure.kind;
  if (kind === 'http') kind = typeof failure.fields['http_status'] === 'number' && failure.fields['reason'] === 'status' ? 'config' : 'unknown';
  if (!CLEANUP_ERROR_KINDS.includes(kind)) kind = 'unknown';
  return { ...failure, kind, fields: { ...failure.fields, error_kind: kind, hint: CLEANUP_HINTS[kind] } };
}

/** What the cleanup task needs from its process; defaults are production's. */
export interface IncompleteCleanupOptions extends Partial<IncompleteCleanupDeps> {
  /** Tasks per graphile job for local_dir targets (default 256). */
  localBatchSize?: number;
  /** Local cleanups of one batch run at once (default 1: the node's lanes are its concurrency). */
  localConcurrency?: number;
  /** Longest attempt (default 30 min: a large partial raw_tree_v1 WebDAV walk deletes file by file). */
  attemptTimeoutMs?: number;
  /** Heartbeat period (default 10 s; tests shorten it). */
  heartbeatMs?: number;
}

function missingResolver(): Promise<WebdavCredentials> {
  return Promise.reject(
    new TaskAttemptError('config', 'no_secret_store', 'this worker process was started without access to the secret store, so WebDAV secrets cannot be read'),
  );
}

/** The queue definition of incomplete cleanups. */
export function incompleteCleanupQueue(options: IncompleteCleanupOptions = {}): QueueDefinition {
  const deps: IncompleteCleanupDeps = {
    resolveWebdavCredentials: options.resolveWebdavCredentials ?? missingResolver,
    ...(options.webdavClient ? { webdavClient: options.webdavClient } : {}),
    ...(options.local ? { local: options.local } : {}),
  };
  const localBatch = options.localBatchSize ?? 256;
  return {
    name: INCOMPLETE_CLEANUP_QUEUE,
    identifier: INCOMPLETE_CLEANUP,
    batchSize: (targetType) => (targetType === 'webdav' ? 1 : localBatch),
    concurrency: options.localConcurrency ?? 1,
    attemptTimeoutMs: options.attemptTimeoutMs ?? 30 * 60_000,
    timeoutKind: (task) => (task.target_type === 'webdav' ? 'network' : 'io'),
    execute: (task) => executeIncompleteCleanup(task, deps),
    mapFailure: (failure) => mapCleanupFailure(failure),
  };
}

/** The graphile-worker task. */
export function incompleteCleanupTask(options: IncompleteCleanupOptions = {}): Task<'incomplete-cleanup'> {
  const def = incompleteCleanupQueue(options);
  // Fallback identity when graphile-worker does not say which pool locked the job.
  const fallbackId = `bastion-${process.pid}-${randomBytes(4).toString('hex')}`;
  return async (payload, helpers) => {
    const parsed = payloadSchema.safeParse(payload);
    if (!parsed.success) {
      // Not retried: a malformed payload stays malformed. Nothing was claimed.
      helpers.logger.error(`${INCOMPLETE_CLEANUP}: ignoring a job with a malformed payload`, { issues: parsed.error.issues.map((i) => i.message) });
      return;
    }
    const report = await runAttempts(def, parsed.data, {
      withPgClient: helpers.withPgClient as unknown as Parameters<typeof runAttempts>[2]['withPgClient'],
      workerId: helpers.job.locked_by ?? fallbackId,
      abortSignal: helpers.abortSignal,
      logger: helpers.logger,
      ...(options.heartbeatMs !== undefined ? { heartbeatMs: options.heartbeatMs } : {}),
    });
    if (report.claimed > 0) helpers.logger.debug(`${INCOMPLETE_CLEANUP}: ${report.claimed} claimed`, { ...report });
  };
}
