/**
 * REST routes for retention (seed 002 §8 "保留策略", issue 5): a job's policy
 * (get/put), preview and apply, and the hub default with the tick schedule.
 * Thin over engine/retention and db/queries/retention.ts; the SQL functions
 * of sql/migrations/0005 enforce the same rules for GraphQL and psql.
 *
 * Roles: everyone reads and previews; operators apply; admins set policies
 * (a job's policy is part of its definition, which only admins edit) and
 * the hub default. Preview is a POST only because it takes a body: it
 * changes nothing, so like the reference it needs no CSRF token.
 */
import { z } from 'zod';
import { parseSchedule, latestSlot, nextSlots } from '../../core/cron-schedule.ts';
import { BastionError } from '../../core/errors.ts';
import { policyHash } from '../../core/retention-policy.ts';
import { countInheritingJobs, getRetentionSettings, loadRetentionJob, setDefaultRetention, setJobRetention, setRetentionSchedule } from '../../db/queries/retention.ts';
import { parseRetentionPolicy, resolveStoredPolicy } from '../../engine/retention/policy-input.ts';
import { applyRetention } from '../../engine/retention/retention-apply.ts';
import { MAX_PREVIEW_PAGE, PREVIEW_FILTERS, previewRetention } from '../../engine/retention/retention-preview.ts';
import { DEFAULT_RETENTION_SCHEDULE } from '../../engine/retention/retention-tick.ts';
import { route, type ApiRoute } from './api-route.ts';
import { uuid } from './input.ts';

const jobParam = z.object({ job_id: uuid }).strict();

type Db = Parameters<typeof loadRetentionJob>[0];

/** A job's policy as GET shows it: its own, the default, what applies and the last tick. */
async function jobRetention(db: Db, jobId: string) {
  const job = await loadRetentionJob(db, jobId);
  let effective: { policy: unknown; policy_hash: string; source: string } | null = null;
  let effectiveError: { error: string; message: string; details: unknown } | null = null;
  try {
    effective = resolveStoredPolicy(job.spec_retention, job.hub_default);
  } catch (e) {
    // A policy stored by hand that no longer validates: show it and why, so an admin can fix it.
    if (!(e instanceof BastionError)) throw e;
    effectiveError = { error: e.code, message: e.message, details: e.details ?? null };
  }
  return {
    job_id: job.id,
    archived: job.archived_at !== null,
    time_zone: job.schedule_timezone,
    policy: job.spec_retention ?? null,
    inherits: job.spec_retention === null || job.spec_retention === undefined,
    effective,
    effective_error: effectiveError,
    last_tick: job.state,
  };
}

async function hubRetention(db: Db) {
  const s = await getRetentionSettings(db);
  let defaultPolicy: { policy: unknown; policy_hash: string } | null = null;
  let defaultError: { error: string; message: string; details: unknown } | null = null;
  try {
    const p = parseRetentionPolicy(s.default_retention, 'settings.default_retention');
    defaultPolicy = { policy: p, policy_hash: policyHash(p) };
  } catch (e) {
    if (!(e instanceof BastionError)) throw e;
    defaultError = { error: e.code, message: e.message, details: e.details ?? null };
  }
  let cron;
  try {
    cron = parseSchedule(s.retention_schedule, 'UTC', s.now);
  } catch {
    cron = parseSchedule(DEFAULT_RETENTION_SCHEDULE, 'UTC', s.now);
  }
  return {
    default_policy: defaultPolicy,
    default_policy_error: defaultError,
    schedule: s.retention_schedule,
    schedule_timezone: 'UTC',
    current_round_at: latestSlot(cron, s.now),
    next_rounds_at: nextSlots(cron, s.now, 3),
    inheriting_jobs: await countInheritingJobs(db),
    updated_at: s.updated_at,
    updated_by: s.updated_by,
  };
}

