/**
 * Both gates of a retention policy — zod (engine/retention/policy-input.ts,
 * what the API and the tick use) and SQL (bastion.set_job_retention,
 * bastion.set_default_retention, what GraphQL and psql reach) — refuse the
 * same hostile values, naming the same field with the same reason, and accept
 * the same valid ones; out-of-range refusals carry the bounds.
 */
import t from 'tap';
import { BastionError } from '../core/errors.ts';
import { parseRetentionPolicy, resolveStoredPolicy } from '../engine/retention/policy-input.ts';
import { testDatabase } from './db.ts';
import { asRole, makeUserRow } from './delete-queue-kit.ts';
import { makeRetentionJob } from './factories.ts';
import { ACCEPTED_POLICIES, REJECTED_POLICIES } from './retention-policy-cases.ts';

const { pool, db } = await testDatabase(t);
const admin = await makeUserRow(pool, 'admin');
const job = await makeRetentionJob(db, { retention: null });

function zodRejection(policy: unknown): { field: string; reason: string; min?: unknown; max?: unknown } | null {
  try {
    parseRetentionPolicy(policy, 'policy');
    return null;
  } catch (e) {
    if (!(e instanceof BastionError) || e.code !== 'invalid_retention_policy') throw e;
    const d = e.details as { field: string; reason: string; min?: unknown; max?: unknown };
    return { field: d.field, reason: d.reason, ...(d.min !== undefined ? { min: d.min, max: d.max } : {}) };
  }
}

async function sqlRejection(fn: 'set_job_retention' | 'set_default_retention', policy: unknown) {
  try {
    await asRole(pool, 'bastion_admin', admin, (c) =>
      fn === 'set_job_retention'
        ? c.query('select bastion.set_job_retention($1, $2::jsonb)', [job.id, JSON.stringify(policy)])
        : c.query('select bastion.set_default_retention($1::jsonb)', [JSON.stringify(policy)]),
    );
    return null;
  } catch (e) {
    const err = e as { code?: string; message?: string; hint?: string };
    if (err.code !== 'BA400' || err.message !== 'invalid_retention_policy') throw e;
    const d = JSON.parse(err.hint!) as { field: string; reason: string; min?: unknown; max?: unknown };
    return { field: d.field, reason: d.reason, ...(d.min !== undefined ? { min: d.min, max: d.max } : {}) };
  }
}

t.test('refused by both gates with the same field and reason', async (t) => {
  for (const c of REJECTED_POLICIES) {
    const expected = { field: `policy${c.key}`, reason: c.reason };
    const z = zodRejection(c.policy);
    t.match(z, expected, `zod: ${c.name}`);
    for (const fn of ['set_job_retention', 'set_default_retention'] as const) {
      const s = await sqlRejection(fn, c.policy);
      t.match(s, expected, `${fn}: ${c.name}`);
      if (c.reason === 'out_of_range') t.same([s?.min, s?.max], [z?.min, z?.max], `${fn}: ${c.name} names the same bounds`);
    }
  }
  const { rows } = await pool.query(`select spec -> 'retention' as r from bastion.jobs where id = $1`, [job.id]);
  t.equal(rows[0].r, null, 'nothing refused was stored');
});

t.test('accepted by both gates', async (t) => {
  for (const policy of ACCEPTED_POLICIES) {
    t.equal(zodRejection(policy), null, `zod accepts ${JSON.stringify(policy)}`);
    t.equal(await sqlRejection('set_job_retention', policy), null, `SQL accepts ${JSON.stringify(policy)}`);
  }
  // NULL inherits; JSON null too.
  await asRole(pool, 'bastion_admin', admin, (c) => c.query('select bastion.set_job_retention($1, null)', [job.id]));
  const { rows } = await pool.query(`select spec -> 'retention' as r from bastion.jobs where id = $1`, [job.id]);
  t.equal(rows[0].r, null);
  await t.rejects(asRole(pool, 'bastion_admin', admin, (c) => c.query('select bastion.set_default_retention(null)')), { message: 'invalid_retention_policy' }, 'the hub default cannot be NULL');
});

t.test('who may set policies', async (t) => {
  const operator = await makeUserRow(pool, 'operator');
  await t.rejects(asRole(pool, 'bastion_operator', operator, (c) => c.query('select bastion.set_job_retention($1, $2)', [job.id, '{}'])), { code: '42501' });
  await t.rejects(asRole(pool, 'bastion_operator', operator, (c) => c.query('select bastion.set_default_retention($1)', ['{}'])), { code: '42501' });
  await t.rejects(asRole(pool, 'bastion_operator', operator, (c) => c.query(`select bastion.set_retention_schedule('0 * * * *')`)), { code: '42501' });
  await t.rejects(asRole(pool, 'bastion_admin', admin, (c) => c.query(`select bastion.set_retention_schedule('every hour')`)), { message: 'invalid_schedule' });
  const archived = await makeRetentionJob(db, { archived: true });
  await t.rejects(asRole(pool, 'bastion_admin', admin, (c) => c.query('select bastion.set_job_retention($1, $2)', [archived.id, '{}'])), { message: 'job_archived' });
});

t.test('a stored policy that no longer validates names where it is stored', async (t) => {
  t.throws(() => resolveStoredPolicy({ enabled: true, keep_last: 3, kep: 1 }, {}), { code: 'invalid_retention_policy', details: { field: 'spec.retention.kep' } });
  t.throws(() => resolveStoredPolicy(null, { enabled: 'yes' }), { code: 'invalid_retention_policy', details: { field: 'settings.default_retention.enabled' } });
  t.match(resolveStoredPolicy({ enabled: true, keep_last: 3 }, { broken: true }), { source: 'job' }, 'a broken default does not stop a job with its own policy');
  t.match(resolveStoredPolicy(null, {}), { source: 'hub_default', policy: { enabled: false } });
});
