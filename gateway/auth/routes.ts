/**
 * The auth HTTP routes: first-run setup, login (throttled per client
 * address), logout, the current session (with its CSRF token), and changing
 * your own password.
 *
 *   GET  /api/setup/status       {needs_setup}
 *   POST /api/setup[/initialize] {username, password} → 201 {user}; 409 already_initialized
 *   POST /api/auth/login         {username, password} → 200 {user, csrf_token, expires_at} + cookie
 *   POST /api/auth/logout        → 204, cookie cleared (CSRF needed while the session is live)
 *   GET  /api/session            {authenticated, kind?, user?, csrf_token?, expires_at?}
 *   POST /api/auth/password      {current_password, new_password} → 204; other sessions end
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { z } from 'zod';
import { BastionError } from '../../core/errors.ts';
import { authenticateSession, beginLoginAttempt, createSession, deleteSession } from '../../db/queries/sessions.ts';
import { loginLookup, needsSetup, setOwnPassword, setupFirstAdmin } from '../../db/queries/users.ts';
import { errorResponse, json, noContent, type Request, type Response, type Router } from '../http-adapter.ts';
import { jsonBody, parseInput } from '../rest/input.ts';
import { authenticate, readCredential, withRequestTransaction } from './authenticate.ts';
import { resolveClient, type TrustedProxies } from './client-address.ts';
import { MAX_PASSWORD_LENGTH, checkPassword, decoyHash, hashPassword, verifyPassword } from './password.ts';
import { CSRF_HEADER, SESSION_TTL_SECONDS, clearSessionCookie, csrfMatches, csrfTokenFor, newSessionToken, sessionCookie, tokenHash } from './tokens.ts';

/** What the auth routes need. */
export interface AuthRouteDeps {
  pool: pg.Pool;
  logger: Logger;
  trustedProxies: TrustedProxies;
  /** Called after each login outcome (metrics). */
  onLogin?: (outcome: 'success' | 'failure' | 'throttled') => void;
}

const credentials = z
  .object({
    username: z.string().max(200, 'must be at most 200 characters'),
    password: z.string().max(MAX_PASSWORD_LENGTH * 4, `must be at most ${MAX_PASSWORD_LENGTH} characters`),
  })
  .strict();

const passwordChange = z
  .object({
    current_password: z.string().max(MAX_PASSWORD_LENGTH * 4),
    new_password: z.string(),
  })
  .strict();

const NO_STORE = { 'cache-control': 'no-store' };
const AUTH_BODY_LIMIT = 16 * 1024;

