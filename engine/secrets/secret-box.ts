/**
 * Sealing one secret: AES-256-GCM with a random 12-byte nonce per write and
 * the associated data `node_id:kind:name`, so a ciphertext only opens where
 * it was stored — copying a row to another node, kind or name (or editing a
 * byte) makes decryption fail instead of handing out the wrong credentials.
 *
 * A nonce collision under one key would break GCM; 96 random bits give a
 * collision probability of about n²/2⁹⁷, negligible for the handful of writes
 * a secret store sees.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { SecretKey } from './secret-key.ts';
import { SecretError } from './secret-key.ts';

/** GCM tag length appended to the ciphertext. */
export const TAG_BYTES = 16;
/** Nonce length. */
export const NONCE_BYTES = 12;
/** Largest plaintext (the table allows 64 KiB of ciphertext + tag). */
export const MAX_SECRET_BYTES = 65536;

/** Where a secret is stored: the three columns its associated data binds. */
export interface SecretRef {
  nodeId: string;
  kind: string;
  name: string;
}

/** What the secrets table stores. */
export interface SealedSecret {
  keyId: string;
  nonce: Buffer;
  /** Ciphertext followed by the 16-byte tag. */
  ciphertext: Buffer;
}

/** The associated data of a secret. */
export function secretAad(ref: SecretRef): Buffer {
  return Buffer.from(`${ref.nodeId}:${ref.kind}:${ref.name}`, 'utf8');
}

function describe(ref: SecretRef): string {
  return `${ref.kind} secret ${JSON.stringify(ref.name)} of node ${ref.nodeId}`;
}

/** Encrypt `plaintext` for `ref` under `key`. */
export function sealSecret(key: SecretKey, ref: SecretRef, plaintext: Uint8Array): SealedSecret {
  if (plaintext.length === 0 || plaintext.length > MAX_SECRET_BYTES) {
    throw new SecretError('invalid_secret', `${describe(ref)} must be 1 to ${MAX_SECRET_BYTES} bytes`, { details: { field: 'value', reason: 'length' } });
  }
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key.bytes, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(secretAad(ref));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return { keyId: key.id, nonce, ciphertext };
}

/**
 * Decrypt a stored secret. Throws SecretError `secret_key_mismatch` when it
 * was sealed under another key, `secret_corrupt` when authentication fails
 * (altered bytes, or a row moved to another node, kind or name).
 */
export function openSecret(key: SecretKey, ref: SecretRef, sealed: SealedSecret): Buffer {
  if (sealed.keyId !== key.id) {
    throw new SecretError('secret_key_mismatch', `${describe(ref)} was stored under secret key ${sealed.keyId}, but this process has key ${key.id}; use the same BASTION_SECRET_KEY or secret.key everywhere`, {
      details: { reason: 'key_mismatch', stored_key_id: sealed.keyId, key_id: key.id },
    });
  }
  if (sealed.nonce.length !== NONCE_BYTES || sealed.ciphertext.length <= TAG_BYTES) {
    throw new SecretError('secret_corrupt', `${describe(ref)} is malformed`, { details: { reason: 'malformed' } });
  }
  const body = sealed.ciphertext.subarray(0, sealed.ciphertext.length - TAG_BYTES);
  const tag = sealed.ciphertext.subarray(sealed.ciphertext.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key.bytes, sealed.nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(secretAad(ref));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch (cause) {
    throw new SecretError('secret_corrupt', `${describe(ref)} fails authentication: it was altered or does not belong to this node, kind and name; store it again`, {
      details: { reason: 'authentication_failed' },
      cause,
    });
  }
}
