/**
 * REST routes for jobs and runs (sql/migrations/0003 through
 * db/queries/jobs.ts and runs.ts) and for archiving and deleting jobs
 * (sql/migrations/0004, seed 004 "Job archive"). Admins create and change
 * jobs and delete them; operators run, archive and unarchive; everyone
 * reads.
 */
import { z } from 'zod';
import { BastionError } from '../../core/errors.ts';
import { parseJobInput } from '../../core/job-input.ts';
import { archiveJob, deleteJob, unarchiveJob } from '../../db/queries/job-lifecycle.ts';
import { createJob, getJobById, listJobs, updateJob } from '../../db/queries/jobs.ts';
import { getRunDetail, listRunEvents, listRuns, requestRun, type RunStatus } from '../../db/queries/runs.ts';
import { route, type ApiRoute } from './api-route.ts';
import { queryBoolean, queryInt, stringList, uuid } from './input.ts';

const jobParam = z.object({ job_id: uuid }).strict();
const runParam = z.object({ run_id: uuid }).strict();
const RUN_STATUSES = ['queued', 'running', 'success', 'failed', 'canceled', 'rejected'] as const;

const runsQuery = z
  .object({
    status: stringList.pipe(z.array(z.enum(RUN_STATUSES, { message: `expected one of ${RUN_STATUSES.join(', ')}` }))).optional(),
    limit: queryInt(1, 500).optional(),
    /** Keyset: created_at and id of the last run of the previous page. */
    before_created_at: z.iso.datetime({ offset: true }).optional(),
    before_id: uuid.optional(),
  })
  .strict();

async function runsPage(db: Parameters<typeof listRuns>[0], jobId: string | undefined, q: z.output<typeof runsQuery>) {
  if ((q.before_created_at === undefined) !== (q.before_id === undefined)) {
    throw new BastionError('invalid_input', 'before_created_at and before_id go together', { details: { field: q.before_id === undefined ? 'before_id' : 'before_created_at', reason: 'required' } });
  }
  const limit = q.limit ?? 50;
  const items = await listRuns(db, {
    ...(jobId ? { jobId } : {}),
    ...(q.status && q.status.length > 0 ? { statuses: q.status as RunStatus[] } : {}),
    limit,
    ...(q.before_id ? { before: { created_at: new Date(q.before_created_at as string), id: q.before_id } } : {}),
  });
  const last = items.length === limit ? items[items.length - 1] : undefined;
  return { items, next: last ? { before_created_at: last.created_at.toISOString(), before_id: last.id } : null };
}

