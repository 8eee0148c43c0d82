/**
 * The hub's secret key: 32 random bytes that encrypt every stored secret
 * (engine/secrets/secret-box.ts). It comes from `BASTION_SECRET_KEY`
 * (base64) when set, otherwise from `<data_dir>/secret.key` (base64 text,
 * mode 0600), which the first process that needs to encrypt creates.
 *
 * Every process that reads secrets (hub, extra workers) needs the same key:
 * processes on one machine share the data directory; a worker elsewhere gets
 * BASTION_SECRET_KEY. Losing the key means storing every secret again.
 *
 * Creation is race-free across processes sharing a data directory: the key
 * is written to a private temporary file and hard-linked to its final name,
 * which fails if another process got there first; the loser reads the
 * winner's key.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants as C } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { BastionError } from '../../core/errors.ts';

/** File name of the key inside the data directory. */
export const SECRET_KEY_FILE = 'secret.key';
/** Key length (AES-256). */
export const SECRET_KEY_BYTES = 32;

/**
 * An error about secrets that an operator fixes by configuration (missing or
 * wrong key, missing or damaged secret). `kind` is `config`, the kind the
 * delete and cleanup queues block on (DESIGN §5), like WebdavError's kind.
 */
export class SecretError extends BastionError {
  readonly kind = 'config' as const;
}

/** A loaded key and its fingerprint (stored with each secret as key_id). */
export interface SecretKey {
  readonly bytes: Buffer;
  /** 16 hex digits: first 8 bytes of SHA-256 over a label and the key. Not secret; tells keys apart. */
  readonly id: string;
}

/** The fingerprint of a key. */
export function secretKeyId(bytes: Uint8Array): string {
  return createHash('sha256').update('bastion-secret-key-id-v1\0').update(bytes).digest('hex').slice(0, 16);
}

/** Decode a base64 key; throws SecretError naming `source` (never echoing the value). */
export function parseSecretKey(text: string, source: string): SecretKey {
  const trimmed = text.trim();
  const bytes = /^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) ? Buffer.from(trimmed, 'base64') : Buffer.alloc(0);
  if (bytes.length !== SECRET_KEY_BYTES || bytes.toString('base64') !== trimmed) {
    throw new SecretError('secret_key_unavailable', `${source} must hold base64 of exactly ${SECRET_KEY_BYTES} bytes (for example the output of: openssl rand -base64 32)`, {
      details: { field: source, reason: 'format' },
    });
  }
  return { bytes, id: secretKeyId(bytes) };
}

/** Where a process gets its key. */
export interface SecretKeyOptions {
  /** Data directory holding `secret.key`. */
  dataDir: string;
  /** `BASTION_SECRET_KEY` (base64), when set; wins over the file. */
  envKey?: string | undefined;
}

async function readKeyFile(file: string): Promise<SecretKey | null> {
  let st;
  try {
    st = await fs.stat(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new SecretError('secret_key_unavailable', `${file} cannot be read: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, { details: { field: file, reason: 'unreadable' }, cause: e });
  }
  if (!st.isFile()) throw new SecretError('secret_key_unavailable', `${file} is not a regular file`, { details: { field: file, reason: 'not_a_file' } });
  if ((st.mode & 0o077) !== 0) {
    throw new SecretError('secret_key_unavailable', `${file} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${file}`, {
      details: { field: file, reason: 'permissions' },
    });
  }
  return parseSecretKey(await fs.readFile(file, 'utf8'), file);
}

async function createKeyFile(dir: string, file: string): Promise<SecretKey> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const bytes = randomBytes(SECRET_KEY_BYTES);
  const tmp = path.join(dir, `.${SECRET_KEY_FILE}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fs.open(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
  try {
    await fh.writeFile(bytes.toString('base64') + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fs.link(tmp, file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // Another process created it first: use theirs.
  } finally {
    await fs.unlink(tmp).catch(() => {});
  }
  const key = await readKeyFile(file);
  if (!key) throw new SecretError('secret_key_unavailable', `${file} vanished right after it was created`, { details: { field: file, reason: 'vanished' } });
  return key;
}

/**
 * Hands out the process's key, loading it once. Encrypting may create the
 * key file (`create: true`); decrypting never does — a new key could not
 * open secrets written under the old one, so a missing key is reported.
 */
export class SecretKeyProvider {
  readonly #options: SecretKeyOptions | null;
  #key: Promise<SecretKey> | null = null;

  constructor(options: SecretKeyOptions) {
    this.#options = options;
  }

  /** A provider for a key already in hand (tests, tools). */
  static fromKey(key: SecretKey): SecretKeyProvider {
    const p = new SecretKeyProvider({ dataDir: '/nonexistent' });
    p.#key = Promise.resolve(key);
    return p;
  }

  /** Path of the key file this provider uses (when not from the environment). */
  get keyFile(): string | null {
    return this.#options && !this.#options.envKey ? path.join(this.#options.dataDir, SECRET_KEY_FILE) : null;
  }

  /** The key; with `create`, a missing key file is created. Throws SecretError. */
  async get(opts: { create: boolean }): Promise<SecretKey> {
    if (this.#key) return this.#key;
    const options = this.#options!;
    if (options.envKey) {
      this.#key = Promise.resolve(parseSecretKey(options.envKey, 'BASTION_SECRET_KEY'));
      return this.#key;
    }
    const file = path.join(options.dataDir, SECRET_KEY_FILE);
    const existing = await readKeyFile(file);
    if (existing) {
      this.#key = Promise.resolve(existing);
      return existing;
    }
    if (!opts.create) {
      throw new SecretError('secret_key_unavailable', `no secret key: BASTION_SECRET_KEY is not set and ${file} does not exist (secrets stored with another key cannot be read)`, {
        details: { field: 'BASTION_SECRET_KEY', reason: 'missing' },
      });
    }
    const created = createKeyFile(options.dataDir, file);
    this.#key = created;
    created.catch(() => {
      if (this.#key === created) this.#key = null;
    });
    return created;
  }
}
