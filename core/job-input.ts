/**
 * What a person or a client sends to create or replace a job: name, node,
 * schedule, time zone, overlap policy and spec. Validated here (zod, the
 * same checks for CLI and API) before bastion.create_job / update_job run
 * their own SQL guards, so a bad input is refused with a code that names the
 * field: `invalid_input` (name, node_id, overlap_policy), `invalid_schedule`,
 * `invalid_timezone` or `invalid_spec` (with the spec path, e.g.
 * `spec.source.paths[0]`).
 */
import { z } from 'zod';
import { checkTimeZone, parseSchedule } from './cron-schedule.ts';
import { BastionError, type ErrorCode } from './errors.ts';
import { isNodeId } from './ids.ts';
import { jobSpecSchema, type JobSpec } from './job-spec.ts';

/** Longest job name (the jobs table's CHECK). */
export const MAX_JOB_NAME_LENGTH = 200;

/** A job name: 1–200 characters, no control characters, no surrounding space. */
export const jobNameSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(MAX_JOB_NAME_LENGTH, `must be at most ${MAX_JOB_NAME_LENGTH} characters`)
  .refine((n) => n === n.trim(), 'must not start or end with white space')
  .refine((n) => !/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(n), 'must not contain control characters or line breaks');

/** Raw job input, before the schedule is checked against the time zone. */
export const jobInputSchema = z.strictObject({
  name: jobNameSchema,
  node_id: z.string().refine(isNodeId, "must be 'hub' or an agent UUID").default('hub'),
  /** Cron (5 fields) or a nickname; null or absent for manual-only jobs. */
  schedule: z.string().nullable().default(null),
  schedule_timezone: z.string().default('UTC'),
  overlap_policy: z.enum(['queue', 'reject']).default('queue'),
  spec: z.unknown(),
});

/** A validated job input with a parsed spec (defaults filled). */
export interface JobInput {
  name: string;
  node_id: string;
  schedule: string | null;
  schedule_timezone: string;
  overlap_policy: 'queue' | 'reject';
  spec: JobSpec;
}

function fieldPath(prefix: string, path: ReadonlyArray<PropertyKey>): string {
  let out = prefix;
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out === '' ? '' : '.'}${String(p)}`;
  return out;
}

function fromZod(code: ErrorCode, prefix: string, error: z.ZodError): BastionError {
  const issue = error.issues[0];
  const field = fieldPath(prefix, issue?.path ?? []);
  const reason = issue?.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}` : (issue?.message ?? 'invalid');
  return new BastionError(code, `${field || prefix}: ${reason}`, { details: { field: field || prefix, reason, issues: error.issues.length } });
}

/** Validate a job spec alone; throws `invalid_spec` naming the first bad field. */
export function parseJobSpec(spec: unknown): JobSpec {
  const parsed = jobSpecSchema.safeParse(spec);
  if (!parsed.success) throw fromZod('invalid_spec', 'spec', parsed.error);
  return parsed.data;
}

/**
 * Validate a whole job input. Throws a BastionError: `invalid_input` for the
 * plain fields, `invalid_spec`, `invalid_schedule` or `invalid_timezone`.
 */
export function parseJobInput(input: unknown, now: Date = new Date()): JobInput {
  const base = jobInputSchema.safeParse(input);
  if (!base.success) throw fromZod('invalid_input', '', base.error);
  const spec = parseJobSpec(base.data.spec);
  const schedule = base.data.schedule === null ? null : base.data.schedule.trim().replace(/\s+/g, ' ');
  // The time zone is checked for manual jobs too: retention buckets use it.
  checkTimeZone(base.data.schedule_timezone);
  if (schedule !== null) parseSchedule(schedule, base.data.schedule_timezone, now);
  return { ...base.data, schedule, spec };
}
