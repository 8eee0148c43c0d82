/**
 * Node-scoped secrets in the database: seal in this process, store through
 * bastion.put_secret (which never sees plaintext), read back and open.
 *
 * {@link resolveWebdavCredentials} is what every WebDAV user calls — the
 * backup task, the snapshot delete queue and the incomplete cleanup queue —
 * with the node scope of the data (a snapshot's `target_snapshot.node_id`).
 * Its failures are SecretErrors of kind `config` with a message that says
 * what to do; none of them carries plaintext.
 */
import type pg from 'pg';
import { z } from 'zod';
import { sqlCall } from '../../core/database-error.ts';
import type { WebdavCredentials } from '../../core/webdav-path.ts';
import { openSecret, sealSecret, type SecretRef } from './secret-box.ts';
import { SecretError, type SecretKeyProvider } from './secret-key.ts';

/** Anything that runs a query: a pool, a checked-out client, a transaction's client. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/** Secret kinds (the SQL enum bastion.secret_kind). */
export type SecretKind = 'webdav' | 'backup_age_identity';

/** The plaintext of a `webdav` secret. */
export const webdavSecretSchema = z.strictObject({
  username: z
    .string()
    .min(1, 'must not be empty')
    .max(256, 'must be at most 256 characters')
    .refine((u) => !/[\u0000-\u001f\u007f:]/.test(u), 'must not contain control characters or ":" (HTTP Basic)'),
  password: z
    .string()
    .max(1024, 'must be at most 1024 characters')
    .refine((p) => !/[\u0000-\u001f\u007f]/.test(p), 'must not contain control characters'),
});

/** Seal and store (insert or replace) a secret. Returns true when it is new. */
export async function putSecret(db: Queryable, keys: SecretKeyProvider, ref: SecretRef & { kind: SecretKind }, plaintext: Uint8Array): Promise<boolean> {
  const key = await keys.get({ create: true });
  const sealed = sealSecret(key, ref, plaintext);
  const { rows } = await sqlCall(
    db.query<{ created: boolean }>('select bastion.put_secret($1, $2, $3, $4, $5, $6) as created', [ref.nodeId, ref.kind, ref.name, sealed.keyId, sealed.nonce, sealed.ciphertext]),
  );
  return rows[0]?.created === true;
}

/** Validate and store WebDAV credentials under `name` for `nodeId`. */
export async function putWebdavSecret(db: Queryable, keys: SecretKeyProvider, nodeId: string, name: string, credentials: WebdavCredentials): Promise<boolean> {
  const parsed = webdavSecretSchema.safeParse(credentials);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = String(issue?.path[0] ?? 'value');
    // Never echo the value: only which field and why.
    throw new SecretError('invalid_secret', `webdav secret ${field}: ${issue?.message ?? 'invalid'}`, { details: { field, reason: issue?.message ?? 'invalid' } });
  }
  return putSecret(db, keys, { nodeId, kind: 'webdav', name }, Buffer.from(JSON.stringify(parsed.data), 'utf8'));
}

/** Read and open a secret; null when there is no such secret. */
export async function readSecret(db: Queryable, keys: SecretKeyProvider, ref: SecretRef & { kind: SecretKind }): Promise<Buffer | null> {
  const { rows } = await db.query<{ key_id: string; nonce: Buffer; ciphertext: Buffer }>(
    'select key_id, nonce, ciphertext from bastion_private.secrets where node_id = $1 and kind = $2 and name = $3',
    [ref.nodeId, ref.kind, ref.name],
  );
  const row = rows[0];
  if (!row) return null;
  const key = await keys.get({ create: false });
  return openSecret(key, ref, { keyId: row.key_id, nonce: row.nonce, ciphertext: row.ciphertext });
}

/**
 * The WebDAV login stored as secret `secretName` of node `nodeId`. Throws
 * SecretError (kind `config`): `secret_not_found` when missing,
 * `secret_key_unavailable` / `secret_key_mismatch` / `secret_corrupt` when it
 * cannot be opened, `invalid_secret` when its content is not a login.
 */
export async function resolveWebdavCredentials(db: Queryable, keys: SecretKeyProvider, nodeId: string, secretName: string): Promise<WebdavCredentials> {
  const plain = await readSecret(db, keys, { nodeId, kind: 'webdav', name: secretName });
  if (plain === null) {
    throw new SecretError('secret_not_found', `WebDAV secret ${JSON.stringify(secretName)} does not exist on node ${nodeId}; store it with: bastion secret put-webdav --name ${secretName} --username …`, {
      details: { field: 'target.secret_name', reason: 'not_found', node_id: nodeId, name: secretName },
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(plain.toString('utf8'));
  } catch {
    value = undefined;
  }
  const parsed = webdavSecretSchema.safeParse(value);
  if (!parsed.success) {
    throw new SecretError('invalid_secret', `WebDAV secret ${JSON.stringify(secretName)} of node ${nodeId} does not hold a username and password; store it again`, {
      details: { field: 'target.secret_name', reason: 'not_a_login', node_id: nodeId, name: secretName },
    });
  }
  return parsed.data;
}
