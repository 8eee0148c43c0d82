/**
 * Turn whatever an executor threw into what a task records: an error kind
 * (which picks blocked vs retrying and the backoff row), a one-line
 * credential-free message of at most 500 bytes, structured fields for the
 * failure event, and the server's Retry-After when there was one.
 *
 *   TaskAttemptError          → its kind, reason and fields
 *   WebdavError               → its kind (401/403 auth, 408/429/5xx and connection
 *                               failures network, other 4xx http, bad settings
 *                               config), HTTP status, Retry-After, redacted URL
 *   BastionError with a kind  → that kind (SecretError: config)
 *   file system errors        → io, with the errno code
 *   anything else             → unknown
 */
import { BastionError } from '../../core/errors.ts';
import { sanitizeErrorText } from '../../core/redact.ts';
import { TaskAttemptError, type AttemptFields } from '../../core/task-attempt-error.ts';
import { FAILURE_HINTS, isTaskErrorKind, type TaskErrorKind } from '../../core/task-status.ts';
import { WebdavError } from '../../core/webdav-errors.ts';
import { webdavFailureFields } from '../../engine/targets/webdav-target.ts';

/** Bytes of error text a task stores (the SQL column allows 500, ellipsis included). */
const MAX_STORED_ERROR_BYTES = 497;

/** A classified failure, ready for bastion_private.task_finish. */
export interface ClassifiedFailure {
  kind: TaskErrorKind;
  /** One line, no credentials, ≤ 500 bytes. */
  error: string;
  fields: AttemptFields;
  retryAfterSeconds?: number;
}

const FS_CODE_RE = /^E[A-Z]+$/;

/** Classify an executor's failure. */
export function classifyFailure(err: unknown): ClassifiedFailure {
  let kind: TaskErrorKind = 'unknown';
  let fields: AttemptFields = {};
  let retryAfterSeconds: number | undefined;
  let text: string;
  if (err instanceof TaskAttemptError) {
    kind = err.kind;
    fields = { ...err.fields };
    retryAfterSeconds = err.retryAfterSeconds;
    text = err.message;
  } else if (err instanceof WebdavError) {
    kind = err.kind;
    fields = webdavFailureFields(err);
    retryAfterSeconds = err.retryAfterSeconds;
    text = err.message;
  } else if (err instanceof BastionError) {
    const k = (err as BastionError & { kind?: unknown }).kind;
    kind = isTaskErrorKind(k) ? k : err.code === 'target_io_error' || err.code === 'target_not_writable' ? 'io' : 'unknown';
    fields = { error_code: err.code };
    if (typeof err.details?.reason === 'string') fields['reason'] = err.details.reason;
    text = err.message;
  } else if (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && FS_CODE_RE.test((err as NodeJS.ErrnoException).code!)) {
    kind = 'io';
    fields = { errno: (err as NodeJS.ErrnoException).code! };
    text = err.message;
  } else {
    text = err instanceof Error ? `${err.name}: ${err.message}` : `unexpected failure: ${String(err)}`;
  }
  fields['hint'] = FAILURE_HINTS[kind];
  return {
    kind,
    error: sanitizeErrorText(text || 'attempt failed', MAX_STORED_ERROR_BYTES),
    fields,
    ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
  };
}