/** Retention routes. */
export const retentionRoutes: readonly ApiRoute[] = [
  route({
    method: 'get',
    path: '/api/jobs/:job_id/retention',
    role: 'viewer',
    summary: "A job's retention: its own policy (null = inherits the hub default), the effective policy with its hash and source, and what the last tick did",
    params: jobParam,
    handle: ({ db, params }) => jobRetention(db, params.job_id),
  }),
  route({
    method: 'put',
    path: '/api/jobs/:job_id/retention',
    role: 'admin',
    summary: "Set a job's retention policy {policy} (null inherits the hub default); errors name the field (policy.keep_last, …)",
    params: jobParam,
    body: z.object({ policy: z.unknown() }).strict(),
    handle: async ({ db, params, body }) => {
      if (!('policy' in body)) throw new BastionError('invalid_input', 'body field policy is required (null inherits the hub default)', { details: { field: 'policy', reason: 'required' } });
      const policy = body.policy === null ? null : parseRetentionPolicy(body.policy, 'policy');
      await setJobRetention(db, params.job_id, policy);
      return jobRetention(db, params.job_id);
    },
  }),
  route({
    method: 'post',
    path: '/api/jobs/:job_id/retention/preview',
    role: 'viewer',
    summary: 'Preview retention with the saved policy or a proposed one {policy?, filter?, limit?, cursor?}: every decision with its reasons (paged), totals, limits, and the difference against the saved policy',
    csrf: false,
    params: jobParam,
    body: z
      .object({
        policy: z.unknown().optional(),
        filter: z.enum(PREVIEW_FILTERS).optional(),
        limit: z.number().int().min(1).max(MAX_PREVIEW_PAGE).optional(),
        cursor: z.string().max(512).optional(),
      })
      .strict(),
    handle: ({ db, params, body }) =>
      previewRetention(db, params.job_id, {
        ...(body.policy !== undefined ? { policy: body.policy } : {}),
        ...(body.filter ? { filter: body.filter } : {}),
        ...(body.limit !== undefined ? { limit: body.limit } : {}),
        ...(body.cursor !== undefined ? { cursor: body.cursor } : {}),
      }),
  }),
  route({
    method: 'post',
    path: '/api/jobs/:job_id/retention/apply',
    role: 'operator',
    summary: 'Apply retention now with the saved policy or a proposed one {policy?} (not saved): queues deletes within the limits; returns enqueued, already_queued, skipped_by_limits',
    params: jobParam,
    body: z.object({ policy: z.unknown().optional() }).strict(),
    handle: ({ db, params, body }) => applyRetention(db, params.job_id, body.policy !== undefined ? { policy: body.policy } : {}),
  }),
  route({
    method: 'get',
    path: '/api/settings/retention',
    role: 'viewer',
    summary: 'The hub default retention policy (inherited by jobs whose policy is null) and the tick schedule (cron, UTC)',
    handle: ({ db }) => hubRetention(db),
  }),
  route({
    method: 'put',
    path: '/api/settings/retention',
    role: 'admin',
    summary: 'Set the hub default retention policy and/or the tick schedule {default_policy?, schedule?}; every inheriting job follows the new default',
    body: z.object({ default_policy: z.unknown().optional(), schedule: z.string().max(1000).optional() }).strict(),
    handle: async ({ db, body }) => {
      if (body.default_policy === undefined && body.schedule === undefined) {
        throw new BastionError('invalid_input', 'send default_policy, schedule or both', { details: { field: 'default_policy', reason: 'required' } });
      }
      if (body.default_policy !== undefined) await setDefaultRetention(db, parseRetentionPolicy(body.default_policy, 'default_policy'));
      if (body.schedule !== undefined) {
        const s = (await getRetentionSettings(db)).now;
        parseSchedule(body.schedule, 'UTC', s);
        const text = body.schedule.trim().replace(/\s+/g, ' ');
        await setRetentionSchedule(db, text.startsWith('@') ? text.toLowerCase() : text);
      }
      return hubRetention(db);
    },
  }),
];
