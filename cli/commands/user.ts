/**
 * `bastion user …`: users from a terminal, so a headless install can create
 * its first admin without the setup page.
 *
 *   bastion user create --username NAME --role admin|operator|viewer   (password on stdin)
 *   bastion user set-password --username NAME                          (password on stdin)
 *   bastion user list
 *
 * The password is read from stdin — typed twice without echo on a terminal,
 * or piped (`printf %s "$PW" | bastion user create …`) — never from a flag,
 * which would show in `ps` and shell history. It is hashed here (scrypt) and
 * stored through the same SQL functions the API uses, on the owner
 * connection (so it works before any admin exists; afterwards setup is
 * closed).
 */
import type { Logger } from 'pino';
import { sqlCall } from '../../core/database-error.ts';
import { BastionError } from '../../core/errors.ts';
import { createUser, listUsers, loginLookup, setUserPassword } from '../../db/queries/users.ts';
import { checkPassword, hashPassword } from '../../gateway/auth/password.ts';
import { UsageError, type CommandArgs, type Config } from '../config.ts';
import { readPassword } from '../read-password.ts';
import { openToolDatabase } from '../tool-database.ts';

/** Flags of `bastion user`. */
export const USER_FLAGS = {
  username: { type: 'string' },
  role: { type: 'string' },
} as const satisfies Record<string, { type: 'string' | 'boolean' }>;

/** `bastion user --help`. */
export const USER_USAGE = [
  'usage:',
  '  bastion user create --username NAME --role admin|operator|viewer   (reads the password from stdin)',
  '  bastion user set-password --username NAME                          (reads the password from stdin)',
  '  bastion user list',
  '',
  'Passwords: 12 to 1024 characters. On a terminal you type them twice, without echo;',
  'otherwise the whole of stdin is the password (one trailing newline dropped).',
].join('\n');

const SUBCOMMAND_FLAGS: Record<string, ReadonlyArray<keyof typeof USER_FLAGS>> = {
  create: ['username', 'role'],
  'set-password': ['username'],
  list: [],
};

const ROLES = ['viewer', 'operator', 'admin'] as const;
/** Largest password read from stdin, in bytes (4 bytes per character at most). */
const MAX_STDIN_BYTES = 4 * 1024 + 2;

/** Run `bastion user`. */
export async function userCommand(config: Config, logger: Logger, _version: string, args: CommandArgs): Promise<number> {
  const sub = args.positionals[0];
  if (sub === undefined || !(sub in SUBCOMMAND_FLAGS) || args.positionals.length !== 1) {
    throw new UsageError(sub === undefined ? 'user: missing subcommand (create, set-password or list); run "bastion user --help"' : `user: unknown subcommand or extra arguments: ${JSON.stringify(args.positionals.join(' ').slice(0, 100))}`);
  }
  for (const [k, v] of Object.entries(args.flags)) {
    if (v !== undefined && !SUBCOMMAND_FLAGS[sub]!.includes(k as keyof typeof USER_FLAGS)) throw new UsageError(`--${k} does not apply to "user ${sub}"`);
  }
  const f = args.flags as Record<string, string | undefined>;
  if (sub !== 'list' && !f['username']) throw new UsageError(`user ${sub}: --username is required`);
  if (sub === 'create' && !ROLES.includes(f['role'] as (typeof ROLES)[number])) throw new UsageError(`user create: --role must be one of ${ROLES.join(', ')}`);
  let hash = '';
  if (sub !== 'list') {
    const password = await readPassword({ command: 'user', maxBytes: MAX_STDIN_BYTES, tooLong: 'user: the password on stdin is longer than 1024 characters', confirm: true });
    try {
      checkPassword(password);
    } catch (e) {
      throw new UsageError(`user ${sub}: ${(e as Error).message}`);
    }
    hash = await hashPassword(password);
  }
  const quiet = logger.levelVal < 40 ? logger.child({}, { level: 'warn' }) : logger;
  const db = await openToolDatabase(config, quiet, `bastion-user-${sub}`);
  try {
    if (sub === 'create') {
      const id = await sqlCall(createUser(db.pool, f['username']!, f['role'] as (typeof ROLES)[number], hash));
      process.stdout.write(`created ${f['role']} ${f['username']!.trim()} (${id})\n`);
    } else if (sub === 'set-password') {
      const user = await loginLookup(db.pool, f['username']!);
      if (!user) throw new BastionError('user_not_found', `no user named ${JSON.stringify(f['username']!.slice(0, 100))}`);
      await sqlCall(setUserPassword(db.pool, user.userId, hash));
      process.stdout.write(`password set for ${user.username}; their sessions ended\n`);
    } else {
      const users = await listUsers(db.pool);
      if (users.length === 0) process.stdout.write('no users (create the first admin with "bastion user create --role admin")\n');
      for (const u of users) process.stdout.write(`${u.username.padEnd(24)} ${u.role.padEnd(8)} ${u.disabled_at ? 'disabled' : 'enabled '} last login ${u.last_login_at?.toISOString() ?? 'never'}\n`);
    }
    return 0;
  } finally {
    await db.close();
  }
}
