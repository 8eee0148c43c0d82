/**
 * Who is making a request: a bearer API token (`Authorization: Bearer bst_…`,
 * no CSRF needed: browsers never attach it on their own) or the session
 * cookie (then mutations need the session's CSRF token in `X-CSRF-Token`).
 *
 * The lookup runs on the owner connection through the bastion_private
 * functions, on every request: a revoked token, an ended session or a
 * disabled user is refused from the next request on, with no cache to wait
 * out. It is one primary-key lookup (plus a write at most once a minute).
 */
import type pg from 'pg';
import { BastionError } from '../../core/errors.ts';
import { authenticateApiToken, authenticateSession, type Role } from '../../db/queries/sessions.ts';
import { CSRF_HEADER, SESSION_COOKIE, csrfMatches, isApiToken, isSessionToken, readCookie, tokenHash } from './tokens.ts';

/** The authenticated identity of a request. */
export interface RequestAuth {
  /** How the request authenticated. */
  kind: 'session' | 'token';
  userId: string;
  username: string;
  /** Effective role (a token's role is capped by its user's). */
  role: Role;
  /** True when the request may mutate: a bearer token, or a session with the right CSRF header. */
  csrfOk: boolean;
  /** The session token (session auth only), to log out or derive the CSRF token. */
  sessionToken?: string;
  /** The API token id (token auth only). */
  tokenId?: string;
}

/** PostgreSQL role of each application role. */
export const PG_ROLE: Readonly<Record<Role, string>> = { viewer: 'bastion_viewer', operator: 'bastion_operator', admin: 'bastion_admin' };

/** Which credential a request carries, read from its headers (no I/O). */
export type Credential = { kind: 'token'; token: string } | { kind: 'session'; token: string } | { kind: 'none' } | { kind: 'malformed'; what: 'authorization' | 'cookie' };

/** Find the credential in the headers: the Authorization header wins over the cookie. */
export function readCredential(headers: Readonly<Record<string, string | undefined>>): Credential {
  const authorization = headers.authorization;
  if (authorization !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!m || !isApiToken(m[1] as string)) return { kind: 'malformed', what: 'authorization' };
    return { kind: 'token', token: m[1] as string };
  }
  const cookie = readCookie(headers.cookie, SESSION_COOKIE);
  if (cookie === undefined || cookie === '') return { kind: 'none' };
  if (!isSessionToken(cookie)) return { kind: 'malformed', what: 'cookie' };
  return { kind: 'session', token: cookie };
}

/**
 * Authenticate a request from its headers. Throws `unauthorized` (no
 * credential), `invalid_token` or `session_expired` (401).
 */
export async function authenticate(pool: Pick<pg.Pool, 'query'>, headers: Readonly<Record<string, string | undefined>>): Promise<RequestAuth> {
  const credential = readCredential(headers);
  switch (credential.kind) {
    case 'none':
      throw new BastionError('unauthorized', 'Sign in (session cookie) or send Authorization: Bearer <API token>');
    case 'malformed':
      throw credential.what === 'authorization'
        ? new BastionError('invalid_token', 'The Authorization header must be "Bearer bst_…" with an API token')
        : new BastionError('session_expired');
    case 'token': {
      const user = await authenticateApiToken(pool, tokenHash(credential.token));
      if (!user) throw new BastionError('invalid_token');
      return { kind: 'token', userId: user.userId, username: user.username, role: user.role, csrfOk: true, tokenId: user.tokenId };
    }
    case 'session': {
      const user = await authenticateSession(pool, tokenHash(credential.token));
      if (!user) throw new BastionError('session_expired');
      return {
        kind: 'session',
        userId: user.userId,
        username: user.username,
        role: user.role,
        csrfOk: csrfMatches(credential.token, headers[CSRF_HEADER]),
        sessionToken: credential.token,
      };
    }
  }
}

/**
 * Run `fn` in a transaction as the request's user: `role` is the
 * application role and `bastion.user_id` the user, both transaction-local,
 * so PostgreSQL's grants and row-level security hold whatever `fn` does.
 */
export async function withRequestTransaction<T>(pool: pg.Pool, auth: Pick<RequestAuth, 'role' | 'userId'>, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    await client.query(`select set_config('role', $1, true), set_config('bastion.user_id', $2, true)`, [PG_ROLE[auth.role], auth.userId]);
    const result = await fn(client);
    await client.query('commit');
    return result;
  } catch (e) {
    await client.query('rollback').catch(() => {});
    throw e;
  } finally {
    client.release();
  }
}
