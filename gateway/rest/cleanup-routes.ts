/**
 * REST routes of the incomplete-cleanup queue (seed 004 "HTTP API",
 * reference §3.4), thin over db/queries/cleanup-tasks.ts and the SQL
 * functions of sql/migrations/0006 (which GraphQL and psql call too):
 *
 *   GET  /api/maintenance/incomplete-cleanup                   list (viewer)
 *   GET  /api/maintenance/incomplete-cleanup/:run_id           task + run + events (viewer)
 *   POST /api/maintenance/incomplete-cleanup/:run_id/retry-now (operator)
 *   POST /api/maintenance/incomplete-cleanup/:run_id/ignore    {reason?} (operator)
 *   POST /api/maintenance/incomplete-cleanup/:run_id/unignore  (operator)
 *   GET  /api/settings/incomplete-cleanup                      the setting and counts (viewer)
 *   PUT  /api/settings/incomplete-cleanup                      {days} (admin)
 *
 * List filters take several values, written `status=a&status=b` or
 * `status[]=a&status[]=b` (status, target_type, node_id, job_id); an unknown
 * value is a 400 naming the filter with reason `unsupported_value`. page
 * starts at 1; page_size defaults to 20 and a larger one than 100 is served
 * as 100 (the answer's page_size says so, as in the reference); a page or
 * page_size below 1 or not a whole number is a 400 with reason `too_small`
 * or `invalid_format`. Mutations with a session need the CSRF header.
 */
import { z } from 'zod';
import { TASK_STATUSES } from '../../core/task-status.ts';
import { isNodeId } from '../../core/ids.ts';
import {
  DEFAULT_CLEANUP_PAGE_SIZE,
  getCleanupSettings,
  getCleanupTask,
  ignoreCleanupTask,
  listCleanupTasks,
  MAX_CLEANUP_PAGE_SIZE,
  retryCleanupTaskNow,
  setIncompleteCleanupDays,
  unignoreCleanupTask,
} from '../../db/queries/cleanup-tasks.ts';
import { route, type ApiRoute } from './api-route.ts';
import { queryInt, stringList, uuid } from './input.ts';

const runParam = z.object({ run_id: uuid }).strict();
const TARGET_TYPES = ['local_dir', 'webdav'] as const;

const listOf = <T extends z.ZodType<unknown, string>>(item: T) => stringList.pipe(z.array(item));

/** Incomplete-cleanup routes. */
export const cleanupRoutes: readonly ApiRoute[] = [
  route({
    method: 'get',
    path: '/api/maintenance/incomplete-cleanup',
    role: 'viewer',
    summary: `Cleanup tasks, next attempt first: status, target_type, node_id, job_id (each repeatable), page (from 1), page_size (1–${MAX_CLEANUP_PAGE_SIZE}, default ${DEFAULT_CLEANUP_PAGE_SIZE}); {items, page, page_size, total}`,
    query: z
      .object({
        status: listOf(z.enum(TASK_STATUSES, { message: `expected one of ${TASK_STATUSES.join(', ')}` })).optional(),
        target_type: listOf(z.enum(TARGET_TYPES, { message: 'expected local_dir or webdav' })).optional(),
        node_id: listOf(z.string().max(64).refine(isNodeId, "expected 'hub' or an agent UUID")).optional(),
        job_id: listOf(uuid).optional(),
        page: queryInt(1, 1_000_000).optional(),
        // Above the maximum is clamped (reference §3.4); below 1 or not a number is refused.
        page_size: queryInt(1, 1_000_000).transform((n) => Math.min(n, MAX_CLEANUP_PAGE_SIZE)).optional(),
      })
      .strict(),
    handle: ({ db, query }) => listCleanupTasks(db, query),
  }),
  route({
    method: 'get',
    path: '/api/maintenance/incomplete-cleanup/:run_id',
    role: 'viewer',
    summary: 'A cleanup task (all columns, target snapshot redacted), its run, and its newest 200 events oldest first (404 cleanup_task_not_found)',
    params: runParam,
    handle: ({ db, params }) => getCleanupTask(db, params.run_id),
  }),
  route({
    method: 'post',
    path: '/api/maintenance/incomplete-cleanup/:run_id/retry-now',
    role: 'operator',
    summary: 'Retry a retrying, blocked, ignored or abandoned cleanup now, with a fresh attempt budget (409 task_running, not_retryable)',
    params: runParam,
    handle: async ({ db, params }) => ({ task: await retryCleanupTaskNow(db, params.run_id) }),
  }),
  route({
    method: 'post',
    path: '/api/maintenance/incomplete-cleanup/:run_id/ignore',
    role: 'operator',
    summary: 'Stop cleaning a run {reason?}; its partial data stays (409 task_running, not_ignorable)',
    params: runParam,
    body: z.object({ reason: z.string().max(10_000).nullish() }).strict(),
    handle: async ({ db, params, body }) => ({ task: await ignoreCleanupTask(db, params.run_id, body.reason ?? null) }),
  }),
  route({
    method: 'post',
    path: '/api/maintenance/incomplete-cleanup/:run_id/unignore',
    role: 'operator',
    summary: 'Queue an ignored cleanup again, due now (409 not_ignored)',
    params: runParam,
    handle: async ({ db, params }) => ({ task: await unignoreCleanupTask(db, params.run_id) }),
  }),
  route({
    method: 'get',
    path: '/api/settings/incomplete-cleanup',
    role: 'viewer',
    summary: 'The incomplete-cleanup setting (days; 0 = off) and the queue\'s task counts per status',
    handle: ({ db }) => getCleanupSettings(db),
  }),
  route({
    method: 'put',
    path: '/api/settings/incomplete-cleanup',
    role: 'admin',
    summary: 'Set after how many days runs that never completed are cleaned up {days: 0–3650; 0 turns cleanup off}',
    body: z.object({ days: z.number().int().min(0).max(3650) }).strict(),
    handle: ({ db, body }) => setIncompleteCleanupDays(db, body.days),
  }),
];
