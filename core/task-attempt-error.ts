/**
 * The failure of one queue attempt, already classified: executors (the
 * delete executors in engine/delete, later the cleanup executors and agent
 * dispatch) throw it when they know what went wrong, and the attempt runner
 * (worker/queue) records its kind, message and fields on the task. Other
 * errors (WebdavError, SecretError, file system errors) are classified by
 * worker/queue/classify-failure.ts.
 *
 * The message must already be safe to store: no credentials (it names paths,
 * agent ids, secret names — never secret values).
 */
import { targetSnapshotSchema, type TargetSnapshot } from './target-snapshot.ts';
import type { TaskErrorKind } from './task-status.ts';

/** Structured, credential-free facts for the failure event (path, reason, agent_id, …). */
export type AttemptFields = Record<string, string | number | boolean | null>;

/** A classified attempt failure. */
export class TaskAttemptError extends Error {
  readonly kind: TaskErrorKind;
  /** Stable machine reason (snake_case), e.g. `run_dir_is_symlink`, `not_bastion_data`, `agent_offline`. */
  readonly reason: string;
  readonly fields: AttemptFields;
  /** Seconds the remote side asked us to wait, when it said. */
  readonly retryAfterSeconds: number | undefined;

  constructor(kind: TaskErrorKind, reason: string, message: string, options: { fields?: AttemptFields; retryAfterSeconds?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TaskAttemptError';
    this.kind = kind;
    this.reason = reason;
    this.fields = { reason, ...options.fields };
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/**
 * The target snapshot a delete or cleanup task stored, checked. A bad one
 * fails the attempt as `config` (never retried); the message names only the
 * field and zod's reason, never the value (it may be a URL with credentials).
 */
export function taskTargetSnapshot(value: unknown): TargetSnapshot {
  const parsed = targetSnapshotSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new TaskAttemptError('config', 'invalid_target_snapshot', `invalid target snapshot: ${issue ? issue.path.join('.') || 'value' : 'value'}: ${issue?.message ?? 'invalid'}`);
}

/**
 * local_dir data is only reachable on the node that wrote it: anywhere else
 * the attempt fails with kind `offline`, naming the agent, and the task waits
 * with the offline backoff until that agent runs it. `what` says what waits
 * ("the snapshot is", "the run's data is"), `action` what runs later.
 */
export function requireLocalNode(snapshot: TargetSnapshot, localNodeId: string, what: string, action: string): void {
  if (snapshot.node_id === localNodeId) return;
  throw new TaskAttemptError('offline', 'agent_offline', `${what} on agent ${snapshot.node_id}, which is not connected to this hub; the ${action} runs when it is`, {
    fields: { agent_id: snapshot.node_id },
  });
}
