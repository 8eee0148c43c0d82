import t from 'tap';
import {
  canonicalJson,
  DEFAULT_RETENTION_POLICY,
  effectivePolicy,
  hasKeepRule,
  policyHash,
  retentionPolicySchema,
  type RetentionPolicy,
} from './retention-policy.ts';

const parse = (v: unknown) => retentionPolicySchema.safeParse(v);

t.test('defaults: retention off, limits 50 per tick and 200 per day', async (t) => {
  t.same(DEFAULT_RETENTION_POLICY, {
    enabled: false,
    keep_last: 0,
    keep_days: 0,
    keep_hourly: 0,
    keep_daily: 0,
    keep_weekly: 0,
    keep_monthly: 0,
    keep_yearly: 0,
    min_keep: 0,
    age_reference: 'now',
    max_delete_per_tick: 50,
    max_delete_per_day: 200,
  });
});

t.test('hostile values are refused and name the field', async (t) => {
  const cases: [input: unknown, field: string][] = [
    [{ keep_last: -1 }, 'keep_last'],
    [{ keep_last: 1.5 }, 'keep_last'],
    [{ keep_last: 10_001 }, 'keep_last'],
    [{ keep_last: Number.NaN }, 'keep_last'],
    [{ keep_last: Infinity }, 'keep_last'],
    [{ keep_last: '5' }, 'keep_last'],
    [{ keep_last: null }, 'keep_last'],
    [{ keep_days: 3_651 }, 'keep_days'],
    [{ keep_hourly: 10_001 }, 'keep_hourly'],
    [{ keep_daily: -0.5 }, 'keep_daily'],
    [{ keep_weekly: 1e300 }, 'keep_weekly'],
    [{ keep_monthly: true }, 'keep_monthly'],
    [{ keep_yearly: [] }, 'keep_yearly'],
    [{ min_keep: 10_001 }, 'min_keep'],
    [{ age_reference: 'oldest' }, 'age_reference'],
    [{ age_reference: 'NOW' }, 'age_reference'],
    [{ max_delete_per_tick: 0 }, 'max_delete_per_tick'],
    [{ max_delete_per_tick: 10_001 }, 'max_delete_per_tick'],
    [{ max_delete_per_day: 0 }, 'max_delete_per_day'],
    [{ max_delete_per_day: 100_001 }, 'max_delete_per_day'],
    [{ enabled: 'true' }, 'enabled'],
    [{ keep_lst: 3 }, ''],
    [{ __proto__: { keep_last: 3 }, constructor: 1 }, ''],
    [{ enabled: true }, 'enabled'],
    [{ enabled: true, min_keep: 5 }, 'enabled'],
  ];
  for (const [input, field] of cases) {
    const r = parse(input);
    t.notOk(r.success, `refused: ${JSON.stringify(input)}`);
    if (!r.success) t.equal(r.error.issues[0]?.path.join('.'), field, `field of ${JSON.stringify(input)}`);
  }
  for (const bad of [null, 'keep_last=3', 42, [], undefined]) t.notOk(parse(bad).success, `refused ${String(bad)}`);
  const noRule = parse({ enabled: true });
  t.equal(noRule.success ? null : (noRule.error.issues[0] as { params?: { reason?: string } }).params?.reason, 'keep_rule_required');
});

t.test('every keep rule alone makes an enabled policy valid; min_keep alone does not', async (t) => {
  for (const rule of ['keep_last', 'keep_days', 'keep_hourly', 'keep_daily', 'keep_weekly', 'keep_monthly', 'keep_yearly']) {
    const r = parse({ enabled: true, [rule]: 1 });
    t.ok(r.success, rule);
    if (r.success) t.ok(hasKeepRule(r.data));
  }
  t.ok(parse({ keep_last: 10_000, keep_days: 3_650, min_keep: 10_000, max_delete_per_tick: 10_000, max_delete_per_day: 100_000 }).success, 'upper bounds accepted');
});

t.test('policyHash identifies the effect of a policy, not its spelling', async (t) => {
  const h = policyHash({ enabled: true, keep_last: 3 });
  t.match(h, /^[0-9a-f]{64}$/);
  t.equal(policyHash({ keep_last: 3, enabled: true }), h, 'key order does not matter');
  t.equal(policyHash({ ...DEFAULT_RETENTION_POLICY, keep_last: 3, enabled: true }), h, 'explicit defaults do not matter');
  t.equal(policyHash(retentionPolicySchema.parse({ enabled: true, keep_last: 3 })), h);
  t.not(policyHash({ enabled: true, keep_last: 4 }), h, 'a different rule gives a different hash');
  t.not(policyHash({ enabled: true, keep_last: 3, max_delete_per_tick: 49 }), h, 'a different limit gives a different hash');
  t.not(policyHash({ enabled: false, keep_last: 3 }), h, 'enabled is part of it');
  t.not(policyHash({}), h);
  t.throws(() => policyHash({ enabled: true }), 'an invalid policy has no hash');
});

t.test('canonicalJson sorts keys at every level and keeps arrays in order', async (t) => {
  t.equal(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } }), '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}');
  t.equal(canonicalJson('x'), '"x"');
});

t.test('effectivePolicy: the job policy whole, else the hub default', async (t) => {
  const hub: RetentionPolicy = retentionPolicySchema.parse({ enabled: true, keep_days: 30, keep_last: 10 });
  const job: RetentionPolicy = retentionPolicySchema.parse({ enabled: true, keep_last: 3 });
  t.same(effectivePolicy(null, hub), { policy: hub, source: 'hub_default' });
  t.same(effectivePolicy(undefined, hub), { policy: hub, source: 'hub_default' });
  const e = effectivePolicy(job, hub);
  t.equal(e.source, 'job');
  t.equal(e.policy.keep_days, 0, 'not merged with the default');
  const disabledJob = retentionPolicySchema.parse({ enabled: false });
  t.same(effectivePolicy(disabledJob, hub), { policy: disabledJob, source: 'job' }, 'a job that turned retention off stays off');
});
