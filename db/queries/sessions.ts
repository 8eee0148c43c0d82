/**
 * Sessions, API-token authentication and the login throttle, on the owner
 * connection (the gateway authenticates a request before it knows which
 * application role to become). Thin wrappers over the bastion_private
 * functions of sql/migrations/0002, so the rules live in SQL.
 */
import type pg from 'pg';

/** Application roles, lowest first. */
export type Role = 'viewer' | 'operator' | 'admin';

/** A request's authenticated user. */
export interface AuthenticatedUser {
  userId: string;
  username: string;
  role: Role;
}

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** The user of a live session, or undefined (unknown, expired, or user disabled). */
export async function authenticateSession(db: Queryable, tokenHash: Buffer): Promise<(AuthenticatedUser & { expiresAt: Date }) | undefined> {
  const { rows } = await db.query<{ user_id: string; username: string; role: Role; expires_at: Date }>(
    'select user_id, username, role, expires_at from bastion_private.authenticate_session($1)',
    [tokenHash],
  );
  const r = rows[0];
  return r ? { userId: r.user_id, username: r.username, role: r.role, expiresAt: r.expires_at } : undefined;
}

/** The user and effective role of a live API token, or undefined. */
export async function authenticateApiToken(db: Queryable, tokenHash: Buffer): Promise<(AuthenticatedUser & { tokenId: string }) | undefined> {
  const { rows } = await db.query<{ token_id: string; user_id: string; username: string; role: Role }>(
    'select token_id, user_id, username, role from bastion_private.authenticate_api_token($1)',
    [tokenHash],
  );
  const r = rows[0];
  return r ? { userId: r.user_id, username: r.username, role: r.role, tokenId: r.token_id } : undefined;
}

/**
 * Start a login attempt from `clientAddress`: the lock expiry when the address
 * is locked (refuse), else undefined (the attempt is counted; a successful
 * login clears the count).
 */
export async function beginLoginAttempt(db: Queryable, clientAddress: string): Promise<Date | undefined> {
  const { rows } = await db.query<{ locked_until: Date | null }>('select bastion_private.begin_login_attempt($1) as locked_until', [clientAddress]);
  return rows[0]?.locked_until ?? undefined;
}

/** Record a successful login; returns the session's expiry. */
export async function createSession(db: Queryable, s: { tokenHash: Buffer; userId: string; clientAddress: string; userAgent: string | undefined; ttlSeconds: number }): Promise<Date> {
  const { rows } = await db.query<{ expires_at: Date }>(
    `select bastion_private.create_session($1, $2, $3, $4, make_interval(secs => $5)) as expires_at`,
    [s.tokenHash, s.userId, s.clientAddress, s.userAgent ?? null, s.ttlSeconds],
  );
  return (rows[0] as { expires_at: Date }).expires_at;
}

/** Log out; true when the session existed. */
export async function deleteSession(db: Queryable, tokenHash: Buffer): Promise<boolean> {
  const { rows } = await db.query<{ deleted: boolean }>('select bastion_private.delete_session($1) as deleted', [tokenHash]);
  return rows[0]?.deleted ?? false;
}

/** Delete expired sessions and idle throttle rows; returns how many rows went. */
export async function pruneAuthState(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>('select bastion_private.prune_auth_state() as n');
  return rows[0]?.n ?? 0;
}
