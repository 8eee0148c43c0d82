/**
 * REST routes for a job's snapshots and their delete tasks (seed 002 §8 and
 * the reference's §1.5–§1.9), thin over db/queries/snapshots.ts and the SQL
 * functions of sql/migrations/0004. Reads are for every role; pins,
 * deletes, retries and ignores for operators.
 */
import { z } from 'zod';
import { BastionError } from '../../core/errors.ts';
import { ignoreDeleteTask, listDeleteEvents, listDeleteTasks, retryDeleteTaskNow, unignoreDeleteTask } from '../../db/queries/delete-tasks.ts';
import { getSnapshot, listSnapshots, pinSnapshot, requestSnapshotDelete, requestSnapshotDeletes, unpinSnapshot } from '../../db/queries/snapshots.ts';
import { route, type ApiRoute } from './api-route.ts';
import { queryBoolean, queryInt, stringList, uuid } from './input.ts';

const jobParam = z.object({ job_id: uuid }).strict();
const jobRunParam = z.object({ job_id: uuid, run_id: uuid }).strict();

const reason = z.string().max(10_000).nullish();

async function deleteTask(db: Parameters<typeof getSnapshot>[0], jobId: string, runId: string) {
  const detail = await getSnapshot(db, jobId, runId, { events: 0 });
  if (!detail.delete_task) throw new BastionError('delete_task_not_found', undefined, { details: { job_id: jobId, run_id: runId } });
  return detail;
}

