/**
 * `bastion secret …`: node-scoped secrets from a terminal, so a WebDAV
 * target can be used before the web UI exists.
 *
 *   bastion secret put-webdav --name NAME --username USER [--node hub]   (password on stdin)
 *   bastion secret list
 *   bastion secret delete --kind webdav --name NAME [--node hub]
 *
 * The password is read from stdin — typed without echo on a terminal, or
 * piped (`printf %s "$PW" | bastion secret put-webdav …`) — never from a flag,
 * which would show in `ps` and shell history. It is encrypted in this process
 * with the data directory's secret key (BASTION_SECRET_KEY or
 * `<data_dir>/secret.key`, created on first use): run this where the hub
 * runs, or with the hub's key.
 */
import type { Logger } from 'pino';
import { sqlCall } from '../../core/database-error.ts';
import { SecretKeyProvider } from '../../engine/secrets/secret-key.ts';
import { putWebdavSecret } from '../../engine/secrets/secret-store.ts';
import { UsageError, type CommandArgs, type Config } from '../config.ts';
import { readPassword } from '../read-password.ts';
import { openToolDatabase } from '../tool-database.ts';

/** Flags of `bastion secret`. */
export const SECRET_FLAGS = {
  name: { type: 'string' },
  username: { type: 'string' },
  node: { type: 'string' },
  kind: { type: 'string' },
} as const satisfies Record<string, { type: 'string' | 'boolean' }>;

/** `bastion secret --help`. */
export const SECRET_USAGE = [
  'usage:',
  '  bastion secret put-webdav --name NAME --username USER [--node hub]   (reads the password from stdin)',
  '  bastion secret list',
  '  bastion secret delete --kind webdav|backup_age_identity --name NAME [--node hub]',
  '',
  'Secrets are encrypted with BASTION_SECRET_KEY or <data dir>/secret.key (created on first use);',
  'the hub and every worker need the same key.',
].join('\n');

const SUBCOMMAND_FLAGS: Record<string, ReadonlyArray<keyof typeof SECRET_FLAGS>> = {
  'put-webdav': ['name', 'username', 'node'],
  list: [],
  delete: ['kind', 'name', 'node'],
};

/** Largest password read from stdin. */
const MAX_PASSWORD_BYTES = 4096;

/** Run `bastion secret`. */
export async function secretCommand(config: Config, logger: Logger, _version: string, args: CommandArgs): Promise<number> {
  const sub = args.positionals[0];
  if (sub === undefined || !(sub in SUBCOMMAND_FLAGS) || args.positionals.length !== 1) {
    throw new UsageError(sub === undefined ? 'secret: missing subcommand (put-webdav, list or delete); run "bastion secret --help"' : `secret: unknown subcommand or extra arguments: ${JSON.stringify(args.positionals.join(' ').slice(0, 100))}`);
  }
  for (const [k, v] of Object.entries(args.flags)) {
    if (v !== undefined && !SUBCOMMAND_FLAGS[sub]!.includes(k as keyof typeof SECRET_FLAGS)) throw new UsageError(`--${k} does not apply to "secret ${sub}"`);
  }
  const f = args.flags as Record<string, string | undefined>;
  const node = f['node'] ?? 'hub';
  if (sub !== 'list' && !f['name']) throw new UsageError(`secret ${sub}: --name is required`);
  if (sub === 'put-webdav' && !f['username']) throw new UsageError('secret put-webdav: --username is required');
  if (sub === 'delete' && !f['kind']) throw new UsageError('secret delete: --kind is required (webdav or backup_age_identity)');
  const password = sub === 'put-webdav' ? await readPassword({ command: 'secret', maxBytes: MAX_PASSWORD_BYTES, tooLong: `secret: more than ${MAX_PASSWORD_BYTES} bytes on stdin` }) : '';
  const quiet = logger.levelVal < 40 ? logger.child({}, { level: 'warn' }) : logger;
  const db = await openToolDatabase(config, quiet, `bastion-secret-${sub}`);
  try {
    if (sub === 'put-webdav') {
      const keys = new SecretKeyProvider({ dataDir: config.dataDir, envKey: config.secretKey });
      const created = await putWebdavSecret(db.pool, keys, node, f['name']!, { username: f['username']!, password });
      process.stdout.write(`${created ? 'stored' : 'replaced'} WebDAV secret ${f['name']} of node ${node}${keys.keyFile ? ` (key ${keys.keyFile})` : ' (key BASTION_SECRET_KEY)'}\n`);
    } else if (sub === 'list') {
      const { rows } = await db.pool.query<{ node_id: string; kind: string; name: string; key_id: string; updated_at: Date }>('select node_id, kind, name, key_id, updated_at from bastion.list_secrets()');
      if (rows.length === 0) process.stdout.write('no secrets\n');
      for (const r of rows) process.stdout.write(`${r.node_id}  ${r.kind.padEnd(19)}  ${r.name}  key ${r.key_id}  updated ${r.updated_at.toISOString()}\n`);
    } else {
      await sqlCall(db.pool.query('select bastion.delete_secret($1, $2::bastion.secret_kind, $3)', [node, f['kind'], f['name']]).catch((e: { code?: string }) => {
        // An unknown kind is an enum input error, not a domain error.
        if (e.code === '22P02') throw new UsageError(`secret delete: --kind must be webdav or backup_age_identity`);
        throw e;
      }));
      process.stdout.write(`deleted ${f['kind']} secret ${f['name']} of node ${node}\n`);
    }
    return 0;
  } finally {
    await db.close();
  }
}
