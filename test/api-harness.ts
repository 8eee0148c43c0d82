/**
 * A running gateway on a fresh test database, and HTTP clients that sign in
 * the way a browser (cookie + CSRF header) or a script (bearer token) does.
 *
 *   const api = await startApi(t);
 *   const admin = await api.as('admin');          // a new admin, signed in
 *   const res = await admin.post('/api/users', { … });
 */
import { pino } from 'pino';
import type pg from 'pg';
import { createGateway, type Gateway, type GatewayDeps } from '../gateway/app.ts';
import type { Db } from '../db/kysely.ts';
import { createPool } from '../db/pool.ts';
import { testDatabase } from './db.ts';
import { makeUser } from './factories.ts';

type Role = 'viewer' | 'operator' | 'admin';

/** An HTTP client bound to one identity. */
export interface ApiClient {
  readonly userId: string;
  readonly username: string;
  readonly role: Role;
  /** Cookie header value (session clients). */
  readonly cookie?: string;
  /** CSRF token (session clients). */
  readonly csrf?: string;
  /** API token (token clients). */
  readonly token?: string;
  request(method: string, path: string, body?: unknown, init?: { headers?: Record<string, string>; csrf?: boolean }): Promise<Response>;
  get(path: string): Promise<Response>;
  post(path: string, body?: unknown, init?: { headers?: Record<string, string>; csrf?: boolean }): Promise<Response>;
  put(path: string, body?: unknown): Promise<Response>;
  del(path: string): Promise<Response>;
  /** POST /graphql; returns status and parsed body. */
  graphql(query: string, variables?: Record<string, unknown>, init?: { csrf?: boolean }): Promise<{ status: number; body: { data?: any; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> } }>;
}

/** A started API. */
export interface Api {
  base: string;
  pool: pg.Pool;
  db: Db;
  url: string;
  gateway: Gateway;
  /** A new user of `role`, signed in with a session (default) or an API token. */
  as(role: Role, options?: { via?: 'session' | 'token'; username?: string }): Promise<ApiClient>;
  /** Sign in an existing user with a session. */
  login(username: string, password: string): Promise<ApiClient>;
  /** Unauthenticated fetch. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
}

function client(base: string, who: { userId: string; username: string; role: Role; cookie?: string; csrf?: string; token?: string }): ApiClient {
  const request = async (method: string, path: string, body?: unknown, init: { headers?: Record<string, string>; csrf?: boolean } = {}) => {
    const headers: Record<string, string> = { ...init.headers };
    if (who.cookie) headers.cookie = who.cookie;
    if (who.csrf && (init.csrf ?? true) && method !== 'GET') headers['x-csrf-token'] = who.csrf;
    if (who.token) headers.authorization = `Bearer ${who.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    return fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  };
  return {
    ...who,
    request,
    get: (p) => request('GET', p),
    post: (p, b, i) => request('POST', p, b, i),
    put: (p, b) => request('PUT', p, b),
    del: (p) => request('DELETE', p),
    graphql: async (query, variables, init = {}) => {
      const res = await request('POST', '/graphql', { query, variables }, { csrf: init.csrf ?? true, headers: { accept: 'application/graphql-response+json' } });
      return { status: res.status, body: (await res.json()) as never };
    },
  };
}

/** Sign in with username and password; throws when refused. */
export async function loginClient(base: string, username: string, password: string): Promise<ApiClient> {
  const res = await fetch(`${base}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { user: { id: string; username: string; role: Role }; csrf_token: string };
  const cookie = (res.headers.get('set-cookie') ?? '').split(';')[0] as string;
  return client(base, { userId: body.user.id, username: body.user.username, role: body.user.role, cookie, csrf: body.csrf_token });
}

/** Start a gateway on a fresh database; closed when `t` ends. */
export async function startApi(
  t: { teardown(fn: () => unknown): void },
  options: Partial<Omit<GatewayDeps, 'pool' | 'logger' | 'version'>> & { logger?: GatewayDeps['logger']; beforeStart?: (pool: pg.Pool) => Promise<void> } = {},
): Promise<Api> {
  const { pool, db, url } = await testDatabase(t, { poolMax: 10 });
  await options.beforeStart?.(pool);
  // The gateway gets its own pool, closed with it: PostGraphile's LISTEN
  // client is released by gateway.close(), and the test database's own
  // teardown (which runs first) must not wait for it.
  const gatewayPool = createPool({ connectionString: url, max: 20, applicationName: 'bastion-test-gateway' });
  const gateway = createGateway({ pool: gatewayPool, logger: options.logger ?? pino({ level: process.env.BASTION_TEST_LOG ?? 'silent' }), version: 'test', ...options });
  await gateway.ready();
  const port = await gateway.listen('127.0.0.1', 0);
  t.teardown(async () => {
    await gateway.close();
    await gatewayPool.end().catch(() => {});
  });
  const base = `http://127.0.0.1:${port}`;
  const api: Api = {
    base,
    pool,
    db,
    url,
    gateway,
    login: (u, p) => loginClient(base, u, p),
    fetch: (path, init) => fetch(`${base}${path}`, init),
    as: async (role, opts = {}) => {
      const user = await makeUser(db, { role, ...(opts.username ? { username: opts.username } : {}) });
      if ((opts.via ?? 'session') === 'session') return loginClient(base, user.username, user.password);
      const { rows } = await pool.query<{ token: string }>(`select token from bastion.create_api_token(name => 'test', role => $1, user_id => $2)`, [role, user.id]);
      return client(base, { userId: user.id, username: user.username, role, token: rows[0]?.token as string });
    },
  };
  return api;
}
