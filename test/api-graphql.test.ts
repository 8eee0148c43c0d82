/**
 * GraphQL over HTTP: conformance (graphql-http audits), roles and row-level
 * security through pgSettings, CSRF on mutations, limits, error codes and
 * masking, hostile requests, Ruru, and /metrics.
 */
import { serverAudits } from 'graphql-http';
import { pino } from 'pino';
import t from 'tap';
import { LIMITS } from '../gateway/graphql/request-limits.ts';
import { startApi } from './api-harness.ts';
import { makeJob, makeSnapshot, makeUser } from './factories.ts';

t.test('graphql-http conformance audits: every MUST passes', async (t) => {
  const api = await startApi(t);
  const admin = await api.as('admin', { via: 'token' });
  const fetchFn = (input: string | URL | Request, init: RequestInit = {}) => fetch(input, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${admin.token}` } });
  const audits = serverAudits({ url: `${api.base}/graphql`, fetchFn });
  const musts = audits.filter((a) => a.name.startsWith('MUST'));
  t.ok(musts.length >= 10, `${musts.length} MUST audits`);
  for (const audit of musts) {
    const result = await audit.fn();
    t.equal(result.status, 'ok', `${audit.id} ${audit.name}${result.status === 'ok' ? '' : `: ${result.reason}`}`);
  }
});

t.test('queries run as the caller: roles and row-level security', async (t) => {
  const api = await startApi(t);
  const admin = await api.as('admin');
  const viewer = await api.as('viewer');
  const job = await makeJob(api.db, { name: 'nightly' });
  await makeSnapshot(api.db, job);
  const q = '{ me { username role } allUsers(first: 50) { totalCount } allJobs(first: 10) { nodes { name runArtifactsByJobId(first: 10) { totalCount } } } }';
  const a = await admin.graphql(q);
  t.equal(a.status, 200);
  t.equal(a.body.data.me.role, 'admin');
  t.equal(a.body.data.allUsers.totalCount, 2, 'admins see every user');
  t.same(a.body.data.allJobs.nodes, [{ name: 'nightly', runArtifactsByJobId: { totalCount: 1 } }]);
  const v = await viewer.graphql(q);
  t.equal(v.body.data.me.username, viewer.username);
  t.equal(v.body.data.allUsers.totalCount, 1, 'viewers see only themselves (RLS on the role set per request)');
  const none = await api.fetch('/graphql', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ me { username } }' }) });
  t.equal(none.status, 401);
  t.match(await none.json(), { errors: [{ extensions: { code: 'unauthorized' } }] });
});

t.test('mutations: CSRF for sessions, not for tokens; refused by PostgreSQL for lower roles; domain codes', async (t) => {
  const api = await startApi(t);
  const admin = await api.as('admin');
  const operator = await api.as('operator');
  const target = await makeUser(api.db, { role: 'viewer' });
  const m = `mutation($id: UUID!) { setUserRole(input: { userId: $id, role: operator }) { result { role } } }`;

  const noCsrf = await admin.graphql(m, { id: target.id }, { csrf: false });
  t.match(noCsrf.body, { errors: [{ extensions: { code: 'invalid_csrf' } }] });
  t.equal(noCsrf.body.data, undefined, 'not executed');
  const role = async () => (await api.pool.query<{ role: string }>('select role from bastion.users where id = $1', [target.id])).rows[0]?.role;
  t.equal(await role(), 'viewer');

  const refused = await operator.graphql(m, { id: target.id });
  t.match(refused.body.errors, [{ extensions: { code: 'forbidden' } }], 'operator refused by the function grant');
  t.equal(await role(), 'viewer', 'unchanged');

  const ok = await admin.graphql(m, { id: target.id });
  t.same(ok.body.data, { setUserRole: { result: { role: 'operator' } } });
  const token = await api.as('admin', { via: 'token' });
  const viaToken = await token.graphql(`mutation($id: UUID!) { setUserRole(input: { userId: $id, role: viewer }) { result { role } } }`, { id: target.id });
  t.same(viaToken.body.data, { setUserRole: { result: { role: 'viewer' } } }, 'bearer tokens need no CSRF');

  const domain = await admin.graphql(`mutation($id: UUID!) { disableUser(input: { userId: $id }) { result { rowId } } }`, { id: admin.userId });
  t.match(domain.body.errors, [{ message: 'you cannot disable your own account', extensions: { code: 'cannot_disable_self', status: 409 } }]);

  const created = await admin.graphql(`mutation { createUser(input: { username: "gql-user", role: viewer, password: "twelve chars!" }) { user { username role } } }`);
  t.same(created.body.data, { createUser: { user: { username: 'gql-user', role: 'viewer' } } });
  const hash = (await api.pool.query<{ password_hash: string }>(`select password_hash from bastion_private.user_passwords p join bastion.users u on u.id = p.user_id where u.username = 'gql-user'`)).rows[0]?.password_hash;
  t.match(hash, /^\$scrypt\$/, 'hashed by the gateway');
  const short = await admin.graphql(`mutation { createUser(input: { username: "x2", role: viewer, password: "short" }) { user { id } } }`);
  t.match(short.body.errors, [{ extensions: { code: 'invalid_password' } }]);
  const byOperator = await operator.graphql(`mutation { createUser(input: { username: "x3", role: admin, password: "twelve chars!" }) { user { id } } }`);
  t.match(byOperator.body.errors, [{ extensions: { code: 'forbidden' } }]);
  t.equal((await api.pool.query(`select 1 from bastion.users where username in ('x2', 'x3')`)).rowCount, 0);

  const tokenMut = await admin.graphql(`mutation { createApiToken(input: { name: "ci", role: operator }) { result { token role } } }`);
  t.match(tokenMut.body.data.createApiToken.result, { token: /^bst_/, role: 'operator' });

  const secret = await admin.graphql(`mutation { putWebdavSecret(input: { nodeId: "hub", name: "nas", username: "u", password: "p" }) { created } }`);
  t.match(secret.body.errors, [{ extensions: { code: 'secret_key_unavailable' } }], 'no key configured in this gateway');
});

t.test('limits: depth, aliases, pagination; errors say which', async (t) => {
  const api = await startApi(t);
  const viewer = await api.as('viewer', { via: 'token' });
  let deep = 'rowId';
  for (let i = 0; i < 6; i++) deep = `jobByJobId { runsByJobId(first: 1) { nodes { ${deep} } } }`;
  const tooDeep = await viewer.graphql(`{ allRuns(first: 1) { nodes { ${deep} } } }`);
  t.match(tooDeep.body.errors, [{ extensions: { code: 'query_too_complex' } }]);
  const aliases = Array.from({ length: LIMITS.maxAliases + 1 }, (_, i) => `a${i}: me { username }`).join(' ');
  t.match((await viewer.graphql(`{ ${aliases} }`)).body.errors, [{ extensions: { code: 'query_too_complex' } }]);
  const noPage = await viewer.graphql('{ allJobs { totalCount } }');
  t.equal(noPage.status, 400);
  t.match(noPage.body.errors, [{ message: /allJobs: give `first` or `last`/, extensions: { code: 'pagination_required' } }]);
  t.match((await viewer.graphql('query($n: Int) { allJobs(first: $n) { totalCount } }', { n: 100000 })).body.errors, [{ extensions: { code: 'pagination_required' } }]);
  t.match((await viewer.graphql('{ allJobs(first: 200) { nodes { runsByJobId(first: 200) { totalCount } } } }')).body.errors, [{ extensions: { code: 'query_too_complex' } }]);
  t.equal((await viewer.graphql('{ allJobs(first: 200) { totalCount } }')).status, 200);
});

t.test('hostile requests get clear errors and the server keeps serving', async (t) => {
  const api = await startApi(t, {
    // A function that fails in a way no client should see the details of.
    beforeStart: async (pool) => {
      await pool.query(`create function bastion.explode() returns integer language plpgsql stable as $$ begin raise exception 'internal detail: password=hunter2'; end $$`);
      await pool.query(`comment on function bastion.explode() is 'test only'`);
      await pool.query('grant execute on function bastion.explode() to bastion_viewer');
    },
    logger: pino({ level: 'silent' }),
  });
  const viewer = await api.as('viewer', { via: 'token' });
  const post = (body: string | Uint8Array, headers: Record<string, string> = {}) =>
    fetch(`${api.base}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json', authorization: `Bearer ${viewer.token}`, ...headers }, body });

  const masked = await viewer.graphql('{ explode }');
  t.match(masked.body.errors, [{ message: /^Internal error \(id [0-9a-f-]{36}\)/, extensions: { code: 'internal_error', error_id: /^[0-9a-f-]{36}$/ } }]);
  t.notMatch(JSON.stringify(masked.body), 'hunter2', 'details masked');

  const big = await post(JSON.stringify({ query: '{ me { username } }', variables: { pad: 'x'.repeat(200_000) } }));
  t.equal(big.status, 413);
  t.match(await big.json(), { errors: [{ extensions: { code: 'payload_too_large' } }] });
  const bigChunked = await fetch(`${api.base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${viewer.token}` },
    body: new ReadableStream({
      start(c) {
        for (let i = 0; i < 30; i++) c.enqueue(new TextEncoder().encode('x'.repeat(10_000)));
        c.close();
      },
    }),
    duplex: 'half',
  } as RequestInit);
  t.equal(bigChunked.status, 413, 'counted without a Content-Length');

  const malformed = await post('{"query": "{ me { username } }"');
  t.equal(malformed.status, 400);
  t.ok(((await malformed.json()) as { errors?: unknown }).errors, 'a GraphQL error body');
  t.equal((await post('[]')).status, 400);
  t.equal((await post(JSON.stringify({ query: 42 }))).status, 400);
  t.equal((await post(JSON.stringify({ query: '{ me { username } }' }), { 'content-type': 'text/plain' })).status, 415);
  const wrongType = await viewer.graphql('query($id: UUID!) { userByRowId(rowId: $id) { username } }', { id: "'; drop table bastion.users; --" });
  t.match(wrongType.body.errors, [{ extensions: { code: 'invalid_query' } }]);
  const syntax = await viewer.graphql('{ me { username }');
  t.match(syntax.body.errors, [{ extensions: { code: 'invalid_query' } }]);
  const unknownField = await viewer.graphql('{ passwordHashes }');
  t.match(unknownField.body.errors, [{ message: /Cannot query field/, extensions: { code: 'invalid_query' } }]);
  const unicode = await viewer.graphql('query($node: String!) { allJobs(first: 5, condition: { nodeId: $node }) { totalCount } }', { node: '日本語 🚀 \'" OR 1=1 --' });
  t.equal(unicode.status, 200, 'unicode and SQL-looking strings are just values');
  t.equal(unicode.body.data?.allJobs?.totalCount, 0);
  const nul = await viewer.graphql('query($node: String!) { allJobs(first: 5, condition: { nodeId: $node }) { totalCount } }', { node: 'a\u0000b' });
  t.match(nul.body.errors, [{ extensions: { code: 'invalid_input' } }], 'a NUL byte PostgreSQL refuses is the client’s input error, not an internal one');
  const wide = await viewer.graphql(`{ ${Array.from({ length: 1200 }, () => 'me { username }').join(' ')} }`);
  t.match(wide.body.errors, [{ extensions: { code: 'query_too_complex' } }]);
  const getMutation = await fetch(`${api.base}/graphql?query=${encodeURIComponent('mutation { revokeApiToken(input: {tokenId: "00000000-0000-4000-8000-000000000000"}) { clientMutationId } }')}`, { headers: { authorization: `Bearer ${viewer.token}`, accept: 'application/json' } });
  t.equal(getMutation.status, 405, 'no GraphQL over GET, so no mutation over GET');

  t.equal((await api.fetch('/healthz')).status, 200, 'still serving');
  t.same((await viewer.graphql('{ me { username } }')).body.data, { me: { username: viewer.username } });
});

