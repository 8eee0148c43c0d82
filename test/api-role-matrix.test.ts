/**
 * The role × action matrix: every GraphQL mutation and every mutating REST
 * route, called by a viewer, an operator and an admin. Each is allowed
 * (whatever the domain answer) or refused with `forbidden` — and a refused
 * call leaves the database exactly as it was (a fingerprint of every
 * Bastion table and of graphile-worker's jobs).
 *
 * The rule comes from the issue (viewer reads; operator runs, pins,
 * deletes, retries, ignores, applies retention, archives; admin manages
 * users, tokens, secrets, settings, job definitions) and is written out in
 * EXPECTED below; PostgreSQL's grants must agree with it, and the REST route
 * table's `role` must too. A mutation added by a later migration without an
 * entry fails the test until its rule is written down here.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import t from 'tap';
import { getNamedType, isEnumType, isInputObjectType, isListType, isNonNullType, isScalarType, type GraphQLInputType, type GraphQLSchema, buildSchema } from 'graphql';
import type pg from 'pg';
import { parseSecretKey, SecretKeyProvider } from '../engine/secrets/secret-key.ts';
import { REST_ROUTES } from '../gateway/rest/routes.ts';
import { SCHEMA_GRAPHQL_FILE } from '../gateway/graphql/schema-export.ts';
import fs from 'node:fs';
import { startApi, type ApiClient } from './api-harness.ts';
import { makeAgent, makeJob, makeSnapshot, makeSpec } from './factories.ts';

type Role = 'viewer' | 'operator' | 'admin';
const RANK: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 };
const ROLES: Role[] = ['viewer', 'operator', 'admin'];

/** Lowest role allowed for each GraphQL mutation (the policy, stated once). */
const EXPECTED: Record<string, Role> = {
  // jobs and runs (0003)
  createJob: 'admin',
  updateJob: 'admin',
  requestRun: 'operator',
  putSecret: 'admin',
  putWebdavSecret: 'admin',
  deleteSecret: 'admin',
  // snapshots, delete queue, job lifecycle (0004)
  pinSnapshot: 'operator',
  unpinSnapshot: 'operator',
  requestSnapshotDelete: 'operator',
  requestSnapshotDeletes: 'operator',
  retryArtifactDeleteNow: 'operator',
  ignoreArtifactDelete: 'operator',
  unignoreArtifactDelete: 'operator',
  acquireSnapshotLease: 'operator',
  renewSnapshotLease: 'operator',
  releaseSnapshotLease: 'operator',
  archiveJob: 'operator',
  unarchiveJob: 'operator',
  deleteJob: 'admin',
  // retention (0005)
  setJobRetention: 'admin',
  setDefaultRetention: 'admin',
  setRetentionSchedule: 'admin',
  // incomplete cleanup (0006)
  retryIncompleteCleanupNow: 'operator',
  ignoreIncompleteCleanup: 'operator',
  unignoreIncompleteCleanup: 'operator',
  setIncompleteCleanupDays: 'admin',
  // agents (0007): enrollment and agent credentials are admin business
  createEnrollmentToken: 'admin',
  revokeEnrollmentToken: 'admin',
  renameAgent: 'admin',
  rotateAgentKey: 'admin',
  revokeAgent: 'admin',
  // maintenance
  pruneRunHistory: 'admin',
  // users and tokens (0002 and the gateway)
  createUser: 'admin',
  resetUserPassword: 'admin',
  setUserRole: 'admin',
  disableUser: 'admin',
  enableUser: 'admin',
  createApiToken: 'admin',
  revokeApiToken: 'admin',
};

/** Every row of every Bastion table and every graphile-worker job, hashed; volatile bookkeeping columns left out. */
async function fingerprint(pool: pg.Pool): Promise<string> {
  const { rows: tables } = await pool.query<{ t: string }>(`
    select format('%I.%I', n.nspname, c.relname) as t from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname in ('bastion', 'bastion_private') and c.relkind = 'r' and c.relname not in ('migrations', 'sessions', 'api_tokens')
     order by 1`);
  const parts: string[] = [];
  for (const { t } of tables) {
    const { rows } = await pool.query<{ h: string | null }>(`select md5(string_agg(md5(x::text), '' order by md5(x::text))) as h from ${t} x`);
    parts.push(`${t}:${rows[0]?.h ?? '-'}`);
  }
  const extra = await pool.query<{ h: string | null }>(`
    select md5(coalesce((select string_agg(h, '' order by h) from (select md5(row(token_hash, user_id, expires_at)::text) h from bastion_private.sessions) x), '') ||
               coalesce((select string_agg(h, '' order by h) from (select md5(row(id, user_id, name, role, expires_at, revoked_at)::text) h from bastion_private.api_tokens) x), '') ||
               coalesce((select string_agg(h, '' order by h) from (select md5(row(task_identifier, key, run_at, queue_name)::text) h from graphile_worker.jobs) x), '')) as h`);
  parts.push(`extra:${extra.rows[0]?.h}`);
  return parts.join('\n');
}

