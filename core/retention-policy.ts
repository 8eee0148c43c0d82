/**
 * Retention policy: the shape stored in `jobs.spec.retention` (null there means
 * "inherit the hub default" from `settings.default_retention`). Bounds follow
 * the seeds and the reference (keep_last ≤ 10,000, keep_days ≤ 3,650, per-tick
 * 1..10,000, per-day 1..100,000); calendar buckets, min_keep and
 * age_reference are ours (DESIGN §7). Unknown keys are refused so that a typo
 * ("keep_lst") cannot silently turn a rule off.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

const count = (max: number) => z.number().int().min(0).max(max);

export const retentionPolicySchema = z
  .strictObject({
    enabled: z.boolean().default(false),
    keep_last: count(10_000).default(0),
    keep_days: count(3_650).default(0),
    keep_hourly: count(10_000).default(0),
    keep_daily: count(10_000).default(0),
    keep_weekly: count(10_000).default(0),
    keep_monthly: count(10_000).default(0),
    keep_yearly: count(10_000).default(0),
    min_keep: count(10_000).default(0),
    age_reference: z.enum(['now', 'newest']).default('now'),
    max_delete_per_tick: z.number().int().min(1).max(10_000).default(50),
    max_delete_per_day: z.number().int().min(1).max(100_000).default(200),
  })
  .superRefine((p, ctx) => {
    if (p.enabled && !hasKeepRule(p)) {
      ctx.addIssue({
        code: 'custom',
        path: ['enabled'],
        message: 'an enabled policy needs at least one keep rule (keep_last, keep_days or keep_hourly/daily/weekly/monthly/yearly)',
        params: { reason: 'keep_rule_required' },
      });
    }
  });

/** A validated policy with every default filled in. */
export type RetentionPolicy = z.infer<typeof retentionPolicySchema>;
/** What a client may send: any field may be omitted. */
export type RetentionPolicyInput = z.input<typeof retentionPolicySchema>;

/** The calendar bucket rules, in the order preview reports them. */
export const BUCKET_RULES = ['keep_hourly', 'keep_daily', 'keep_weekly', 'keep_monthly', 'keep_yearly'] as const;

/** True when at least one rule keeps something (min_keep alone is a floor, not a rule). */
export function hasKeepRule(p: Pick<RetentionPolicy, 'keep_last' | 'keep_days' | (typeof BUCKET_RULES)[number]>): boolean {
  return p.keep_last > 0 || p.keep_days > 0 || BUCKET_RULES.some((r) => p[r] > 0);
}

/** The hub default when nobody has configured one: retention off. */
export const DEFAULT_RETENTION_POLICY: RetentionPolicy = retentionPolicySchema.parse({});

/**
 * Stable identity of a policy's effect: hex SHA-256 of its canonical JSON
 * (defaults filled in, keys sorted), so `{}` and the same policy spelled out
 * in full, in any key order, hash alike. Retention events carry it so an
 * operator can tell which policy deleted a snapshot. Throws the zod error when
 * `policy` is not a valid policy: a hash of an invalid policy names nothing.
 */
export function policyHash(policy: RetentionPolicyInput): string {
  const filled = retentionPolicySchema.parse(policy);
  return createHash('sha256').update(canonicalJson(filled)).digest('hex');
}

/** JSON with object keys sorted at every level (arrays keep their order). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
    return sorted;
  });
}

/** Which policy applies to a job, and where it came from (preview and events show it). */
export interface EffectivePolicy {
  policy: RetentionPolicy;
  source: 'job' | 'hub_default';
}

/**
 * The policy in force for a job: its own (`jobs.spec.retention`) when set,
 * otherwise the hub default (`settings.default_retention`). A job policy is
 * used whole, never merged field by field with the default: a job that set
 * `keep_last: 3` must not silently gain the default's `keep_days`.
 */
export function effectivePolicy(jobPolicy: RetentionPolicy | null | undefined, hubDefault: RetentionPolicy): EffectivePolicy {
  return jobPolicy == null ? { policy: hubDefault, source: 'hub_default' } : { policy: jobPolicy, source: 'job' };
}