/** Snapshot routes. */
export const snapshotRoutes: readonly ApiRoute[] = [
  route({
    method: 'get',
    path: '/api/jobs/:job_id/snapshots',
    role: 'viewer',
    summary: 'List a job\'s snapshots, newest first: status (repeatable), pinned, from, to, target_type, artifact_format, node_id, limit (1–200, default 50), cursor',
    params: jobParam,
    query: z
      .object({
        status: stringList.optional(),
        pinned: queryBoolean.optional(),
        from: z.string().max(64).optional(),
        to: z.string().max(64).optional(),
        target_type: z.string().max(32).optional(),
        artifact_format: z.string().max(32).optional(),
        node_id: z.string().max(64).optional(),
        limit: queryInt(-1_000_000, 1_000_000).optional(),
        cursor: z.string().max(1024).optional(),
      })
      .strict(),
    handle: ({ db, params, query }) => listSnapshots(db, params.job_id, { ...query, status: query.status as never }),
  }),
  route({
    method: 'get',
    path: '/api/jobs/:job_id/snapshots/:run_id',
    role: 'viewer',
    summary: 'One snapshot with its delete task and latest events',
    params: jobRunParam,
    handle: ({ db, params }) => getSnapshot(db, params.job_id, params.run_id),
  }),
  route({
    method: 'post',
    path: '/api/jobs/:job_id/snapshots/:run_id/delete',
    role: 'operator',
    summary: 'Queue the delete of one snapshot {force?, reason?} (also ?force=true); pinned or in-use snapshots need force',
    params: jobRunParam,
    query: z.object({ force: queryBoolean.optional() }).strict(),
    body: z.object({ force: z.boolean().optional(), reason }).strict(),
    handle: async ({ db, params, query, body }) => ({
      run_id: params.run_id,
      outcome: await requestSnapshotDelete(db, params.job_id, params.run_id, { force: body.force ?? query.force ?? false, reason: body.reason ?? null }),
    }),
  }),
  route({
    method: 'post',
    path: '/api/jobs/:job_id/snapshots/delete',
    role: 'operator',
    summary: 'Queue the deletes of up to 1000 snapshots {run_ids, force?, reason?}, all or nothing',
    params: jobParam,
    body: z.object({ run_ids: z.array(z.string().max(64)).max(10_000), force: z.boolean().optional(), reason }).strict(),
    maxBodyBytes: 1024 * 1024,
    handle: async ({ db, params, body }) => ({
      items: await requestSnapshotDeletes(db, params.job_id, { run_ids: [...new Set(body.run_ids.map((r) => r.trim()).filter((r) => r !== ''))], force: body.force ?? false, reason: body.reason ?? null }),
    }),
  }),
  route({
    method: 'post',
    path: '/api/jobs/:job_id/snapshots/:run_id/pin',
    role: 'operator',
    summary: 'Pin a snapshot {reason?, expires_at?}: retention and cascades skip it, deletes need force',
    params: jobRunParam,
    body: z.object({ reason, expires_at: z.string().max(64).nullish() }).strict(),
    handle: async ({ db, params, body }) => ({ snapshot: await pinSnapshot(db, params.job_id, params.run_id, { reason: body.reason ?? null, expires_at: body.expires_at ?? null }) }),
  }),
  route({
    method: 'post',
    path: '/api/jobs/:job_id/snapshots/:run_id/unpin',
    role: 'operator',
    summary: 'Unpin a snapshot',
    params: jobRunParam,
    handle: async ({ db, params }) => ({ snapshot: await unpinSnapshot(db, params.job_id, params.run_id) }),
  }),
  route({
    method: 'get',
    path: '/api/jobs/:job_id/snapshots/:run_id/delete-task',
    role: 'viewer',
    summary: 'The delete task of a snapshot (all columns)',
    params: jobRunParam,
    handle: async ({ db, params }) => ({ task: (await deleteTask(db, params.job_id, params.run_id)).delete_task }),
  }),
  route({
    method: 'get',
    path: '/api/jobs/:job_id/snapshots/:run_id/delete-events',
    role: 'viewer',
    summary: 'Events of a snapshot\'s delete task after after_seq, oldest first (limit 1–200, default 200)',
    params: jobRunParam,
    query: z.object({ after_seq: queryInt(0, 2_000_000_000).optional(), limit: queryInt(1, 200).optional() }).strict(),
    handle: async ({ db, params, query }) => ({ items: await listDeleteEvents(db, params.job_id, params.run_id, { afterSeq: query.after_seq ?? 0, limit: query.limit ?? 200 }) }),
  }),
  route({
    method: 'post',
    path: '/api/jobs/:job_id/snapshots/:run_id/delete/retry-now',
    role: 'operator',
    summary: 'Retry a retrying, blocked, ignored or abandoned delete now (409 task_running, not_retryable)',
    params: jobRunParam,
    handle: async ({ db, params }) => ({ task: await retryDeleteTaskNow(db, params.job_id, params.run_id) }),
  }),
  route({
    method: 'post',
    path: '/api/jobs/:job_id/snapshots/:run_id/delete/ignore',
    role: 'operator',
    summary: 'Stop retrying a delete {reason?} (409 task_running, not_ignorable)',
    params: jobRunParam,
    body: z.object({ reason }).strict(),
    handle: async ({ db, params, body }) => ({ task: await ignoreDeleteTask(db, params.job_id, params.run_id, body.reason ?? null) }),
  }),
  route({
    method: 'post',
    path: '/api/jobs/:job_id/snapshots/:run_id/delete/unignore',
    role: 'operator',
    summary: 'Queue an ignored delete again (409 not_ignored)',
    params: jobRunParam,
    handle: async ({ db, params }) => ({ task: await unignoreDeleteTask(db, params.job_id, params.run_id) }),
  }),
  route({
    method: 'get',
    path: '/api/maintenance/delete-tasks',
    role: 'viewer',
    summary: 'Delete tasks of every job, newest first: status (repeatable), job_id, node_id, target_type, limit (1–200, default 50), cursor',
    query: z
      .object({
        status: stringList.optional(),
        job_id: z.string().max(64).optional(),
        node_id: z.string().max(64).optional(),
        target_type: z.string().max(32).optional(),
        limit: queryInt(-1_000_000, 1_000_000).optional(),
        cursor: z.string().max(1024).optional(),
      })
      .strict(),
    handle: ({ db, query }) => listDeleteTasks(db, query),
  }),
];