/** Register the auth routes. */
export function addAuthRoutes(router: Router, deps: AuthRouteDeps): void {
  const { pool } = deps;

  router.get('/api/setup/status', async () => json(200, { needs_setup: await needsSetup(pool) }, NO_STORE));

  const setup = async (req: Request): Promise<Response> => {
    const body = parseInput(credentials, jsonBody(req), 'body');
    // Fail fast (no hashing) once setup is closed; the SQL function decides races.
    if (!(await needsSetup(pool))) throw new BastionError('already_initialized');
    checkPassword(body.password);
    const hash = await hashPassword(body.password);
    const id = await setupFirstAdmin(pool, body.username, hash);
    deps.logger.info({ user_id: id }, 'first admin created; setup is closed');
    return json(201, { user: { id, username: body.username.trim(), role: 'admin' } }, NO_STORE);
  };
  router.post('/api/setup', setup, { maxBodyBytes: AUTH_BODY_LIMIT });
  router.post('/api/setup/initialize', setup, { maxBodyBytes: AUTH_BODY_LIMIT });

  router.post(
    '/api/auth/login',
    async (req) => {
      const body = parseInput(credentials, jsonBody(req), 'body');
      if (body.username.trim() === '') throw new BastionError('invalid_username', 'username must not be blank', { details: { field: 'username', reason: 'required' } });
      const client = resolveClient(req.remoteAddress, req.headers, deps.trustedProxies);
      const lockedUntil = await beginLoginAttempt(pool, client.address);
      if (lockedUntil) {
        deps.onLogin?.('throttled');
        const retryAfter = Math.max(1, Math.ceil((lockedUntil.getTime() - Date.now()) / 1000));
        const res = errorResponse('rate_limited', `Too many failed logins from this address; retry in ${retryAfter} seconds`, { reason: 'throttled', retry_after_seconds: retryAfter });
        res.headers = { ...res.headers, 'retry-after': String(retryAfter) };
        return res;
      }
      const user = await loginLookup(pool, body.username);
      // Unknown users cost the same scrypt as known ones.
      const ok = await verifyPassword(body.password, user?.passwordHash ?? (await decoyHash()));
      if (!user || !user.passwordHash || !ok) {
        deps.onLogin?.('failure');
        throw new BastionError('invalid_credentials');
      }
      if (user.disabled) {
        deps.onLogin?.('failure');
        throw new BastionError('user_disabled');
      }
      const token = newSessionToken();
      const expiresAt = await createSession(pool, { tokenHash: tokenHash(token), userId: user.userId, clientAddress: client.address, userAgent: req.headers['user-agent'], ttlSeconds: SESSION_TTL_SECONDS });
      deps.onLogin?.('success');
      return json(
        200,
        { user: { id: user.userId, username: user.username, role: user.role }, csrf_token: csrfTokenFor(token), expires_at: expiresAt.toISOString() },
        { ...NO_STORE, 'set-cookie': sessionCookie(token, client.secure) },
      );
    },
    { maxBodyBytes: AUTH_BODY_LIMIT },
  );

  router.post('/api/auth/logout', async (req) => {
    const client = resolveClient(req.remoteAddress, req.headers, deps.trustedProxies);
    const credential = readCredential(req.headers);
    if (credential.kind === 'session') {
      const live = await authenticateSession(pool, tokenHash(credential.token));
      // A live session is ended only by a request that carries its CSRF token
      // (else any site could log the user out); a dead one just loses its cookie.
      if (live && !csrfMatches(credential.token, req.headers[CSRF_HEADER])) throw new BastionError('invalid_csrf');
      await deleteSession(pool, tokenHash(credential.token));
    }
    return noContent({ ...NO_STORE, 'set-cookie': clearSessionCookie(client.secure) });
  });

  router.get('/api/session', async (req) => {
    let auth;
    try {
      auth = await authenticate(pool, req.headers);
    } catch (e) {
      if (e instanceof BastionError && e.status === 401) return json(200, { authenticated: false }, NO_STORE);
      throw e;
    }
    const user = { id: auth.userId, username: auth.username, role: auth.role };
    if (auth.kind === 'token') return json(200, { authenticated: true, kind: 'token', user }, NO_STORE);
    const session = await authenticateSession(pool, tokenHash(auth.sessionToken as string));
    return json(200, { authenticated: true, kind: 'session', user, csrf_token: csrfTokenFor(auth.sessionToken as string), expires_at: session?.expiresAt.toISOString() }, NO_STORE);
  });

  router.post(
    '/api/auth/password',
    async (req) => {
      const auth = await authenticate(pool, req.headers);
      if (!auth.csrfOk) throw new BastionError('invalid_csrf');
      const body = parseInput(passwordChange, jsonBody(req), 'body');
      checkPassword(body.new_password, 'new_password');
      const user = await loginLookup(pool, auth.username);
      if (!user || user.userId !== auth.userId || !user.passwordHash || !(await verifyPassword(body.current_password, user.passwordHash))) {
        throw new BastionError('invalid_credentials', 'The current password is wrong', { details: { field: 'current_password', reason: 'mismatch' } });
      }
      const hash = await hashPassword(body.new_password);
      await withRequestTransaction(pool, auth, (db) => setOwnPassword(db, hash, auth.sessionToken ? tokenHash(auth.sessionToken) : null));
      return noContent(NO_STORE);
    },
    { maxBodyBytes: AUTH_BODY_LIMIT },
  );
}
