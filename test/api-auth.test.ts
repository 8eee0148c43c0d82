/**
 * Setup, login, sessions, CSRF, the login throttle, users and API tokens,
 * through HTTP against a real gateway and database.
 */
import t from 'tap';
import { parseTrustedProxies } from '../gateway/auth/client-address.ts';
import { loginClient, startApi, type Api } from './api-harness.ts';
import { makeUser } from './factories.ts';

const json = (body: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

async function userCount(api: Api): Promise<number> {
  return (await api.pool.query<{ n: number }>('select count(*)::int as n from bastion.users')).rows[0]?.n ?? -1;
}

t.test('first-run setup: validated, exactly one admin under concurrent requests, then closed', async (t) => {
  const api = await startApi(t);
  t.same(await (await api.fetch('/api/setup/status')).json(), { needs_setup: true });

  const short = await api.fetch('/api/setup/initialize', json({ username: 'admin', password: 'short' }));
  t.equal(short.status, 400);
  t.match(await short.json(), { error: 'invalid_password', details: { field: 'password', reason: 'min_length' } });
  const blank = await api.fetch('/api/setup', json({ username: '   ', password: 'long enough password' }));
  t.equal(blank.status, 400);
  t.match(await blank.json(), { error: 'invalid_username', details: { reason: 'required' } });
  const extra = await api.fetch('/api/setup', json({ username: 'a', password: 'long enough password', role: 'viewer' }));
  t.match(await extra.json(), { error: 'invalid_input', details: { field: 'role', reason: 'unknown_field' } }, 'unknown fields refused');
  t.equal(await userCount(api), 0, 'nothing created by refused requests');

  const attempts = await Promise.all(Array.from({ length: 8 }, (_, i) => api.fetch('/api/setup/initialize', json({ username: `admin${i}`, password: 'correct horse battery staple' }))));
  const statuses = attempts.map((r) => r.status).sort();
  t.same(statuses, [201, 409, 409, 409, 409, 409, 409, 409], 'one winner');
  for (const r of attempts) if (r.status === 409) t.match(await r.json(), { error: 'already_initialized' });
  const winner = attempts.find((r) => r.status === 201) as Response;
  const body = (await winner.json()) as { user: { username: string; role: string } };
  t.equal(body.user.role, 'admin');
  t.equal(await userCount(api), 1);
  t.same(await (await api.fetch('/api/setup/status')).json(), { needs_setup: false });
  t.equal((await api.fetch('/api/setup', json({ username: 'late', password: 'correct horse battery staple' }))).status, 409);

  const admin = await api.login(body.user.username, 'correct horse battery staple');
  t.equal(admin.role, 'admin');
});

t.test('login, session, CSRF and logout', async (t) => {
  const api = await startApi(t);
  const user = await makeUser(api.db, { role: 'admin', username: 'Ops.Admin' });

  const wrong = await api.fetch('/api/auth/login', json({ username: user.username, password: 'not the password' }));
  t.equal(wrong.status, 401);
  t.match(await wrong.json(), { error: 'invalid_credentials' });
  const unknown = await api.fetch('/api/auth/login', json({ username: 'nobody', password: 'not the password' }));
  t.match(await unknown.json(), { error: 'invalid_credentials' }, 'unknown users look the same');

  const res = await api.fetch('/api/auth/login', json({ username: 'ops.admin', password: user.password }));
  t.equal(res.status, 200, 'usernames are case-insensitive');
  const cookie = res.headers.get('set-cookie') ?? '';
  t.match(cookie, /^bastion_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=604800$/, 'HttpOnly, Lax, 7 days, not Secure over plain HTTP');
  const login = (await res.json()) as { user: { username: string; role: string }; csrf_token: string; expires_at: string };
  t.equal(login.user.username, 'Ops.Admin');
  const expires = Date.parse(login.expires_at) - Date.now();
  t.ok(expires > 6.9 * 86400e3 && expires <= 7 * 86400e3, 'fixed 7-day expiry');

  const c = cookie.split(';')[0] as string;
  const session = (await (await api.fetch('/api/session', { headers: { cookie: c } })).json()) as Record<string, unknown>;
  t.match(session, { authenticated: true, kind: 'session', user: { username: 'Ops.Admin', role: 'admin' }, csrf_token: login.csrf_token });
  t.same(await (await api.fetch('/api/session')).json(), { authenticated: false });

  const create = (headers: Record<string, string>) => api.fetch('/api/users', { method: 'POST', headers: { cookie: c, 'content-type': 'application/json', ...headers }, body: JSON.stringify({ username: 'new-user', role: 'viewer', password: 'a long enough pw' }) });
  const before = await userCount(api);
  const noCsrf = await create({});
  t.equal(noCsrf.status, 401);
  t.match(await noCsrf.json(), { error: 'invalid_csrf' });
  const badCsrf = await create({ 'x-csrf-token': `${login.csrf_token.slice(0, -2)}AA` });
  t.match(await badCsrf.json(), { error: 'invalid_csrf' });
  t.equal(await userCount(api), before, 'refused mutations changed nothing');
  t.equal((await create({ 'x-csrf-token': login.csrf_token })).status, 201);

  const getOk = await api.fetch('/api/users', { headers: { cookie: c } });
  t.equal(getOk.status, 200, 'reads need no CSRF');

  const logoutNoCsrf = await api.fetch('/api/auth/logout', { method: 'POST', headers: { cookie: c } });
  t.equal(logoutNoCsrf.status, 401, 'a live session is not ended by a request without its CSRF token');
  t.equal((await api.fetch('/api/users', { headers: { cookie: c } })).status, 200);
  const logout = await api.fetch('/api/auth/logout', { method: 'POST', headers: { cookie: c, 'x-csrf-token': login.csrf_token } });
  t.equal(logout.status, 204);
  t.match(logout.headers.get('set-cookie') ?? '', /bastion_session=; .*Max-Age=0/);
  const after = await api.fetch('/api/users', { headers: { cookie: c } });
  t.equal(after.status, 401);
  t.match(await after.json(), { error: 'session_expired' });
  t.equal((await api.fetch('/api/auth/logout', { method: 'POST', headers: { cookie: c } })).status, 204, 'logging out a dead session is fine');
  t.match(await (await api.fetch('/api/users')).json(), { error: 'unauthorized' });
});

t.test('expired sessions are refused; behind a trusted HTTPS proxy the cookie is Secure', async (t) => {
  const api = await startApi(t, { trustedProxies: parseTrustedProxies('127.0.0.1/32') });
  const user = await makeUser(api.db, { role: 'viewer' });
  const res = await api.fetch('/api/auth/login', { ...json({ username: user.username, password: user.password }), headers: { 'content-type': 'application/json', 'x-forwarded-proto': 'https', 'x-forwarded-for': '198.51.100.20' } });
  t.match(res.headers.get('set-cookie') ?? '', /; Secure$/);
  const { rows } = await api.pool.query<{ client_address: string }>('select client_address from bastion_private.sessions');
  t.equal(rows[0]?.client_address, '198.51.100.20', 'client address from the trusted proxy');
  const cookie = (res.headers.get('set-cookie') ?? '').split(';')[0] as string;
  t.equal((await api.fetch('/api/users', { headers: { cookie } })).status, 200);
  await api.pool.query(`update bastion_private.sessions set created_at = now() - interval '8 days', expires_at = now() - interval '1 day'`);
  const expired = await api.fetch('/api/users', { headers: { cookie } });
  t.equal(expired.status, 401);
  t.match(await expired.json(), { error: 'session_expired' });
  t.match(await (await api.fetch('/api/users', { headers: { cookie: 'bastion_session=forged' } })).json(), { error: 'session_expired' });
});

t.test('login throttle: 10 attempts lock the address for 15 minutes; success clears; per client address', async (t) => {
  const api = await startApi(t, { trustedProxies: parseTrustedProxies('127.0.0.1') });
  const user = await makeUser(api.db, { role: 'viewer' });
  const from = (ip: string, password: string) => api.fetch('/api/auth/login', { ...json({ username: user.username, password }), headers: { 'content-type': 'application/json', 'x-forwarded-for': ip } });

  // A success before the limit clears the count.
  for (let i = 0; i < 5; i++) t.equal((await from('198.51.100.1', 'wrong password!')).status, 401);
  t.equal((await from('198.51.100.1', user.password)).status, 200);
  t.equal((await api.pool.query(`select 1 from bastion_private.login_throttle where client_address = '198.51.100.1'`)).rowCount, 0);

  for (let i = 0; i < 10; i++) t.equal((await from('198.51.100.2', 'wrong password!')).status, 401, `failure ${i + 1}`);
  const locked = await from('198.51.100.2', user.password);
  t.equal(locked.status, 429, 'locked even with the right password');
  const body = (await locked.json()) as { error: string; details: { reason: string; retry_after_seconds: number } };
  t.equal(body.error, 'rate_limited');
  t.equal(body.details.reason, 'throttled');
  t.ok(body.details.retry_after_seconds > 14 * 60 && body.details.retry_after_seconds <= 15 * 60);
  t.equal(locked.headers.get('retry-after'), String(body.details.retry_after_seconds));
  t.equal((await from('198.51.100.3', user.password)).status, 200, 'another client behind the same proxy is not locked');

  // Time moves on (in the database, not by sleeping): the lock ends.
  await api.pool.query(`update bastion_private.login_throttle set locked_until = now() - interval '1 second', window_started_at = now() - interval '16 minutes' where client_address = '198.51.100.2'`);
  t.equal((await from('198.51.100.2', user.password)).status, 200, 'released');

  // Parallel guesses are all counted.
  const burst = await Promise.all(Array.from({ length: 14 }, () => from('198.51.100.4', 'wrong password!')));
  const statuses = burst.map((r) => r.status).sort();
  t.same(statuses, [...Array(10).fill(401), ...Array(4).fill(429)], 'exactly 10 guesses checked, the rest refused');
  t.equal((await from('198.51.100.4', user.password)).status, 429);
});

t.test('X-Forwarded-For is ignored from an untrusted peer (cannot dodge the throttle)', async (t) => {
  const api = await startApi(t);
  const user = await makeUser(api.db, { role: 'viewer' });
  for (let i = 0; i < 10; i++) {
    await api.fetch('/api/auth/login', { ...json({ username: user.username, password: 'wrong password!' }), headers: { 'content-type': 'application/json', 'x-forwarded-for': `203.0.113.${i}` } });
  }
  const r = await api.fetch('/api/auth/login', { ...json({ username: user.username, password: user.password }), headers: { 'content-type': 'application/json', 'x-forwarded-for': '203.0.113.99' } });
  t.equal(r.status, 429);
  const { rows } = await api.pool.query<{ client_address: string }>('select client_address from bastion_private.login_throttle');
  t.same(rows.map((x) => x.client_address), ['127.0.0.1']);
});

t.test('users: admin creates, changes roles, disables (sessions and tokens die at once), resets passwords', async (t) => {
  const api = await startApi(t);
  const admin = await api.as('admin');
  const created = await admin.post('/api/users', { username: 'Zoë "; drop table bastion.users; --', role: 'operator', password: 'twelve chars!' });
  t.equal(created.status, 201);
  const { user } = (await created.json()) as { user: { id: string; username: string; role: string } };
  t.equal(user.username, 'Zoë "; drop table bastion.users; --', 'unicode and SQL-looking text stored literally');
  t.match(await (await admin.post('/api/users', { username: 'zoë "; DROP TABLE bastion.users; --', role: 'viewer', password: 'twelve chars!' })).json(), { error: 'username_taken' });
  t.match(await (await admin.post('/api/users', { username: 'x', role: 'root', password: 'twelve chars!' })).json(), { error: 'invalid_input', details: { field: 'role' } });
  t.match(await (await admin.post('/api/users', { username: 'x'.repeat(65), role: 'viewer', password: 'twelve chars!' })).json(), { error: 'invalid_username', details: { reason: 'max_length' } });

  const zoe = await api.login(user.username, 'twelve chars!');
  t.equal(zoe.role, 'operator');
  const token = (await (await admin.post('/api/tokens', { name: 'zoe script', role: 'operator', user_id: user.id })).json()) as { token: { token: string; id: string } };
  const bearer = (path: string) => api.fetch(path, { headers: { authorization: `Bearer ${token.token.token}` } });
  t.equal((await bearer('/api/users')).status, 200);

  const viewerNow = await admin.put(`/api/users/${user.id}/role`, { role: 'viewer' });
  t.match(await viewerNow.json(), { user: { role: 'viewer' } });
  const me = await bearer('/api/session');
  t.match(await me.json(), { user: { role: 'viewer' } }, 'a token never acts above its user’s current role');

  const disabled = await admin.post(`/api/users/${user.id}/disable`);
  t.equal(disabled.status, 200);
  t.match(await (await zoe.get('/api/users')).json(), { error: 'session_expired' }, 'session ended at once');
  t.match(await (await bearer('/api/users')).json(), { error: 'invalid_token' }, 'token revoked at once');
  const login = await api.fetch('/api/auth/login', json({ username: user.username, password: 'twelve chars!' }));
  t.equal(login.status, 403);
  t.match(await login.json(), { error: 'user_disabled' });

  t.equal((await admin.post(`/api/users/${user.id}/enable`)).status, 200);
  t.equal((await admin.post(`/api/users/${user.id}/password`, { password: 'a brand new password' })).status, 204);
  t.equal((await api.fetch('/api/auth/login', json({ username: user.username, password: 'twelve chars!' }))).status, 401, 'old password gone');
  await api.login(user.username, 'a brand new password');
  t.match(await (await bearer('/api/users')).json(), { error: 'invalid_token' }, 'tokens revoked by disabling stay revoked');

  t.match(await (await admin.post(`/api/users/${admin.userId}/disable`)).json(), { error: 'cannot_disable_self' });
  t.match(await (await admin.put(`/api/users/${admin.userId}/role`, { role: 'viewer' })).json(), { error: 'last_admin' });
  t.match(await (await admin.put('/api/users/00000000-0000-4000-8000-000000000000/role', { role: 'viewer' })).json(), { error: 'user_not_found' });
  t.match(await (await admin.put('/api/users/not-a-uuid/role', { role: 'viewer' })).json(), { error: 'invalid_input', details: { field: 'user_id' } });
});

t.test('API tokens: shown once, stored hashed, capped by the user’s role, revocation effective on the next request', async (t) => {
  const api = await startApi(t);
  const admin = await api.as('admin');
  const viewer = await makeUser(api.db, { role: 'viewer' });
  t.match(await (await admin.post('/api/tokens', { name: 'too much', role: 'admin', user_id: viewer.id })).json(), { error: 'token_role_too_high' });
  t.match(await (await admin.post('/api/tokens', { name: 'x', role: 'viewer', expires_at: '2001-01-01T00:00:00Z' })).json(), { error: 'invalid_input', details: { field: 'expires_at' } });
  const res = await admin.post('/api/tokens', { name: 'backup report', role: 'viewer' });
  t.equal(res.status, 201);
  const { token } = (await res.json()) as { token: { id: string; token: string; role: string } };
  t.match(token.token, /^bst_[A-Za-z0-9_-]{43}$/);
  const stored = await api.pool.query<{ token_hint: string; hash: string }>(`select token_hint, encode(token_hash, 'hex') as hash from bastion_private.api_tokens where id = $1`, [token.id]);
  t.equal(stored.rows[0]?.token_hint, token.token.slice(0, 8));
  t.notMatch(JSON.stringify(stored.rows), token.token.slice(8), 'the secret is not stored');
  const list = (await (await admin.get('/api/tokens')).json()) as { items: Array<Record<string, unknown>> };
  t.equal(list.items.length, 1);
  t.notOk('token' in (list.items[0] as object), 'lists never show the secret');

  const asToken = (path: string, init: RequestInit = {}) => api.fetch(path, { ...init, headers: { authorization: `Bearer ${token.token}`, ...init.headers } });
  t.equal((await asToken('/api/jobs')).status, 200);
  const mutate = await asToken('/api/users', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'x', role: 'viewer', password: 'twelve chars!' }) });
  t.equal(mutate.status, 403, 'bearer needs no CSRF, but a viewer token is refused by PostgreSQL');
  t.match(await mutate.json(), { error: 'forbidden' });
  t.ok(((await api.pool.query(`select last_used_at from bastion_private.api_tokens`)).rows[0] as { last_used_at: Date | null }).last_used_at, 'last use recorded');

  t.equal((await admin.post(`/api/tokens/${token.id}/revoke`)).status, 200);
  const after = await asToken('/api/jobs');
  t.equal(after.status, 401);
  t.match(await after.json(), { error: 'invalid_token' });
  t.match(await (await asToken('/api/jobs', { headers: { authorization: 'Bearer nope' } })).json(), { error: 'invalid_token' });
  t.match(await (await admin.post('/api/tokens/00000000-0000-4000-8000-000000000000/revoke')).json(), { error: 'token_not_found' });

  const expiring = (await (await admin.post('/api/tokens', { name: 'soon', role: 'viewer', expires_at: new Date(Date.now() + 3600e3).toISOString() })).json()) as { token: { id: string; token: string } };
  await api.pool.query(`update bastion_private.api_tokens set created_at = now() - interval '2 hours', expires_at = now() - interval '1 second' where id = $1`, [expiring.token.id]);
  t.match(await (await api.fetch('/api/jobs', { headers: { authorization: `Bearer ${expiring.token.token}` } })).json(), { error: 'invalid_token' }, 'expired');
});

t.test('changing your own password: needs the current one; other sessions end, this one stays', async (t) => {
  const api = await startApi(t);
  const user = await makeUser(api.db, { role: 'viewer' });
  const a = await loginClient(api.base, user.username, user.password);
  const b = await loginClient(api.base, user.username, user.password);
  t.match(await (await a.post('/api/auth/password', { current_password: 'wrong', new_password: 'a new long password' })).json(), { error: 'invalid_credentials', details: { field: 'current_password' } });
  t.match(await (await a.post('/api/auth/password', { current_password: user.password, new_password: 'short' })).json(), { error: 'invalid_password', details: { field: 'new_password' } });
  t.match(await (await a.post('/api/auth/password', { current_password: user.password, new_password: 'a new long password' }, { csrf: false })).json(), { error: 'invalid_csrf' });
  t.equal((await a.post('/api/auth/password', { current_password: user.password, new_password: 'a new long password' })).status, 204);
  t.equal((await a.get('/api/users')).status, 200, 'this session stays');
  t.equal((await b.get('/api/users')).status, 401, 'the other session ended');
  await loginClient(api.base, user.username, 'a new long password');
});
