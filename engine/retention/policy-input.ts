/**
 * Retention policies from outside (a REST body, a stored job spec, the hub
 * default) turned into validated policies, or into `invalid_retention_policy`
 * errors that name the field and the reason with the same vocabulary as the
 * SQL check (bastion_private.check_retention_policy in
 * sql/migrations/0005_retention.sql): not_object, invalid_type, not_integer,
 * out_of_range (with min and max), unsupported_value, unknown_field,
 * keep_rule_required. A test feeds both the same hostile values.
 */
import { z } from 'zod';
import { BastionError } from '../../core/errors.ts';
import { policyHash, retentionPolicySchema, type EffectivePolicy, type RetentionPolicy } from '../../core/retention-policy.ts';

/** The reasons an invalid policy is refused for (details.reason). */
export type PolicyRejection = 'not_object' | 'invalid_type' | 'not_integer' | 'out_of_range' | 'unsupported_value' | 'unknown_field' | 'keep_rule_required';

function rejection(issue: z.core.$ZodIssue, value: unknown): { path: PropertyKey[]; reason: PolicyRejection; min?: number; max?: number } {
  switch (issue.code) {
    case 'invalid_type': {
      if (issue.path.length === 0) return { path: [], reason: 'not_object' };
      if (issue.expected === 'int') {
        // zod says "not an int" for 1.5 and for 1e20 alike; SQL tells them apart.
        const v = value as number;
        return { path: issue.path, reason: Number.isInteger(v) ? 'out_of_range' : 'not_integer', ...boundsOf(issue.path) };
      }
      return { path: issue.path, reason: 'invalid_type' };
    }
    case 'too_small':
    case 'too_big':
      return { path: issue.path, reason: 'out_of_range', ...boundsOf(issue.path) };
    case 'invalid_value':
      // An enum (age_reference): a string it does not know, or not a string at all.
      return { path: issue.path, reason: typeof value === 'string' ? 'unsupported_value' : 'invalid_type' };
    case 'unrecognized_keys':
      return { path: [...issue.path, ...issue.keys.slice(0, 1)], reason: 'unknown_field' };
    case 'custom':
      return { path: issue.path, reason: ((issue.params as { reason?: PolicyRejection } | undefined)?.reason ?? 'invalid_type') };
    default:
      return { path: issue.path, reason: 'invalid_type' };
  }
}

/** The bounds of a count field, read from the schema itself (one source of truth). */
function boundsOf(path: readonly PropertyKey[]): { min?: number; max?: number } {
  const key = path[0];
  if (typeof key !== 'string' || !Object.hasOwn(retentionPolicySchema.shape, key)) return {};
  const inner = retentionPolicySchema.shape[key as keyof typeof retentionPolicySchema.shape].unwrap();
  if (!(inner instanceof z.ZodNumber) || inner.minValue === null || inner.maxValue === null) return {};
  return { min: inner.minValue, max: inner.maxValue };
}

/**
 * Validate a policy, filling in defaults. `field` is where the policy sits in
 * the caller's input (`policy` for a REST body, `spec.retention` for a stored
 * job spec); errors name `field.key`.
 */
export function parseRetentionPolicy(input: unknown, field = 'policy'): RetentionPolicy {
  const parsed = retentionPolicySchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const key = issue.path[0];
  const value = typeof key === 'string' && input !== null && typeof input === 'object' ? (input as Record<string, unknown>)[key] : input;
  const r = rejection(issue, value);
  const name = [field, ...r.path.map(String)].join('.');
  const range = r.min !== undefined ? ` (${r.min} to ${r.max})` : '';
  throw new BastionError('invalid_retention_policy', `${name}: ${issue.message}${range}`, {
    details: { field: name, reason: r.reason, ...(r.min !== undefined ? { min: r.min, max: r.max } : {}) },
    cause: parsed.error,
  });
}

/** Where an effective policy came from, including a proposed (unsaved) one. */
export type PolicySource = EffectivePolicy['source'] | 'proposed';

/** A policy ready to use: validated, with its hash and source. */
export interface ResolvedPolicy {
  policy: RetentionPolicy;
  policy_hash: string;
  source: PolicySource;
}

/**
 * The effective policy of a job from its stored JSON: the job's own
 * `spec.retention` when not null, else the hub default. A stored policy that
 * no longer validates (edited by hand in psql) is `invalid_retention_policy`
 * naming where it is stored.
 */
export function resolveStoredPolicy(specRetention: unknown, hubDefault: unknown): ResolvedPolicy {
  // A job's own policy is used whole (core/retention-policy.ts effectivePolicy);
  // the default is parsed only when inherited, so a broken default does not
  // stop jobs that have their own policy.
  if (specRetention !== undefined && specRetention !== null) {
    const policy = parseRetentionPolicy(specRetention, 'spec.retention');
    return { policy, policy_hash: policyHash(policy), source: 'job' };
  }
  const policy = parseRetentionPolicy(hubDefault, 'settings.default_retention');
  return { policy, policy_hash: policyHash(policy), source: 'hub_default' };
}

/** A proposed policy from a request body. */
export function resolveProposedPolicy(input: unknown, field = 'policy'): ResolvedPolicy {
  const policy = parseRetentionPolicy(input, field);
  return { policy, policy_hash: policyHash(policy), source: 'proposed' };
}
