/**
 * The artifact delete queue's graphile-worker task: each job stands for one
 * delete task (job key `artifact-delete:<run_id>`, queue
 * `artifact-delete:<node>:<lane>`, run_at = next_attempt_at), scheduled by
 * the SQL functions in the same transaction as the task row. Running it
 * claims that task plus due siblings of the same node and target type, runs
 * the deletes (engine/delete/snapshot-delete.ts) and records the outcomes
 * (worker/queue/attempt-runner.ts).
 *
 * Batches: up to 256 local_dir tasks per job, deleted one after the other,
 * so a node runs at most `lanes_per_node` (4) local deletes at once, as
 * DESIGN §5 asks. A local delete takes about a millisecond; per-task graphile
 * jobs and round trips would dominate (bench/delete.ts, 10,000 snapshots on
 * 2 shared cores: batches of 16 ≈ 330 deletes/s, 64 ≈ 1,000–1,400/s, 256 ≈
 * 1,000–2,200/s; 4 deletes at once inside a batch changed little). WebDAV
 * tasks go one per job: each can take seconds to minutes, and separate jobs
 * let the node's lanes run them in parallel instead of holding them behind
 * each other as `running`.
 */
import { randomBytes } from 'node:crypto';
import type { Task } from 'graphile-worker';
import { z } from 'zod';
import { UUID_RE } from '../../core/ids.ts';
import { TaskAttemptError } from '../../core/task-attempt-error.ts';
import type { WebdavCredentials } from '../../core/webdav-path.ts';
import { executeSnapshotDelete, type SnapshotDeleteDeps } from '../../engine/delete/snapshot-delete.ts';
import { runAttempts, type QueueDefinition } from '../queue/attempt-runner.ts';

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

const payloadSchema = z.object({
  run_id: z.string().regex(UUID_RE),
  target_type: z.enum(['local_dir', 'webdav']).optional(),
});

/** What the delete task needs from its process; defaults are production's. */
export interface ArtifactDeleteOptions extends Partial<SnapshotDeleteDeps> {
  /** Tasks per graphile job for local_dir targets (default 256). */
  localBatchSize?: number;
  /** Local deletes of one batch run at once (default 1: the node's lanes are its concurrency). */
  localConcurrency?: number;
  /** Longest attempt (default 30 min: a large raw_tree_v1 WebDAV walk deletes file by file). */
  attemptTimeoutMs?: number;
  /** Heartbeat period (default 10 s; tests shorten it). */
  heartbeatMs?: number;
}

function missingResolver(): Promise<WebdavCredentials> {
  return Promise.reject(
    new TaskAttemptError('config', 'no_secret_store', 'this worker process was started without access to the secret store, so WebDAV secrets cannot be read'),
  );
}

/** The queue definition of artifact deletes. */
export function artifactDeleteQueue(options: ArtifactDeleteOptions = {}): QueueDefinition {
  const deps: SnapshotDeleteDeps = {
    resolveWebdavCredentials: options.resolveWebdavCredentials ?? missingResolver,
    ...(options.webdavClient ? { webdavClient: options.webdavClient } : {}),
    ...(options.local ? { local: options.local } : {}),
  };
  const localBatch = options.localBatchSize ?? 256;
  return {
    name: ARTIFACT_DELETE_QUEUE,
    identifier: ARTIFACT_DELETE,
    batchSize: (targetType) => (targetType === 'webdav' ? 1 : localBatch),
    concurrency: options.localConcurrency ?? 1,
    attemptTimeoutMs: options.attemptTimeoutMs ?? 30 * 60_000,
    timeoutKind: (task) => (task.target_type === 'webdav' ? 'network' : 'io'),
    execute: (task) => executeSnapshotDelete(task, deps),
  };
}

/** The graphile-worker task. */
export function artifactDeleteTask(options: ArtifactDeleteOptions = {}): Task<'artifact-delete'> {
  const def = artifactDeleteQueue(options);
  // Fallback identity when graphile-worker does not say which pool locked the job.
  const fallbackId = `bastion-${process.pid}-${randomBytes(4).toString('hex')}`;
  return async (payload, helpers) => {
    const parsed = payloadSchema.safeParse(payload);
    if (!parsed.success) {
      // Not retried: a malformed payload stays malformed. Nothing was claimed.
      helpers.logger.error(`${ARTIFACT_DELETE}: ignoring a job with a malformed payload`, { issues: parsed.error.issues.map((i) => i.message) });
      return;
    }
    const report = await runAttempts(def, parsed.data, {
      withPgClient: helpers.withPgClient as unknown as Parameters<typeof runAttempts>[2]['withPgClient'],
      workerId: helpers.job.locked_by ?? fallbackId,
      abortSignal: helpers.abortSignal,
      logger: helpers.logger,
      ...(options.heartbeatMs !== undefined ? { heartbeatMs: options.heartbeatMs } : {}),
    });
    if (report.claimed > 0) helpers.logger.debug(`${ARTIFACT_DELETE}: ${report.claimed} claimed`, { ...report });
  };
}
