/**
 * The error catalogue: every stable error code Bastion shows to a client, with
 * its HTTP status and a safe default message. Tests assert on codes, never on
 * prose. SQL functions raise the same codes (as the exception message, with a
 * SQLSTATE from {@link SQLSTATE_BY_STATUS}), so a DBA at psql, a REST client and
 * a GraphQL client all see one vocabulary.
 *
 * Sections are per domain; add a code to the section that owns it.
 */

/** Definition of one error code. */
export interface ErrorDef {
  /** HTTP status the API answers with. */
  readonly status: number;
  /** Safe default message (no data from the request, no secrets). */
  readonly message: string;
}

export const ERRORS = {
  // --- generic -------------------------------------------------------------
  internal_error: { status: 500, message: 'Internal error; the server log has details under the given error id' },
  invalid_input: { status: 400, message: 'The request is invalid' },
  invalid_json: { status: 400, message: 'The request body is not valid JSON' },
  payload_too_large: { status: 413, message: 'The request body is too large' },
  not_found: { status: 404, message: 'Not found' },
  method_not_allowed: { status: 405, message: 'Method not allowed' },
  unauthorized: { status: 401, message: 'Authentication required' },
  forbidden: { status: 403, message: 'Your role does not allow this action' },
  rate_limited: { status: 429, message: 'Too many requests; retry later' },

  // --- configuration and CLI ----------------------------------------------
  invalid_config: { status: 400, message: 'Invalid configuration' },
  database_unreachable: { status: 503, message: 'The database cannot be reached' },
  migration_failed: { status: 500, message: 'A database migration failed' },
  migration_changed: { status: 500, message: 'An applied migration file was changed after it was applied' },
  embedded_postgres_failed: { status: 500, message: 'The embedded PostgreSQL could not be started' },
  embedded_postgres_in_use: { status: 409, message: 'The embedded PostgreSQL of this data directory is run by another Bastion process' },

  // --- backup: sources, format, targets -------------------------------------
  // A run fails with one of these; details carry {field?, path?, name?, reason?}.
  invalid_path: { status: 400, message: 'A path is not acceptable (it must be absolute, or relative without "..", and contain no NUL byte)' },
  invalid_glob: { status: 400, message: 'An include/exclude pattern is malformed' },
  source_not_found: { status: 404, message: 'A source path does not exist' },
  source_unreadable: { status: 403, message: 'A source file or directory cannot be read' },
  target_not_found: { status: 404, message: 'The target base directory does not exist' },
  target_not_directory: { status: 400, message: 'The target base path is not a directory' },
  target_is_symlink: { status: 400, message: 'The target path is or contains a symbolic link; point base_dir at the real path' },
  target_not_writable: { status: 403, message: 'The target directory is not writable' },
  target_io_error: { status: 500, message: 'Reading or writing the target failed' },
  invalid_encryption_key: { status: 400, message: 'The age recipient or identity is malformed' },
  decryption_failed: { status: 400, message: 'The payload cannot be decrypted with the given identity' },
  artifact_missing: { status: 404, message: 'A file of the snapshot is missing on the target' },
  artifact_corrupt: { status: 409, message: 'A file of the snapshot does not match its recorded size, hash or format' },
  artifact_unsupported: { status: 400, message: 'The snapshot uses a format feature this version cannot read' },
  backup_aborted: { status: 409, message: 'The backup was canceled' },
  // raw_tree_v1 on a target that cannot stream (WebDAV) is listed back before
  // complete.json (engine/format/stored-tree-check.ts); details {path, reason}.
  target_name_unsupported: { status: 502, message: 'The target stored a file under a different name and cannot return it under its own; use archive_v1 (names inside the archive) or another server' },
  target_lost_file: { status: 502, message: 'A file written to the target is missing or has another size when read back' },

  // --- WebDAV ----------------------------------------------------------------
  // One code per WebdavError kind (core/webdav-errors.ts). The WebDAV server is
  // upstream of Bastion, so its failures are 502 to our clients (a 401 would
  // tell a browser to re-authenticate with Bastion); a bad target setting is 400.
  webdav_auth: { status: 502, message: 'The WebDAV server refused the credentials or the access rights' },
  webdav_network: { status: 502, message: 'The WebDAV server could not be reached or is temporarily unavailable' },
  webdav_http: { status: 502, message: 'The WebDAV server answered with an unexpected response' },
  webdav_config: { status: 400, message: 'The WebDAV target settings are invalid' },

  // --- jobs and runs -----------------------------------------------------------
  // SQL functions of sql/migrations/0003 raise these; a failed run's
  // runs.error_code is one of these or a backup/WebDAV code above.
  job_not_found: { status: 404, message: 'The job does not exist' },
  job_name_taken: { status: 409, message: 'Another job that is not archived already has this name' },
  job_archived: { status: 409, message: 'The job is archived; unarchive it first' },
  job_changed: { status: 409, message: 'The job was changed since it was loaded; reload it and apply the change again' },
  invalid_spec: { status: 400, message: 'The job spec is invalid' },
  invalid_schedule: { status: 400, message: 'The schedule is not a valid 5-field cron expression (or @daily, @hourly, …)' },
  invalid_timezone: { status: 400, message: 'The time zone is not an IANA time zone this server knows' },
  node_not_found: { status: 404, message: 'The node does not exist (only "hub" until agents are enrolled)' },
  node_not_supported: { status: 400, message: 'Runs cannot be executed on this node yet' },
  run_not_found: { status: 404, message: 'The run does not exist' },
  run_not_running: { status: 409, message: 'The run is not running (it already ended, or was never started)' },
  overlap_rejected: { status: 409, message: 'Another run of this job is queued or running and the overlap policy is reject' },
  worker_lost: { status: 500, message: 'The worker executing the run stopped sending heartbeats (it crashed or lost the database)' },
  target_changed: { status: 409, message: "The job's target changed after this run started writing; the run cannot resume elsewhere" },
  secret_not_found: { status: 404, message: 'The secret does not exist on this node' },
  invalid_secret: { status: 400, message: 'The secret is invalid' },
  secret_key_unavailable: { status: 500, message: 'No secret key: set BASTION_SECRET_KEY or keep <data_dir>/secret.key' },
  secret_key_mismatch: { status: 500, message: 'The secret was encrypted with a different secret key than the one this process has' },
  secret_corrupt: { status: 500, message: 'The stored secret fails authentication (altered, or moved to another node, kind or name)' },

  // --- snapshots and the delete queue -----------------------------------------
  // SQL functions of sql/migrations/0004 raise these (job_not_found and
  // job_name_taken come from the jobs section); details name the run ids or
  // the task status involved.
  snapshot_not_found: { status: 404, message: 'The snapshot does not exist in this job' },
  snapshot_pinned: { status: 409, message: 'The snapshot is pinned; unpin it or confirm with force' },
  snapshot_in_use: { status: 409, message: 'The snapshot is in use by a restore, verify or relay; wait, or confirm with force' },
  snapshot_not_present: { status: 409, message: 'The snapshot is not present (it is being deleted, deleted or missing)' },
  empty_run_ids: { status: 400, message: 'The request names no snapshot' },
  too_many_run_ids: { status: 400, message: 'A request may name at most 1000 snapshots' },
  invalid_cursor: { status: 400, message: 'The page cursor is malformed; start again from the first page' },
  delete_task_not_found: { status: 404, message: 'The snapshot has no delete task' },
  task_running: { status: 409, message: 'An attempt of this task is running; wait for its outcome' },
  not_retryable: { status: 409, message: 'Only retrying, blocked, ignored or abandoned tasks can be retried' },
  not_ignorable: { status: 409, message: 'A task that is done cannot be ignored' },
  not_ignored: { status: 409, message: 'The task is not ignored' },
  lease_not_found: { status: 404, message: 'The snapshot lease does not exist (released, or expired and swept)' },
  job_deleting: { status: 409, message: 'The job is being deleted with its data' },

  // --- retention ---------------------------------------------------------------
  invalid_retention_policy: { status: 400, message: 'The retention policy is invalid' },
  invalid_retention_time_zone: { status: 400, message: 'The job time zone is not a time zone this server knows (IANA name expected)' },
  retention_disabled: { status: 400, message: 'Retention is disabled for this job; enable it or pass an enabled policy' },
  // sql/migrations/0005: an apply with the saved policy found it changed by someone else meanwhile.
  retention_policy_changed: { status: 409, message: "The job's retention policy changed while this request ran; preview again" },

  // --- incomplete cleanup -------------------------------------------------------
  // SQL functions of sql/migrations/0006 raise these; the 409s task_running,
  // not_retryable, not_ignorable and not_ignored come from the shared queue
  // functions (delete queue section).
  cleanup_task_not_found: { status: 404, message: 'The run has no incomplete-cleanup task' },

  // --- auth, users, tokens -------------------------------------------------------
  // Raised by the gateway (gateway/auth/*) and by sql/migrations/0002.
  invalid_credentials: { status: 401, message: 'Wrong username or password' },
  invalid_csrf: { status: 401, message: 'Missing or wrong X-CSRF-Token header; read the token from GET /api/session' },
  session_expired: { status: 401, message: 'The session has expired or was ended; sign in again' },
  invalid_token: { status: 401, message: 'The API token is unknown, revoked or expired' },
  user_disabled: { status: 403, message: 'This account is disabled' },
  origin_not_allowed: { status: 403, message: 'The Origin header does not match this server' },
  already_initialized: { status: 409, message: 'Setup is closed: an admin already exists; sign in instead' },
  invalid_username: { status: 400, message: 'The username is invalid' },
  invalid_password: { status: 400, message: 'The password must be 12 to 1024 characters long' },
  username_taken: { status: 409, message: 'A user with this name already exists' },
  user_not_found: { status: 404, message: 'The user does not exist' },
  last_admin: { status: 409, message: 'This is the last enabled admin; make another user admin first' },
  cannot_disable_self: { status: 409, message: 'You cannot disable your own account' },
  token_not_found: { status: 404, message: 'The API token does not exist' },
  token_role_too_high: { status: 400, message: 'A token cannot have a higher role than its user' },
  // GraphQL request errors (extensions.code), raised before execution.
  invalid_query: { status: 400, message: 'The GraphQL document is invalid' },
  query_too_complex: { status: 400, message: 'The query is too deep, too wide or uses too many aliases' },
  pagination_required: { status: 400, message: 'Connections need `first` or `last` between 0 and 200' },
  not_implemented: { status: 501, message: 'This action is not available in this build' },

  // --- agents ---------------------------------------------------------------------
  // sql/migrations/0007 and gateway/agents raise these; runs.error_code of agent
  // runs may be agent_offline, agent_lost, agent_revoked or agent_failed.
  enrollment_token_invalid: { status: 401, message: 'The enrollment token is unknown or malformed' },
  enrollment_token_expired: { status: 401, message: 'The enrollment token has expired; ask an admin for a new one' },
  enrollment_token_exhausted: { status: 401, message: 'The enrollment token was already used as many times as it allows' },
  enrollment_token_revoked: { status: 401, message: 'The enrollment token was revoked' },
  enrollment_token_not_found: { status: 404, message: 'The enrollment token does not exist' },
  agent_key_invalid: { status: 401, message: 'The agent key is unknown or malformed' },
  agent_key_revoked: { status: 401, message: 'The agent was revoked; enroll it again with a new token' },
  agent_not_found: { status: 404, message: 'The agent does not exist' },
  agent_revoked: { status: 409, message: 'The agent is revoked' },
  agent_name_taken: { status: 409, message: 'An agent that is not revoked already has this name' },
  agent_offline: { status: 409, message: 'The agent was not connected to the hub' },
  agent_lost: { status: 502, message: 'The agent disconnected during the work and did not come back in time' },
  agent_failed: { status: 502, message: 'The agent reported a failure without a known error code' },
  agent_identity_mismatch: { status: 400, message: "The agent's data directory belongs to another hub or is damaged" },
} as const satisfies Record<string, ErrorDef>;

/** Every stable error code. */
export type ErrorCode = keyof typeof ERRORS;

/** True when `code` is a code of the catalogue. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERRORS, code);
}

/** Extra structured information for a client: which field, why, with which parameters. */
export interface ErrorDetails {
  field?: string;
  reason?: string;
  [key: string]: unknown;
}

/**
 * An error whose code and message are safe to show to a client. Anything that
 * is not a BastionError is treated as unexpected: logged with an id and masked.
 */
export class BastionError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: ErrorDetails | undefined;

  constructor(code: ErrorCode, message?: string, options: { details?: ErrorDetails; cause?: unknown } = {}) {
    super(message ?? ERRORS[code].message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BastionError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = options.details;
  }
}

/**
 * SQLSTATEs raised by Bastion's SQL functions, one per HTTP status class, so
 * the API can map a database error without parsing text. The exception message
 * is the stable code; DETAIL carries the human message; HINT carries JSON details.
 */
export const SQLSTATE_BY_STATUS = {
  400: 'BA400',
  401: 'BA401',
  403: 'BA403',
  404: 'BA404',
  409: 'BA409',
  413: 'BA413',
  429: 'BA429',
} as const;
