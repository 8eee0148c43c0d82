/**
 * Hostile and valid retention policies with the field and reason every gate
 * must report (zod in engine/retention/policy-input.ts, SQL in
 * bastion_private.check_retention_policy, the REST routes). Shared by the
 * suites that check each gate.
 */

/** A policy that must be refused, and how. `key` is appended to the caller's field prefix (`policy`). */
export interface RejectedPolicyCase {
  name: string;
  policy: unknown;
  /** Field after the prefix: '' for the policy itself, '.keep_last' for a key. */
  key: string;
  reason: 'not_object' | 'invalid_type' | 'not_integer' | 'out_of_range' | 'unsupported_value' | 'unknown_field' | 'keep_rule_required';
}

const COUNTS: Array<[string, number, number]> = [
  ['keep_last', 0, 10_000],
  ['keep_days', 0, 3_650],
  ['keep_hourly', 0, 10_000],
  ['keep_daily', 0, 10_000],
  ['keep_weekly', 0, 10_000],
  ['keep_monthly', 0, 10_000],
  ['keep_yearly', 0, 10_000],
  ['min_keep', 0, 10_000],
  ['max_delete_per_tick', 1, 10_000],
  ['max_delete_per_day', 1, 100_000],
];

/** Every bound of every count, on both sides, plus types, enums, unknown keys and the keep-rule rule. */
export const REJECTED_POLICIES: RejectedPolicyCase[] = [
  ...COUNTS.flatMap(([k, min, max]): RejectedPolicyCase[] => [
    { name: `${k} below ${min}`, policy: { [k]: min - 1 }, key: `.${k}`, reason: 'out_of_range' },
    { name: `${k} above ${max}`, policy: { [k]: max + 1 }, key: `.${k}`, reason: 'out_of_range' },
    { name: `${k} fractional`, policy: { [k]: min + 0.5 }, key: `.${k}`, reason: 'not_integer' },
    { name: `${k} as a string`, policy: { [k]: String(min) }, key: `.${k}`, reason: 'invalid_type' },
    { name: `${k} null`, policy: { [k]: null }, key: `.${k}`, reason: 'invalid_type' },
  ]),
  { name: 'keep_last huge', policy: { keep_last: 1e20 }, key: '.keep_last', reason: 'out_of_range' },
  { name: 'keep_last boolean', policy: { keep_last: true }, key: '.keep_last', reason: 'invalid_type' },
  { name: 'keep_days as an array', policy: { keep_days: [30] }, key: '.keep_days', reason: 'invalid_type' },
  { name: 'enabled as a string', policy: { enabled: 'true' }, key: '.enabled', reason: 'invalid_type' },
  { name: 'enabled without a keep rule', policy: { enabled: true }, key: '.enabled', reason: 'keep_rule_required' },
  { name: 'enabled with only zero rules', policy: { enabled: true, keep_last: 0, keep_days: 0, keep_daily: 0 }, key: '.enabled', reason: 'keep_rule_required' },
  { name: 'enabled with only min_keep', policy: { enabled: true, min_keep: 5 }, key: '.enabled', reason: 'keep_rule_required' },
  { name: 'age_reference unknown', policy: { age_reference: 'oldest' }, key: '.age_reference', reason: 'unsupported_value' },
  { name: 'age_reference number', policy: { age_reference: 1 }, key: '.age_reference', reason: 'invalid_type' },
  { name: 'a typo', policy: { enabled: true, keep_last: 3, keep_lst: 3 }, key: '.keep_lst', reason: 'unknown_field' },
  { name: '__proto__ key', policy: JSON.parse('{"__proto__": {"enabled": true}}'), key: '.__proto__', reason: 'unknown_field' },
  { name: 'an array', policy: [], key: '', reason: 'not_object' },
  { name: 'a string', policy: 'keep everything', key: '', reason: 'not_object' },
  { name: 'a number', policy: 7, key: '', reason: 'not_object' },
];

/** Policies every gate must accept. */
export const ACCEPTED_POLICIES: unknown[] = [
  {},
  { enabled: false },
  { enabled: true, keep_last: 1 },
  { enabled: true, keep_daily: 1 },
  { enabled: true, keep_yearly: 10_000, min_keep: 10_000, age_reference: 'newest' },
  { enabled: true, keep_days: 3_650, max_delete_per_tick: 10_000, max_delete_per_day: 100_000 },
  { enabled: true, keep_last: 10.0, max_delete_per_tick: 1, max_delete_per_day: 1 },
  { enabled: false, keep_last: 0, keep_days: 0, keep_hourly: 0, keep_daily: 0, keep_weekly: 0, keep_monthly: 0, keep_yearly: 0, min_keep: 0, age_reference: 'now', max_delete_per_tick: 50, max_delete_per_day: 200 },
];
