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
