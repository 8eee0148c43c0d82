import t from 'tap';
import { abandonReason, checkTaskAction, failureStatus, MAX_RECOVERY_SECONDS, snapshotStatusForTask, TASK_STATUSES, type TaskStatus } from './task-status.ts';

t.test('operator actions per status (the seeds\' 409 rules)', async (t) => {
  const table: Record<TaskStatus, [string, string, string]> = {
    queued: ['not_retryable', 'ok', 'not_ignored'],
    running: ['task_running', 'task_running', 'not_ignored'],
    retrying: ['ok', 'ok', 'not_ignored'],
    blocked: ['ok', 'ok', 'not_ignored'],
    done: ['not_retryable', 'not_ignorable', 'not_ignored'],
    ignored: ['ok', 'ok', 'ok'],
    abandoned: ['ok', 'ok', 'not_ignored'],
  };
  for (const status of TASK_STATUSES) {
    const got = (['retry_now', 'ignore', 'unignore'] as const).map((a) => {
      const r = checkTaskAction(a, status);
      return r.ok ? 'ok' : r.code;
    });
    t.same(got, table[status], status);
  }
});

t.test('abandon after 20 attempts or 30 days of the cycle', async (t) => {
  const now = new Date('2026-11-20T12:00:00Z');
  const day = 86_400_000;
  t.equal(abandonReason(19, new Date(now.getTime() - day), now), null);
  t.equal(abandonReason(20, new Date(now.getTime() - day), now), 'max_attempts');
  t.equal(abandonReason(1, new Date(now.getTime() - 30 * day), now), 'max_age');
  t.equal(abandonReason(1, new Date(now.getTime() - 30 * day + 1000), now), null);
});

t.test('failure kinds: auth and config block, the rest retry', async (t) => {
  t.equal(failureStatus('auth'), 'blocked');
  t.equal(failureStatus('config'), 'blocked');
  for (const k of ['network', 'http', 'io', 'unknown', 'offline'] as const) t.equal(failureStatus(k), 'retrying', k);
});

t.test('snapshot status follows its delete task', async (t) => {
  t.equal(snapshotStatusForTask('done', 'deleted'), 'deleted');
  t.equal(snapshotStatusForTask('done', 'not_found'), 'missing');
  for (const s of ['queued', 'running', 'retrying'] as const) t.equal(snapshotStatusForTask(s, null), 'deleting', s);
  for (const s of ['blocked', 'abandoned', 'ignored'] as const) t.equal(snapshotStatusForTask(s, null), 'error', s);
});

t.test('a killed worker\'s task is recovered within the 2 minutes the issue allows', async (t) => {
  t.ok(MAX_RECOVERY_SECONDS <= 110, `stale threshold + watchdog period = ${MAX_RECOVERY_SECONDS} s, leaving room for the tick's own delay`);
});
