/**
 * Retention over REST, the way a browser (session + CSRF) and a script
 * (token) use it: get/put a job's policy and the hub default (admins),
 * preview (everyone, no CSRF, changes nothing), apply (operators), errors
 * that name the field for every bound, and hostile inputs.
 */
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { policyHash } from '../core/retention-policy.ts';
import { startApi } from './api-harness.ts';
import { makeRetentionJob, makeSnapshots } from './factories.ts';
import { REJECTED_POLICIES } from './retention-policy-cases.ts';

const HOUR = 3_600_000;
const api = await startApi(t);
const admin = await api.as('admin');
const operator = await api.as('operator');
const viewer = await api.as('viewer');
const robot = await api.as('operator', { via: 'token' });

async function body(res: Response): Promise<any> {
  return res.json();
}

t.test('a job policy: get, put, inherit; errors name the field', async (t) => {
  const job = await makeRetentionJob(api.db, { retention: null });
  const path = `/api/jobs/${job.id}/retention`;
  let res = await viewer.get(path);
  t.equal(res.status, 200);
  let b = await body(res);
  t.equal(b.inherits, true);
  t.equal(b.effective.source, 'hub_default');
  t.equal(b.effective.policy.enabled, false);

  const policy = { enabled: true, keep_last: 7, keep_daily: 14 };
  res = await operator.put(path, { policy });
  t.equal(res.status, 403, 'editing a job is for admins');
  t.equal((await body(res)).error, 'forbidden');
  res = await admin.put(path, { policy });
  t.equal(res.status, 200);
  b = await body(res);
  t.equal(b.inherits, false);
  t.equal(b.effective.source, 'job');
  t.equal(b.effective.policy_hash, policyHash(policy));
  t.equal(b.policy.max_delete_per_tick, 50, 'stored with the defaults filled in');

  for (const c of REJECTED_POLICIES) {
    const r = await admin.put(path, { policy: c.policy });
    const e = await body(r);
    t.equal(r.status, 400, c.name);
    t.match(e, { error: 'invalid_retention_policy', details: { field: `policy${c.key}`, reason: c.reason } }, c.name);
  }
  t.equal((await body(await viewer.get(path))).effective.policy_hash, policyHash(policy), 'refused puts changed nothing');

  res = await admin.put(path, {});
  t.equal(res.status, 400);
  t.match(await body(res), { error: 'invalid_input', details: { field: 'policy' } });
  res = await admin.put(path, { policy, extra: 1 });
  t.match(await body(res), { error: 'invalid_input', details: { field: 'extra', reason: 'unknown_field' } });
  res = await admin.put(path, { policy: null });
  t.equal(res.status, 200);
  t.equal((await body(res)).inherits, true);
  t.equal((await admin.put(`/api/jobs/${randomUUID()}/retention`, { policy })).status, 404);
  t.match(await body(await admin.put('/api/jobs/not-a-uuid/retention', { policy })), { error: 'invalid_input', details: { field: 'job_id' } });
  res = await admin.request('PUT', path, undefined, { headers: { 'content-type': 'application/json' } });
  t.equal(res.status, 400);
});

t.test('the hub default and the schedule: inheriting jobs follow', async (t) => {
  const inheriting = await makeRetentionJob(api.db, { retention: null });
  const own = await makeRetentionJob(api.db, { retention: { enabled: true, keep_last: 2 } });
  let res = await viewer.get('/api/settings/retention');
  t.equal(res.status, 200);
  let b = await body(res);
  t.equal(b.schedule, '0 * * * *', 'hourly by default');
  t.equal(b.default_policy.policy.enabled, false);
  t.equal(b.next_rounds_at.length, 3);

  const def = { enabled: true, keep_days: 30 };
  t.equal((await operator.put('/api/settings/retention', { default_policy: def })).status, 403);
  res = await admin.put('/api/settings/retention', { default_policy: def, schedule: '15 */2 * * *' });
  t.equal(res.status, 200);
  b = await body(res);
  t.equal(b.default_policy.policy_hash, policyHash(def));
  t.equal(b.schedule, '15 */2 * * *');
  t.ok(b.inheriting_jobs >= 1);
  t.match(await body(await viewer.get(`/api/jobs/${inheriting.id}/retention`)), { inherits: true, effective: { source: 'hub_default', policy_hash: policyHash(def) } });
  t.match(await body(await viewer.get(`/api/jobs/${own.id}/retention`)), { effective: { source: 'job', policy: { keep_last: 2, keep_days: 0 } } }, 'a job with its own policy is not merged with the default');

  res = await admin.put('/api/settings/retention', { default_policy: { enabled: true, max_delete_per_day: 0, keep_last: 1 } });
  t.match(await body(res), { error: 'invalid_retention_policy', details: { field: 'default_policy.max_delete_per_day', reason: 'out_of_range', min: 1, max: 100000 } });
  res = await admin.put('/api/settings/retention', { schedule: '61 * * * *' });
  t.match(await body(res), { error: 'invalid_schedule', details: { field: 'schedule' } });
  res = await admin.put('/api/settings/retention', { schedule: '@HOURLY' });
  t.equal((await body(res)).schedule, '@hourly');
  res = await admin.put('/api/settings/retention', {});
  t.equal(res.status, 400);
});

