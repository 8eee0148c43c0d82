/**
 * What the two target-data queues (artifact deletes, incomplete cleanups)
 * share around the generic attempt runner: their tuning options and
 * defaults, the batch shape per target type, the credential resolver of a
 * process without the secret store, and the graphile-worker task that
 * validates its payload and runs the attempts. Each queue supplies only its
 * names, its executor and (optionally) its failure mapping.
 *
 * Batches: up to 256 local_dir tasks per graphile job, run one after the
 * other, so a node runs at most `lanes_per_node` (4) local removals at once
 * (DESIGN §5); a local removal takes about a millisecond and per-task jobs
 * and round trips would dominate (bench/delete.ts). WebDAV tasks go one per
 * job: each can take minutes, and separate jobs let the node's lanes run
 * them in parallel instead of holding them behind each other as `running`.
 */
import { randomBytes } from 'node:crypto';
import type { Task } from 'graphile-worker';
import { z } from 'zod';
import { UUID_RE } from '../../core/ids.ts';
import { TaskAttemptError } from '../../core/task-attempt-error.ts';
import type { WebdavCredentials } from '../../core/webdav-path.ts';
import { runAttempts, type AttemptSuccess, type QueueDefinition } from './attempt-runner.ts';
import type { ClaimedTask } from './task-queue-sql.ts';
import type { ClassifiedFailure } from './classify-failure.ts';

/** Tuning of a target-data queue; defaults are production's. */
export interface TargetQueueOptions {
  /** Tasks per graphile job for local_dir targets (default 256). */
  localBatchSize?: number;
  /** Tasks of one batch run at once (default 1: the node's lanes are its concurrency). */
  localConcurrency?: number;
  /** Longest attempt (default 30 min: a large raw_tree_v1 WebDAV walk removes file by file). */
  attemptTimeoutMs?: number;
  /** Heartbeat period (default 10 s; tests shorten it). */
  heartbeatMs?: number;
}

/** The resolver of a worker process started without the secret store: every WebDAV task fails as `config`. */
export function missingWebdavResolver(): Promise<WebdavCredentials> {
  return Promise.reject(
    new TaskAttemptError('config', 'no_secret_store', 'this worker process was started without access to the secret store, so WebDAV secrets cannot be read'),
  );
}

/** A target-data queue's definition from its names, executor and the options. */
export function targetQueue(
  spec: {
    name: string;
    identifier: string;
    execute: (task: ClaimedTask) => Promise<AttemptSuccess>;
    mapFailure?: (failure: ClassifiedFailure) => ClassifiedFailure;
  },
  options: TargetQueueOptions,
): QueueDefinition {
  const localBatch = options.localBatchSize ?? 256;
  return {
    name: spec.name,
    identifier: spec.identifier,
    batchSize: (targetType) => (targetType === 'webdav' ? 1 : localBatch),
    concurrency: options.localConcurrency ?? 1,
    attemptTimeoutMs: options.attemptTimeoutMs ?? 30 * 60_000,
    timeoutKind: (task) => (task.target_type === 'webdav' ? 'network' : 'io'),
    execute: (task) => spec.execute(task),
    ...(spec.mapFailure ? { mapFailure: spec.mapFailure } : {}),
  };
}

/** Payload of a target-data queue's graphile job: the task it stands for. */
const payloadSchema = z.object({
  run_id: z.string().regex(UUID_RE),
  target_type: z.enum(['local_dir', 'webdav']).optional(),
});

/** The graphile-worker task of a target-data queue. */
export function targetQueueTask(def: QueueDefinition, options: Pick<TargetQueueOptions, 'heartbeatMs'>): Task {
  // Fallback identity when graphile-worker does not say which pool locked the job.
  const fallbackId = `bastion-${process.pid}-${randomBytes(4).toString('hex')}`;
  return async (payload, helpers) => {
    const parsed = payloadSchema.safeParse(payload);
    if (!parsed.success) {
      // Not retried: a malformed payload stays malformed. Nothing was claimed.
      helpers.logger.error(`${def.identifier}: ignoring a job with a malformed payload`, { issues: parsed.error.issues.map((i) => i.message) });
      return;
    }
    const report = await runAttempts(def, parsed.data, {
      withPgClient: helpers.withPgClient as unknown as Parameters<typeof runAttempts>[2]['withPgClient'],
      workerId: helpers.job.locked_by ?? fallbackId,
      abortSignal: helpers.abortSignal,
      logger: helpers.logger,
      ...(options.heartbeatMs !== undefined ? { heartbeatMs: options.heartbeatMs } : {}),
    });
    if (report.claimed > 0) helpers.logger.debug(`${def.identifier}: ${report.claimed} claimed`, { ...report });
  };
}