/** A plausible value for a GraphQL input type (ids are random: allowed roles then meet not_found, which is fine). */
function sample(type: GraphQLInputType, schema: GraphQLSchema, depth = 0): unknown {
  if (isNonNullType(type)) return sample(type.ofType, schema, depth);
  if (isListType(type)) return [sample(type.ofType, schema, depth + 1)];
  const named = getNamedType(type);
  if (isEnumType(named)) return named.getValues()[0]?.name;
  if (isInputObjectType(named)) {
    const out: Record<string, unknown> = {};
    for (const [name, field] of Object.entries(named.getFields())) {
      if (name === 'clientMutationId' || depth > 3) continue;
      out[name] = sample(field.type, schema, depth + 1);
    }
    return out;
  }
  if (isScalarType(named)) {
    switch (named.name) {
      case 'UUID':
        return randomUUID();
      case 'Boolean':
        return false;
      case 'Int':
        return 60;
      case 'BigInt':
        return '60';
      case 'Datetime':
        return new Date(Date.now() + 86400e3).toISOString();
      case 'JSON':
        return {};
      case 'Base64EncodedBinary':
        return randomBytes(12).toString('base64');
      default:
        return 'x';
    }
  }
  return null;
}

function diffLines(a: string, b: string): string {
  const bl = new Set(b.split('\n'));
  return a.split('\n').filter((l) => !bl.has(l)).join(', ');
}

t.test('GraphQL mutations: allowed or forbidden per role, database unchanged when refused', async (t) => {
  const keys = SecretKeyProvider.fromKey(parseSecretKey(randomBytes(32).toString('base64'), 'test'));
  const api = await startApi(t, { secretKeys: keys });
  const schema = buildSchema(fs.readFileSync(SCHEMA_GRAPHQL_FILE, 'utf8'));
  const mutations = Object.values(schema.getMutationType()?.getFields() ?? {});
  const missing = mutations.map((m) => m.name).filter((n) => !(n in EXPECTED));
  t.same(missing, [], 'every mutation has a stated rule');
  const clients: Record<Role, ApiClient> = { viewer: await api.as('viewer', { via: 'token' }), operator: await api.as('operator', { via: 'token' }), admin: await api.as('admin', { via: 'token' }) };
  for (const m of mutations) {
    const min = EXPECTED[m.name];
    if (!min) continue;
    const input = m.args.find((a) => a.name === 'input');
    const variables = input ? { input: sample(input.type, schema) } : {};
    const query = `mutation($input: ${input ? String(input.type) : 'Boolean'}) { ${m.name}${input ? '(input: $input)' : ''} { __typename } }`;
    for (const role of ROLES) {
      const before = await fingerprint(api.pool);
      const { body } = await clients[role].graphql(query, variables);
      const codes = (body.errors ?? []).map((e) => e.extensions?.code);
      if (RANK[role] >= RANK[min]) {
        t.notOk(codes.includes('forbidden'), `${m.name} as ${role}: allowed (${codes.join(', ') || 'ok'})`);
        t.notOk(codes.includes('internal_error'), `${m.name} as ${role}: no internal error`);
      } else {
        t.same(codes, ['forbidden'], `${m.name} as ${role}: forbidden`);
        const after = await fingerprint(api.pool);
        if (after !== before) t.comment(diffLines(before, after));
        t.equal(after, before, `${m.name} as ${role}: nothing changed`);
      }
    }
  }
});