/** Job and run routes. */
export const jobRoutes: readonly ApiRoute[] = [
  route({
    method: 'get',
    path: '/api/jobs',
    role: 'viewer',
    summary: 'List jobs with their latest run (archived ones with include_archived=true)',
    query: z.object({ include_archived: queryBoolean.optional() }).strict(),
    handle: async ({ db, query }) => ({ items: await listJobs(db, { includeArchived: query.include_archived ?? false }) }),
  }),
  route({
    method: 'post',
    path: '/api/jobs',
    role: 'admin',
    summary: 'Create a job {name, node_id?, schedule?, schedule_timezone?, overlap_policy?, spec}',
    status: 201,
    body: z.unknown(),
    maxBodyBytes: 256 * 1024,
    handle: async ({ db, body }) => ({ job: await createJob(db, parseJobInput(body)) }),
  }),
  route({
    method: 'get',
    path: '/api/jobs/:job_id',
    role: 'viewer',
    summary: 'One job',
    params: jobParam,
    handle: async ({ db, params }) => {
      const job = await getJobById(db, params.job_id);
      if (!job) throw new BastionError('job_not_found', undefined, { details: { job_id: params.job_id } });
      return { job };
    },
  }),
  route({
    method: 'put',
    path: '/api/jobs/:job_id',
    role: 'admin',
    summary: 'Replace a job\'s fields (same body as create, plus expected_updated_at for a concurrency check: 409 job_changed)',
    params: jobParam,
    body: z.record(z.string(), z.unknown()),
    maxBodyBytes: 256 * 1024,
    handle: async ({ db, params, body }) => {
      const { expected_updated_at: expected, ...input } = body;
      if (expected !== undefined && expected !== null && (typeof expected !== 'string' || Number.isNaN(Date.parse(expected)))) {
        throw new BastionError('invalid_input', 'expected_updated_at must be an ISO date-time', { details: { field: 'expected_updated_at', reason: 'invalid_format' } });
      }
      return { job: await updateJob(db, params.job_id, typeof expected === 'string' ? new Date(expected) : null, parseJobInput(input)) };
    },
  }),
  route({
    method: 'post',
    path: '/api/jobs/:job_id/run',
    role: 'operator',
    summary: 'Run a job now; the run comes back queued (or rejected by the overlap policy)',
    status: 201,
    params: jobParam,
    handle: async ({ db, params }) => ({ run: await requestRun(db, params.job_id) }),
  }),
  route({
    method: 'get',
    path: '/api/jobs/:job_id/runs',
    role: 'viewer',
    summary: 'Runs of a job, newest first: status (repeatable), limit (1–500), before_created_at + before_id (keyset)',
    params: jobParam,
    query: runsQuery,
    handle: async ({ db, params, query }) => {
      if (!(await getJobById(db, params.job_id))) throw new BastionError('job_not_found', undefined, { details: { job_id: params.job_id } });
      return runsPage(db, params.job_id, query);
    },
  }),
  route({
    method: 'get',
    path: '/api/runs',
    role: 'viewer',
    summary: 'Runs of every job, newest first (same query as a job\'s runs)',
    query: runsQuery,
    handle: ({ db, query }) => runsPage(db, undefined, query),
  }),
  route({
    method: 'get',
    path: '/api/runs/:run_id',
    role: 'viewer',
    summary: 'One run with its first 500 events',
    params: runParam,
    handle: ({ db, params }) => getRunDetail(db, params.run_id),
  }),
  route({
    method: 'get',
    path: '/api/runs/:run_id/events',
    role: 'viewer',
    summary: 'Events of a run after after_seq, oldest first (limit 1–5000, default 500)',
    params: runParam,
    query: z.object({ after_seq: queryInt(0, 2_000_000_000).optional(), limit: queryInt(1, 5000).optional() }).strict(),
    handle: async ({ db, params, query }) => ({ items: await listRunEvents(db, params.run_id, { afterSeq: query.after_seq ?? 0, limit: query.limit ?? 500 }) }),
  }),
  route({
    method: 'post',
    path: '/api/jobs/:job_id/archive',
    role: 'operator',
    summary: 'Archive a job; with cascade_snapshots (query or body) also queue deletes of its present, unpinned snapshots',
    params: jobParam,
    query: z.object({ cascade_snapshots: queryBoolean.optional() }).strict(),
    body: z.object({ cascade_snapshots: z.boolean().optional() }).strict(),
    handle: ({ db, params, query, body }) => archiveJob(db, params.job_id, body.cascade_snapshots ?? query.cascade_snapshots ?? false),
  }),
  route({
    method: 'post',
    path: '/api/jobs/:job_id/unarchive',
    role: 'operator',
    summary: 'Unarchive a job (409 job_deleting, job_name_taken)',
    params: jobParam,
    handle: async ({ db, params }) => {
      await unarchiveJob(db, params.job_id);
      return { job: await getJobById(db, params.job_id) };
    },
  }),
  route({
    method: 'del',
    path: '/api/jobs/:job_id',
    role: 'admin',
    summary: 'Delete a job: mode=delete_data_first (queue deletes of its snapshots, the job goes when they are done) or mode=keep_data (now; data stays on the targets); force to include pinned or in-use snapshots',
    params: jobParam,
    query: z.object({ mode: z.enum(['delete_data_first', 'keep_data'], { message: 'expected delete_data_first or keep_data' }), force: queryBoolean.optional() }).strict(),
    handle: ({ db, params, query }) => deleteJob(db, params.job_id, query.mode, { force: query.force ?? false }),
  }),
];