t.test('Ruru at /graphiql: admins only; off by a setting', async (t) => {
  const api = await startApi(t);
  const admin = await api.as('admin');
  const viewer = await api.as('viewer');
  const page = await api.fetch('/graphiql', { headers: { cookie: admin.cookie as string, 'accept-encoding': 'identity' } });
  t.equal(page.status, 200);
  t.match(page.headers.get('content-type') ?? '', /text\/html/);
  const html = await page.text();
  t.match(html, /ruru/i);
  t.match(html, /X-CSRF-Token/, 'Ruru sends the CSRF header');
  t.equal((await api.fetch('/graphiql', { headers: { cookie: viewer.cookie as string } })).status, 403);
  t.equal((await api.fetch('/graphiql')).status, 401);
  const off = await startApi(t, { graphiql: false });
  const offAdmin = await off.as('admin');
  t.equal((await off.fetch('/graphiql', { headers: { cookie: offAdmin.cookie as string } })).status, 404);
});

t.test('/metrics: HTTP and GraphQL latency, logins, WebSocket gauge, queue depths', async (t) => {
  const api = await startApi(t);
  const viewer = await api.as('viewer');
  await viewer.graphql('{ me { username } }');
  await viewer.get('/api/jobs');
  await api.pool.query(`select graphile_worker.add_job('demo-task', '{}'::json, run_at => now() + interval '1 hour')`);
  const res = await api.fetch('/metrics');
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type') ?? '', /text\/plain; version=0\.0\.4/);
  const text = await res.text();
  t.match(text, /bastion_http_request_duration_seconds_count\{method="GET",route="\/api\/jobs",status="200"\} [1-9]/);
  t.match(text, /bastion_graphql_request_duration_seconds_count\{status="200"\} [1-9]/);
  t.match(text, /bastion_logins_total\{outcome="success"\} [1-9]/);
  t.match(text, /bastion_queue_jobs\{task="demo-task",state="scheduled"\} 1/);
  t.match(text, /bastion_runs\{status="queued"\} 0/);
  t.match(text, /bastion_metrics_database_up 1/);
  t.match(text, /# TYPE bastion_task_attempt_duration_seconds histogram/);
});
