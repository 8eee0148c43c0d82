/**
 * Users: first-run setup and login lookups (owner connection), and the
 * password-bearing admin actions (called inside a request's role
 * transaction, so PostgreSQL's grants decide who may). Passwords are hashed
 * by the caller (gateway/auth/password.ts); these functions never see one.
 */
import type pg from 'pg';
import { BastionError } from '../../core/errors.ts';
import type { Role } from './sessions.ts';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** A user as the API shows it. */
export interface UserRow {
  id: string;
  username: string;
  role: Role;
  created_at: Date;
  updated_at: Date;
  disabled_at: Date | null;
  last_login_at: Date | null;
}

/**
 * Refuse (`forbidden`) unless the current role may execute `signature`.
 * The function's grant decides anyway; asking first means a refused caller
 * costs no password hashing (≈ 56 ms of CPU each) and gets `forbidden`
 * rather than a complaint about its input.
 */
export async function requireExecute(db: Queryable, signature: string): Promise<void> {
  const { rows } = await db.query<{ ok: boolean }>(`select has_function_privilege($1, 'execute') as ok`, [signature]);
  if (rows[0]?.ok !== true) throw new BastionError('forbidden');
}

/** Signatures of the password-bearing functions (for {@link requireExecute}). */
export const CREATE_USER_FN = 'bastion_private.create_user(text, bastion.user_role, text)';
export const SET_USER_PASSWORD_FN = 'bastion_private.set_user_password(uuid, text)';

/** True until the first user exists. */
export async function needsSetup(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ needs: boolean }>('select bastion_private.needs_setup() as needs');
  return rows[0]?.needs ?? false;
}

/** Create the first admin (exactly one concurrent caller wins; the others get `already_initialized`). */
export async function setupFirstAdmin(db: Queryable, username: string, passwordHash: string): Promise<string> {
  const { rows } = await db.query<{ id: string }>('select bastion_private.setup_first_admin($1, $2) as id', [username, passwordHash]);
  return (rows[0] as { id: string }).id;
}

/** What a login needs to know about a name; undefined when no such user. */
export async function loginLookup(db: Queryable, username: string): Promise<{ userId: string; username: string; passwordHash: string | null; role: Role; disabled: boolean } | undefined> {
  const { rows } = await db.query<{ user_id: string; username: string; password_hash: string | null; role: Role; disabled: boolean }>(
    'select user_id, username, password_hash, role, disabled from bastion_private.login_lookup($1)',
    [username],
  );
  const r = rows[0];
  return r ? { userId: r.user_id, username: r.username, passwordHash: r.password_hash, role: r.role, disabled: r.disabled } : undefined;
}

/** Create a user (admin, or the owner connection for `bastion user create`); returns the id. */
export async function createUser(db: Queryable, username: string, role: Role, passwordHash: string): Promise<string> {
  const { rows } = await db.query<{ id: string }>('select bastion_private.create_user($1, $2, $3) as id', [username, role, passwordHash]);
  return (rows[0] as { id: string }).id;
}

/** Admin: reset a user's password and end their sessions. */
export async function setUserPassword(db: Queryable, userId: string, passwordHash: string): Promise<void> {
  await db.query('select bastion_private.set_user_password($1, $2)', [userId, passwordHash]);
}

/** The signed-in user: change your own password, keeping `keepSession` alive. */
export async function setOwnPassword(db: Queryable, passwordHash: string, keepSession: Buffer | null): Promise<void> {
  await db.query('select bastion_private.set_own_password($1, $2)', [passwordHash, keepSession]);
}

/** Users visible to the current role (everyone for admins, yourself otherwise), by name. */
export async function listUsers(db: Queryable): Promise<UserRow[]> {
  const { rows } = await db.query<UserRow>('select id, username, role, created_at, updated_at, disabled_at, last_login_at from bastion.users order by lower(username)');
  return rows;
}

/** One user by id (under row-level security), or undefined. */
export async function getUser(db: Queryable, id: string): Promise<UserRow | undefined> {
  const { rows } = await db.query<UserRow>('select id, username, role, created_at, updated_at, disabled_at, last_login_at from bastion.users where id = $1', [id]);
  return rows[0];
}
