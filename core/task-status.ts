/**
 * The task state machine shared by the delete queue and the incomplete
 * cleanup queue (DESIGN §5), as the API and the UI need it: statuses, error
 * kinds, which operator action each status allows, when a task is abandoned,
 * how a delete task shows on its snapshot, and the watchdog's timing.
 *
 * The transitions themselves happen in SQL (sql/migrations/0004, the
 * bastion_private.task_* functions); this module mirrors their rules so a
 * screen can enable exactly the buttons the database will accept. Tests run
 * both sides against each other.
 *
 *   queued ──claim──▶ running ──outcome──▶ done
 *     ▲                 │  │ └─failure─▶ retrying ──due──▶ (claim)
 *     │                 │  └─auth/config─▶ blocked ──due──▶ (claim)
 *     │                 └─20 attempts / 30 days─▶ abandoned
 *     └── retry-now (retrying, blocked, ignored, abandoned), unignore (ignored)
 *   ignore: any status but running and done → ignored
 */

/** Task statuses (SQL enum bastion.task_status), in lifecycle order. */
export const TASK_STATUSES = ['queued', 'running', 'retrying', 'blocked', 'done', 'ignored', 'abandoned'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

/** Failure kinds (SQL enum bastion.task_error_kind); each has a backoff row (core/backoff.ts). */
export const TASK_ERROR_KINDS = ['network', 'http', 'io', 'auth', 'config', 'unknown', 'offline'] as const;
export type TaskErrorKind = (typeof TASK_ERROR_KINDS)[number];

/** True for a task error kind. */
export function isTaskErrorKind(value: unknown): value is TaskErrorKind {
  return typeof value === 'string' && (TASK_ERROR_KINDS as readonly string[]).includes(value);
}

/** Statuses a claim picks up when due (blocked tasks are retried slowly, by their backoff row). */
export const CLAIMABLE_STATUSES: readonly TaskStatus[] = ['queued', 'retrying', 'blocked'];

/** Attempts after which a failing task is abandoned. */
export const MAX_ATTEMPTS = 20;
/** Age of the current retry cycle after which a failing task is abandoned. */
export const MAX_CYCLE_AGE_MS = 30 * 24 * 3600 * 1000;

/** Status a failed attempt leads to, before the abandon rule: auth and config need an operator. */
export function failureStatus(kind: TaskErrorKind): 'blocked' | 'retrying' {
  return kind === 'auth' || kind === 'config' ? 'blocked' : 'retrying';
}

/**
 * Why a failing task is abandoned instead of retried, or null. `attempts`
 * counts the attempt that just failed; the age runs from the start of the
 * cycle (creation, retry-now, unignore or a new request).
 */
export function abandonReason(attempts: number, cycleStartedAt: Date, now: Date = new Date()): 'max_attempts' | 'max_age' | null {
  if (attempts >= MAX_ATTEMPTS) return 'max_attempts';
  if (now.getTime() - cycleStartedAt.getTime() >= MAX_CYCLE_AGE_MS) return 'max_age';
  return null;
}

/** An operator action on a task. */
export type TaskAction = 'retry_now' | 'ignore' | 'unignore';

/**
 * Whether `action` is accepted in `status`, and the error code the database
 * answers otherwise (409s of the seeds and the reference).
 */
export function checkTaskAction(action: TaskAction, status: TaskStatus): { ok: true } | { ok: false; code: 'task_running' | 'not_retryable' | 'not_ignorable' | 'not_ignored' } {
  switch (action) {
    case 'retry_now':
      if (status === 'running') return { ok: false, code: 'task_running' };
      return status === 'retrying' || status === 'blocked' || status === 'ignored' || status === 'abandoned' ? { ok: true } : { ok: false, code: 'not_retryable' };
    case 'ignore':
      if (status === 'running') return { ok: false, code: 'task_running' };
      return status === 'done' ? { ok: false, code: 'not_ignorable' } : { ok: true };
    case 'unignore':
      return status === 'ignored' ? { ok: true } : { ok: false, code: 'not_ignored' };
  }
}

/** Snapshot statuses (SQL enum bastion.snapshot_status). */
export const SNAPSHOT_STATUSES = ['present', 'deleting', 'deleted', 'missing', 'error'] as const;
export type SnapshotStatus = (typeof SNAPSHOT_STATUSES)[number];

/**
 * How a snapshot shows while its delete task is in `status` (the SQL function
 * bastion_private.artifact_delete_sync): deleting while waiting or running
 * (a retrying task's error is shown on the snapshot), error when the task
 * stopped without deleting (blocked, abandoned, ignored), deleted or missing
 * when done.
 */
export function snapshotStatusForTask(status: TaskStatus, outcome: 'deleted' | 'not_found' | null): SnapshotStatus {
  switch (status) {
    case 'done':
      return outcome === 'deleted' ? 'deleted' : 'missing';
    case 'blocked':
    case 'abandoned':
    case 'ignored':
      return 'error';
    default:
      return 'deleting';
  }
}

/** A running attempt sends a heartbeat this often. */
export const HEARTBEAT_INTERVAL_MS = 10_000;
/**
 * A running task whose heartbeat is older than this is recovered by the
 * watchdog: 4 missed heartbeats, so a slow database round trip is not taken
 * for a dead worker.
 */
export const STALE_AFTER_SECONDS = 40;
/** The watchdog runs every minute (crontab). */
export const WATCHDOG_PERIOD_SECONDS = 60;
/**
 * A recovered task is due again after this long (the reference waited 60 s);
 * short, because a killed worker is usually a restart, not a poisoned task —
 * and a task that kills every worker is still abandoned after 20 attempts.
 */
export const RECOVERY_DELAY_SECONDS = 30;
/**
 * Worst case from a worker's death to its task being `retrying` again: the
 * heartbeat goes stale, then the next watchdog tick finds it (plus the tick's
 * own scheduling delay of a few seconds). The issue asks for 2 minutes.
 */
export const MAX_RECOVERY_SECONDS = STALE_AFTER_SECONDS + WATCHDOG_PERIOD_SECONDS;

/** Short advice per failure kind, stored in failure events (reference §1.8 hint texts, plus io and offline). */
export const FAILURE_HINTS: Readonly<Record<TaskErrorKind, string>> = {
  config: 'target snapshot configuration is invalid; verify target settings',
  auth: 'target authentication/permission failure; verify credentials and access',
  network: 'temporary network failure; verify connectivity and retry',
  http: 'remote service returned an unexpected HTTP response; inspect status and response body',
  io: 'file system error on the node holding the data; check the disk, mount and permissions',
  unknown: 'unknown delete failure; inspect task error details and service logs',
  offline: 'the node holding the data is not connected; the task runs when it reconnects',
};
