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
 * Batches follow the delete queue's measured trade-off (bench/delete.ts;
 * worker/queue/target-queue.ts): up to 256 local_dir tasks per job, WebDAV
 * tasks one per job.
 *
 * Error kinds: this queue records network | io | auth | config | unknown |
 * offline (the list; the table refuses `http`). WebDAV failures the
 * client classes as `http` are mapped here (reference §3.3 and §7): an
 * unexpected 3xx/4xx status means the target settings are wrong → `config`
 * (blocked, an operator looks); an unusable success answer or a walk that hit
 * its entry limit (the next attempt continues) → `unknown` (retrying).
 */
import type { Task } from 'graphile-worker';
import { FAILURE_HINTS, type TaskErrorKind } from '../../core/task-status.ts';
import { executeIncompleteCleanup, type IncompleteCleanupDeps } from '../../engine/cleanup/incomplete-cleanup.ts';
import type { QueueDefinition } from '../queue/attempt-runner.ts';
import type { ClassifiedFailure } from '../queue/classify-failure.ts';
import { missingWebdavResolver, targetQueue, targetQueueTask, type TargetQueueOptions } from '../queue/target-queue.ts';

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
export interface IncompleteCleanupOptions extends Partial<IncompleteCleanupDeps>, TargetQueueOptions {}

/** The queue definition of incomplete cleanups. */
export function incompleteCleanupQueue(options: IncompleteCleanupOptions = {}): QueueDefinition {
  const deps: IncompleteCleanupDeps = {
    resolveWebdavCredentials: options.resolveWebdavCredentials ?? missingWebdavResolver,
    ...(options.webdavClient ? { webdavClient: options.webdavClient } : {}),
    ...(options.local ? { local: options.local } : {}),
  };
  return targetQueue({ name: INCOMPLETE_CLEANUP_QUEUE, identifier: INCOMPLETE_CLEANUP, execute: (task) => executeIncompleteCleanup(task, deps), mapFailure: mapCleanupFailure }, options);
}

/** The graphile-worker task. */
export function incompleteCleanupTask(options: IncompleteCleanupOptions = {}): Task<'incomplete-cleanup'> {
  return targetQueueTask(incompleteCleanupQueue(options), options) as Task<'incomplete-cleanup'>;
}
