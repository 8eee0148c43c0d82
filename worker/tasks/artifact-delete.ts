/**
 * The artifact delete queue's graphile-worker task: each job stands for one
 * delete task (job key `artifact-delete:<run_id>`, queue
 * `artifact-delete:<node>:<lane>`, run_at = next_attempt_at), scheduled by
 * the SQL functions in the same transaction as the task row. Running it
 * claims that task plus due siblings of the same node and target type, runs
 * the deletes (engine/delete/snapshot-delete.ts) and records the outcomes
 * (worker/queue/attempt-runner.ts).
 *
 * Batches (up to 256 local_dir tasks per job, WebDAV one per job) and the
 * task wrapper are shared with the cleanup queue (worker/queue/target-queue.ts).
 * Measured on 10,000 snapshots on 2 shared cores (bench/delete.ts): batches
 * of 16 ≈ 330 deletes/s, 64 ≈ 1,000–1,400/s, 256 ≈ 1,000–2,200/s; 4 deletes
 * at once inside a batch changed little.
 */
import type { Task } from 'graphile-worker';
import { executeSnapshotDelete, type SnapshotDeleteDeps } from '../../engine/delete/snapshot-delete.ts';
import type { QueueDefinition } from '../queue/attempt-runner.ts';
import { missingWebdavResolver, targetQueue, targetQueueTask, type TargetQueueOptions } from '../queue/target-queue.ts';

/** Task identifier (also this file's name, the job key prefix and the queue name prefix; see bastion_private.task_queues). */
export const ARTIFACT_DELETE = 'artifact-delete';
/** Name of the queue in bastion_private.task_queues. */
export const ARTIFACT_DELETE_QUEUE = 'artifact_delete';

declare global {
  namespace GraphileWorker {
    interface Tasks {
      'artifact-delete': { run_id: string; target_type?: 'local_dir' | 'webdav' };
    }
  }
}

/** What the delete task needs from its process; defaults are production's. */
export interface ArtifactDeleteOptions extends Partial<SnapshotDeleteDeps>, TargetQueueOptions {}

/** The queue definition of artifact deletes. */
export function artifactDeleteQueue(options: ArtifactDeleteOptions = {}): QueueDefinition {
  const deps: SnapshotDeleteDeps = {
    resolveWebdavCredentials: options.resolveWebdavCredentials ?? missingWebdavResolver,
    ...(options.webdavClient ? { webdavClient: options.webdavClient } : {}),
    ...(options.local ? { local: options.local } : {}),
  };
  return targetQueue({ name: ARTIFACT_DELETE_QUEUE, identifier: ARTIFACT_DELETE, execute: (task) => executeSnapshotDelete(task, deps) }, options);
}

/** The graphile-worker task. */
export function artifactDeleteTask(options: ArtifactDeleteOptions = {}): Task<'artifact-delete'> {
  return targetQueueTask(artifactDeleteQueue(options), options) as Task<'artifact-delete'>;
}
