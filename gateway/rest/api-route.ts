/**
 * The REST route table machinery. A route is data: method, path, the lowest
 * role allowed, zod schemas for its path parameters, query string and body,
 * and a handler that runs inside the request's role transaction:
 *
 *   route({ method: 'post', path: '/api/jobs/:job_id/snapshots/:run_id/pin', role: 'operator',
 *           summary: 'Pin a snapshot', params: jobRun, body: z.object({ reason: … }).strict(),
 *           handle: ({ db, params, body }) => callFunction(db, 'bastion.pin_snapshot', { … }) })
 *
 * so exposing a new SQL function is a few lines. What every route gets:
 * authentication (session cookie or bearer token), the CSRF check on
 * mutations made with a session, validation (400 naming the field), the
 * transaction as `bastion_<role>` with `bastion.user_id` (PostgreSQL's
 * grants and row-level security decide; `role` here documents the rule and
 * drives the role-matrix test), and errors as `{error, message, details}`.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { z } from 'zod';
import { BastionError } from '../../core/errors.ts';
import type { Role } from '../../db/queries/sessions.ts';
import type { SecretKeyProvider } from '../../engine/secrets/secret-key.ts';
import { authenticate, withRequestTransaction, type RequestAuth } from '../auth/authenticate.ts';
import { resolveClient, type ClientInfo, type TrustedProxies } from '../auth/client-address.ts';
import { json, noContent, type Request, type Response, type Router } from '../http-adapter.ts';
import { jsonBody, parseInput, queryObject } from './input.ts';

/** Process services some routes use. */
export interface ApiServices {
  /** Seals secrets (absent: secret routes answer secret_key_unavailable). */
  secretKeys?: SecretKeyProvider | undefined;
}

/** What the REST routes need from the gateway. */
export interface ApiDeps {
  pool: pg.Pool;
  logger: Logger;
  trustedProxies: TrustedProxies;
  services?: ApiServices;
}

/** What a handler receives. */
export interface ApiContext<P, Q, B> {
  req: Request;
  auth: RequestAuth;
  client: ClientInfo;
  params: P;
  query: Q;
  body: B;
  /** A client inside the request's role transaction. */
  db: pg.PoolClient;
  services: ApiServices;
}

/** A REST route. */
export interface ApiRoute<P extends z.ZodType = z.ZodType, Q extends z.ZodType = z.ZodType, B extends z.ZodType = z.ZodType> {
  method: 'get' | 'post' | 'put' | 'del';
  /** uWS pattern, e.g. `/api/jobs/:job_id/snapshots`. */
  path: string;
  /** Lowest role allowed (enforced by PostgreSQL; stated for docs and the role-matrix test). */
  role: Role;
  /** One line for docs/api.md. */
  summary: string;
  params?: P;
  query?: Q;
  body?: B;
  /** Whether a session needs the CSRF header (default: every method but GET). */
  csrf?: boolean;
  /** Status of a successful answer with a value (default 200; no value → 204). */
  status?: number;
  /** Largest body in bytes (default 64 KiB). */
  maxBodyBytes?: number;
  handle(ctx: ApiContext<z.output<P>, z.output<Q>, z.output<B>>): Promise<unknown>;
}

/** Define a route with its schemas' types flowing into the handler. */
export function route<P extends z.ZodType = z.ZodObject<{}>, Q extends z.ZodType = z.ZodObject<{}>, B extends z.ZodType = z.ZodObject<{}>>(r: ApiRoute<P, Q, B>): ApiRoute {
  return r as unknown as ApiRoute;
}

const EMPTY = z.object({}).strict();
/** Default REST body limit: bodies are small JSON documents. */
export const API_MAX_BODY_BYTES = 64 * 1024;

function namedCall(name: string, args: Record<string, unknown>): { call: string; values: unknown[] } {
  if (!/^[a-z_]+\.[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad function name ${name}`);
  const keys = Object.keys(args);
  for (const k of keys) if (!/^[a-z_][a-z0-9_]*$/.test(k)) throw new Error(`bad argument name ${k}`);
  return { call: `${name}(${keys.map((k, i) => `${k} => $${i + 1}`).join(', ')})`, values: keys.map((k) => args[k]) };
}

/**
 * Call a SQL function with named arguments (`fn(job_id => $1, …)`), so a
 * signature that changes order still binds correctly and a renamed
 * parameter fails loudly. Returns its value (scalar or JSON functions).
 */
export async function callFunction<T = unknown>(db: Pick<pg.PoolClient, 'query'>, name: string, args: Record<string, unknown>): Promise<T> {
  const { call, values } = namedCall(name, args);
  const { rows } = await db.query<{ result: T }>(`select ${call} as result`, values);
  return (rows[0] as { result: T }).result;
}

/** Call a SQL function returning a row type (`select * from fn(…)`); the row, or undefined when it returned null. */
export async function callFunctionRow<T extends object = Record<string, unknown>>(db: Pick<pg.PoolClient, 'query'>, name: string, args: Record<string, unknown>): Promise<T | undefined> {
  const rows = await callFunctionRows<T>(db, name, args);
  const row = rows[0];
  // A composite returned as NULL comes back as a row of NULLs.
  return row && Object.values(row).some((v) => v !== null) ? row : undefined;
}

/** Call a set-returning SQL function (`select * from fn(…)`). */
export async function callFunctionRows<T extends object = Record<string, unknown>>(db: Pick<pg.PoolClient, 'query'>, name: string, args: Record<string, unknown>): Promise<T[]> {
  const { call, values } = namedCall(name, args);
  const { rows } = await db.query<T>(`select * from ${call}`, values);
  return rows;
}

/** Attach `routes` to `router`. */
export function mountApiRoutes(router: Router, deps: ApiDeps, routes: readonly ApiRoute[]): void {
  for (const r of routes) router.add(r.method, r.path, (req) => serve(deps, r, req), { maxBodyBytes: r.maxBodyBytes ?? API_MAX_BODY_BYTES });
}

async function serve(deps: ApiDeps, r: ApiRoute, req: Request): Promise<Response> {
  const auth = await authenticate(deps.pool, req.headers);
  if ((r.csrf ?? r.method !== 'get') && !auth.csrfOk) throw new BastionError('invalid_csrf');
  const params = parseInput(r.params ?? EMPTY.passthrough(), req.params, 'path');
  const query = parseInput(r.query ?? z.object({}).passthrough(), queryObject(req.query), 'query');
  const body = parseInput(r.body ?? EMPTY, r.method === 'get' ? {} : jsonBody(req), 'body');
  const client = resolveClient(req.remoteAddress, req.headers, deps.trustedProxies);
  try {
    const value = await withRequestTransaction(deps.pool, auth, (db) => r.handle({ req, auth, client, params, query, body, db, services: deps.services ?? {} }));
    if (value === undefined) return noContent({ 'cache-control': 'no-store' });
    return json(r.status ?? 200, value, { 'cache-control': 'no-store' });
  } catch (e) {
    // The route was written against a function or table another migration
    // has not shipped yet (or a typo): say so plainly instead of a bare 500.
    const code = (e as { code?: unknown }).code;
    if (code === '42883' || code === '42P01') {
      deps.logger.warn({ route: r.path, err: (e as Error).message }, 'REST route uses a SQL function or table that does not exist');
      throw new BastionError('not_implemented', undefined, { cause: e });
    }
    throw e;
  }
}