t.test('preview: everyone, no CSRF, nothing changes; apply: operators with CSRF or a token', async (t) => {
  const policy = { enabled: true, keep_last: 3, max_delete_per_tick: 2 };
  const job = await makeRetentionJob(api.db, { retention: policy });
  const ids = await makeSnapshots(api.pool, job, 6, { newest: new Date(Date.now() - HOUR) });
  const preview = `/api/jobs/${job.id}/retention/preview`;
  let res = await viewer.post(preview, {}, { csrf: false });
  t.equal(res.status, 200, 'preview needs no CSRF token');
  let b = await body(res);
  t.match(b.totals, { snapshots: 6, keep: 3, delete: 2, skipped: 1 });
  t.equal(b.items.length, 6);
  t.equal(b.items[0].run_id, ids[0]);
  t.same(b.items[0].reasons, ['keep_last']);
  t.equal(typeof b.items[0].ended_at, 'string');

  res = await viewer.post(preview, { policy: { enabled: true, keep_last: 5 }, filter: 'newly_kept' }, { csrf: false });
  b = await body(res);
  t.same(b.items.map((i: { run_id: string }) => i.run_id), [ids[3], ids[4]]);
  t.equal(b.diff.totals.newly_kept, 2);
  res = await viewer.post(preview, { policy: { enabled: true, keep_last: 20000 } }, { csrf: false });
  t.match(await body(res), { error: 'invalid_retention_policy', details: { field: 'policy.keep_last', reason: 'out_of_range' } });
  res = await viewer.post(preview, { limit: 0 }, { csrf: false });
  t.match(await body(res), { error: 'invalid_input', details: { field: 'limit' } });
  res = await viewer.post(preview, { filter: 'everything' }, { csrf: false });
  t.match(await body(res), { error: 'invalid_input', details: { field: 'filter' } });
  res = await viewer.post(preview, { cursor: 'eyJ0IjoiYSJ9' }, { csrf: false });
  t.match(await body(res), { error: 'invalid_cursor', details: { reason: 'invalid_payload' } });
  res = await viewer.request('POST', preview, undefined, { headers: { 'content-type': 'text/plain' } });
  t.equal(res.status, 200, 'an empty body is an empty request');
  res = await api.fetch(preview, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  t.equal(res.status, 401, 'but not without signing in');
  const { rows } = await api.pool.query('select count(*)::int as n from bastion.artifact_delete_tasks where job_id = $1', [job.id]);
  t.equal(rows[0].n, 0, 'previews queued nothing');

  const apply = `/api/jobs/${job.id}/retention/apply`;
  t.equal((await viewer.post(apply, {})).status, 403, 'viewers cannot apply');
  res = await operator.post(apply, {}, { csrf: false });
  t.match(await body(res), { error: 'invalid_csrf' });
  res = await operator.post(apply, {});
  t.equal(res.status, 200);
  b = await body(res);
  t.same(b.enqueued.sort(), [ids[4], ids[5]].sort());
  t.equal(b.skipped_by_limits, 1);
  t.equal(b.policy_hash, policyHash(policy));
  res = await robot.post(apply, { policy: { enabled: true, keep_last: 1, max_delete_per_tick: 1 } });
  b = await body(res);
  t.equal(res.status, 200, 'a token needs no CSRF');
  t.same(b.enqueued, [ids[3]], 'the oldest remaining present snapshot');
  t.equal(b.source, 'proposed');
  t.same((await body(await viewer.get(`/api/jobs/${job.id}/retention`))).policy, { ...policy }, 'the proposed policy was not saved');
  res = await operator.post(apply, { policy: { enabled: false } });
  t.match(await body(res), { error: 'retention_disabled' });
  res = await operator.post(`/api/jobs/${randomUUID()}/retention/apply`, {});
  t.equal(res.status, 404);
});