t.test('REST actions: allowed or forbidden per role (the route table states the same rule), database unchanged when refused', async (t) => {
  const keys = SecretKeyProvider.fromKey(parseSecretKey(randomBytes(32).toString('base64'), 'test'));
  const api = await startApi(t, { secretKeys: keys });
  const clients: Record<Role, ApiClient> = { viewer: await api.as('viewer'), operator: await api.as('operator'), admin: await api.as('admin') };

  // Fresh objects per call, so an allowed call of one role does not change what the next role meets.
  const fresh = async () => {
    const job = await makeJob(api.db);
    const snap = await makeSnapshot(api.db, job);
    const user = (await api.pool.query<{ id: string }>(`insert into bastion.users (username, role) values ($1, 'viewer') returning id`, [`u-${randomUUID().slice(0, 8)}`])).rows[0]?.id as string;
    const token = (await api.pool.query<{ id: string }>(`select id from bastion.create_api_token(name => 'm', role => 'viewer', user_id => $1)`, [user])).rows[0]?.id as string;
    const agent = await makeAgent(api.pool);
    const enrollment = (await api.pool.query<{ id: string }>(`select id from bastion.create_enrollment_token()`)).rows[0]?.id as string;
    return { job: job.id, run: snap.run_id, user, token, agent: agent.id, enrollment };
  };
  type Ids = Awaited<ReturnType<typeof fresh>>;
  const actions: Array<{ method: string; pattern: string; path: (ids: Ids) => string; body?: (ids: Ids) => unknown }> = [
    { method: 'POST', pattern: '/api/jobs', path: () => '/api/jobs', body: () => ({ name: `job-${randomUUID().slice(0, 8)}`, spec: makeSpec() }) },
    { method: 'PUT', pattern: '/api/jobs/:job_id', path: (i) => `/api/jobs/${i.job}`, body: () => ({ name: `job-${randomUUID().slice(0, 8)}`, spec: makeSpec() }) },
    { method: 'POST', pattern: '/api/jobs/:job_id/run', path: (i) => `/api/jobs/${i.job}/run` },
    { method: 'POST', pattern: '/api/jobs/:job_id/archive', path: (i) => `/api/jobs/${i.job}/archive?cascade_snapshots=true` },
    { method: 'POST', pattern: '/api/jobs/:job_id/unarchive', path: (i) => `/api/jobs/${i.job}/unarchive` },
    { method: 'DELETE', pattern: '/api/jobs/:job_id', path: (i) => `/api/jobs/${i.job}?mode=keep_data` },
    { method: 'POST', pattern: '/api/jobs/:job_id/snapshots/:run_id/delete', path: (i) => `/api/jobs/${i.job}/snapshots/${i.run}/delete` },
    { method: 'POST', pattern: '/api/jobs/:job_id/snapshots/delete', path: (i) => `/api/jobs/${i.job}/snapshots/delete`, body: (i) => ({ run_ids: [i.run] }) },
    { method: 'POST', pattern: '/api/jobs/:job_id/snapshots/:run_id/pin', path: (i) => `/api/jobs/${i.job}/snapshots/${i.run}/pin`, body: () => ({ reason: 'keep' }) },
    { method: 'POST', pattern: '/api/jobs/:job_id/snapshots/:run_id/unpin', path: (i) => `/api/jobs/${i.job}/snapshots/${i.run}/unpin` },
    { method: 'POST', pattern: '/api/jobs/:job_id/snapshots/:run_id/delete/retry-now', path: (i) => `/api/jobs/${i.job}/snapshots/${i.run}/delete/retry-now` },
    { method: 'POST', pattern: '/api/jobs/:job_id/snapshots/:run_id/delete/ignore', path: (i) => `/api/jobs/${i.job}/snapshots/${i.run}/delete/ignore`, body: () => ({ reason: 'r' }) },
    { method: 'POST', pattern: '/api/jobs/:job_id/snapshots/:run_id/delete/unignore', path: (i) => `/api/jobs/${i.job}/snapshots/${i.run}/delete/unignore` },
    { method: 'PUT', pattern: '/api/jobs/:job_id/retention', path: (i) => `/api/jobs/${i.job}/retention`, body: () => ({ policy: { enabled: true, keep_last: 3 } }) },
    { method: 'POST', pattern: '/api/jobs/:job_id/retention/preview', path: (i) => `/api/jobs/${i.job}/retention/preview`, body: () => ({ policy: { enabled: true, keep_last: 3 } }) },
    { method: 'POST', pattern: '/api/jobs/:job_id/retention/apply', path: (i) => `/api/jobs/${i.job}/retention/apply`, body: () => ({ policy: { enabled: true, keep_last: 3 } }) },
    { method: 'PUT', pattern: '/api/settings/retention', path: () => '/api/settings/retention', body: () => ({ schedule: '17 * * * *' }) },
    { method: 'POST', pattern: '/api/maintenance/incomplete-cleanup/:run_id/retry-now', path: (i) => `/api/maintenance/incomplete-cleanup/${i.run}/retry-now` },
    { method: 'POST', pattern: '/api/maintenance/incomplete-cleanup/:run_id/ignore', path: (i) => `/api/maintenance/incomplete-cleanup/${i.run}/ignore`, body: () => ({ reason: 'r' }) },
    { method: 'POST', pattern: '/api/maintenance/incomplete-cleanup/:run_id/unignore', path: (i) => `/api/maintenance/incomplete-cleanup/${i.run}/unignore` },
    { method: 'PUT', pattern: '/api/settings/incomplete-cleanup', path: () => '/api/settings/incomplete-cleanup', body: () => ({ days: 9 }) },
    { method: 'GET', pattern: '/api/secrets', path: () => '/api/secrets' },
    { method: 'PUT', pattern: '/api/secrets/webdav/:name', path: () => '/api/secrets/webdav/nas', body: () => ({ username: 'u', password: 'p' }) },
    { method: 'PUT', pattern: '/api/nodes/:node_id/secrets/webdav/:name', path: () => '/api/nodes/hub/secrets/webdav/nas2', body: () => ({ username: 'u', password: 'p' }) },
    { method: 'DELETE', pattern: '/api/nodes/:node_id/secrets/:kind/:name', path: () => '/api/nodes/hub/secrets/webdav/nas' },
    { method: 'POST', pattern: '/api/users', path: () => '/api/users', body: () => ({ username: `n-${randomUUID().slice(0, 8)}`, role: 'viewer', password: 'twelve chars!' }) },
    { method: 'PUT', pattern: '/api/users/:user_id/role', path: (i) => `/api/users/${i.user}/role`, body: () => ({ role: 'operator' }) },
    { method: 'POST', pattern: '/api/users/:user_id/disable', path: (i) => `/api/users/${i.user}/disable` },
    { method: 'POST', pattern: '/api/users/:user_id/enable', path: (i) => `/api/users/${i.user}/enable` },
    { method: 'POST', pattern: '/api/users/:user_id/password', path: (i) => `/api/users/${i.user}/password`, body: () => ({ password: 'another long one' }) },
    { method: 'GET', pattern: '/api/tokens', path: () => '/api/tokens' },
    { method: 'POST', pattern: '/api/tokens', path: () => '/api/tokens', body: () => ({ name: 't', role: 'viewer' }) },
    { method: 'POST', pattern: '/api/tokens/:token_id/revoke', path: (i) => `/api/tokens/${i.token}/revoke` },
    { method: 'PUT', pattern: '/api/agents/:agent_id/name', path: (i) => `/api/agents/${i.agent}/name`, body: () => ({ name: `renamed-${randomUUID().slice(0, 8)}` }) },
    { method: 'POST', pattern: '/api/agents/:agent_id/rotate-key', path: (i) => `/api/agents/${i.agent}/rotate-key` },
    { method: 'POST', pattern: '/api/agents/:agent_id/revoke', path: (i) => `/api/agents/${i.agent}/revoke` },
    { method: 'GET', pattern: '/api/enrollment-tokens', path: () => '/api/enrollment-tokens' },
    { method: 'POST', pattern: '/api/enrollment-tokens', path: () => '/api/enrollment-tokens', body: () => ({ ttl_seconds: 600, uses: 2 }) },
    { method: 'POST', pattern: '/api/enrollment-tokens/:token_id/revoke', path: (i) => `/api/enrollment-tokens/${i.enrollment}/revoke` },
  ];
  const uwsMethod = (m: string) => (m === 'DELETE' ? 'del' : m.toLowerCase());
  const routeOf = (a: (typeof actions)[number]) => REST_ROUTES.find((r) => r.path === a.pattern && r.method === uwsMethod(a.method));
  // Every mutating route (and every admin-only read) is in the matrix.
  const covered = new Set(actions.map((a) => `${uwsMethod(a.method)} ${a.pattern}`));
  const uncovered = REST_ROUTES.filter((r) => (r.method !== 'get' || r.role !== 'viewer') && !covered.has(`${r.method} ${r.path}`)).map((r) => `${r.method} ${r.path}`);
  t.same(uncovered, [], 'every mutating or restricted route is in the matrix');

  for (const a of actions) {
    const r = routeOf(a);
    if (!r) {
      t.fail(`no route ${a.method} ${a.pattern}`);
      continue;
    }
    for (const role of ROLES) {
      const ids = await fresh();
      const before = await fingerprint(api.pool);
      const res = await clients[role].request(a.method, a.path(ids), a.body?.(ids));
      const body = res.status === 204 ? {} : ((await res.json()) as { error?: string });
      if (RANK[role] >= RANK[r.role]) {
        t.not(res.status, 403, `${a.method} ${a.pattern} as ${role}: allowed (${res.status} ${body.error ?? ''})`);
        t.ok(res.status < 500, `${a.method} ${a.pattern} as ${role}: no server error (${res.status} ${body.error ?? ''})`);
      } else {
        t.equal(res.status, 403, `${a.method} ${a.pattern} as ${role}: 403`);
        t.equal(body.error, 'forbidden', `${a.method} ${a.pattern} as ${role}: forbidden`);
        t.equal(await fingerprint(api.pool), before, `${a.method} ${a.pattern} as ${role}: nothing changed`);
      }
    }
  }
});
