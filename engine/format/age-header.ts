/**
 * The age v1 header for one X25519 recipient, and the per-file session it
 * carries (file key, header bytes, payload nonce).
 *
 *     age-encryption.org/v1
 *     -> X25519 <base64 ephemeral share>
 *     <base64 wrapped file key>
 *     --- <base64 HMAC-SHA-256 of everything up to "---">
 *     <16-byte payload nonce><STREAM ciphertext…>
 *
 * Resume: a session can be serialised (file key included) so a re-run of the
 * same run produces the very same bytes; the serialised form is as secret as
 * the data and lives only in the local staging directory (see resume-journal.ts).
 */
import crypto from 'node:crypto';
import { BastionError } from '../../core/errors.ts';
import type { ByteQueue } from './byte-queue.ts';
import { hkdf32, rawPublic, x25519, type AgeIdentity } from './age-keys.ts';

const VERSION_LINE = 'age-encryption.org/v1';
const X25519_LABEL = 'age-encryption.org/v1/X25519';
const MAX_HEADER_BYTES = 64 * 1024;
const ZERO_NONCE = Buffer.alloc(12);

/** Everything needed to (re)produce one encrypted payload. */
export interface AgeSession {
  /** 16 random bytes; whoever has it can decrypt the payload. */
  fileKey: Buffer;
  /** The header bytes (version line to MAC line, newline included). */
  header: Buffer;
  /** 16 random bytes following the header. */
  nonce: Buffer;
}

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64').replace(/=+$/, '');

function chachaSeal(key: Buffer, nonce: Buffer, plain: Buffer): Buffer {
  const c = crypto.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

function chachaOpen(key: Buffer, nonce: Buffer, sealed: Buffer): Buffer | null {
  if (sealed.length < 16) return null;
  const d = crypto.createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  try {
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - 16)), d.final()]);
  } catch {
    return null;
  }
}

function headerMac(fileKey: Buffer, headerNoMac: Buffer): Buffer {
  const key = hkdf32(fileKey, Buffer.alloc(0), 'header');
  return crypto.createHmac('sha256', key).update(headerNoMac).digest();
}

/** A new session for one recipient (raw 32-byte X25519 public key). */
export function createAgeSession(recipient: Buffer): AgeSession {
  const fileKey = crypto.randomBytes(16);
  const eph = crypto.generateKeyPairSync('x25519');
  const share = rawPublic(eph.publicKey);
  const secret = x25519(eph.privateKey, recipient);
  const wrapKey = hkdf32(secret, Buffer.concat([share, recipient]), X25519_LABEL);
  const body = chachaSeal(wrapKey, ZERO_NONCE, fileKey);
  // Bodies are wrapped at 64 base64 columns (48 bytes); a 32-byte body is one short line.
  const noMac = Buffer.from(`${VERSION_LINE}\n-> X25519 ${b64(share)}\n${b64(body)}\n---`, 'latin1');
  const header = Buffer.concat([noMac, Buffer.from(` ${b64(headerMac(fileKey, noMac))}\n`, 'latin1')]);
  return { fileKey, header, nonce: crypto.randomBytes(16) };
}

/** The STREAM key of a session's payload. */
export function payloadKey(fileKey: Buffer, nonce: Buffer): Buffer {
  return hkdf32(fileKey, nonce, 'payload');
}

/** JSON-safe form of a session (secret: keep it local, mode 0600). */
export function serializeAgeSession(s: AgeSession): { file_key: string; header: string; nonce: string } {
  return { file_key: s.fileKey.toString('base64'), header: s.header.toString('base64'), nonce: s.nonce.toString('base64') };
}

/** Inverse of {@link serializeAgeSession}; null when malformed. */
export function deserializeAgeSession(o: unknown): AgeSession | null {
  if (typeof o !== 'object' || o === null) return null;
  const r = o as Record<string, unknown>;
  if (typeof r.file_key !== 'string' || typeof r.header !== 'string' || typeof r.nonce !== 'string') return null;
  const s = { fileKey: Buffer.from(r.file_key, 'base64'), header: Buffer.from(r.header, 'base64'), nonce: Buffer.from(r.nonce, 'base64') };
  return s.fileKey.length === 16 && s.nonce.length === 16 && s.header.length > 0 ? s : null;
}

function corrupt(msg: string): BastionError {
  return new BastionError('artifact_corrupt', `age: ${msg}`, { details: { reason: 'age_header' } });
}

function strictB64(s: string, what: string): Buffer {
  if (!/^[A-Za-z0-9+/]*$/.test(s) || s.length % 4 === 1) throw corrupt(`${what} is not unpadded base64`);
  const b = Buffer.from(s, 'base64');
  if (b64(b) !== s) throw corrupt(`${what} is not canonical base64`);
  return b;
}

/**
 * Read an age header and the payload nonce from `q`, unwrap the file key with
 * `identity` and check the header MAC. `decryption_failed` when no stanza is
 * for this identity; `artifact_corrupt` for a malformed or tampered header.
 */
export async function readAgeHeader(q: ByteQueue, identity: AgeIdentity): Promise<{ fileKey: Buffer; nonce: Buffer }> {
  const lines: string[] = [];
  let consumed = 0;
  const readLine = async (): Promise<string> => {
    const bytes: number[] = [];
    for (;;) {
      const b = await q.readExact(1, 'age header');
      if (++consumed > MAX_HEADER_BYTES) throw corrupt('header too large');
      if (b[0] === 0x0a) break;
      bytes.push(b[0]!);
    }
    const line = Buffer.from(bytes).toString('latin1');
    lines.push(line);
    return line;
  };
  if ((await readLine()) !== VERSION_LINE) throw corrupt('not an age v1 file');
  const stanzas: Array<{ args: string[]; body: Buffer }> = [];
  let line = await readLine();
  while (line.startsWith('-> ')) {
    const args = line.slice(3).split(' ');
    if (args.some((a) => a === '')) throw corrupt('bad stanza');
    const parts: Buffer[] = [];
    for (;;) {
      const bodyLine = await readLine();
      if (bodyLine.length > 64) throw corrupt('stanza line too long');
      parts.push(strictB64(bodyLine, 'stanza body'));
      if (bodyLine.length < 64) break;
    }
    stanzas.push({ args, body: Buffer.concat(parts) });
    line = await readLine();
  }
  if (!line.startsWith('--- ')) throw corrupt('header has no MAC line');
  const mac = strictB64(line.slice(4), 'MAC');
  let fileKey: Buffer | null = null;
  for (const s of stanzas) {
    if (s.args[0] !== 'X25519') continue;
    if (s.args.length !== 2 || s.body.length !== 32) throw corrupt('bad X25519 stanza');
    const share = strictB64(s.args[1]!, 'X25519 share');
    if (share.length !== 32) throw corrupt('bad X25519 share');
    const secret = x25519(identity.privateKey, share);
    const wrapKey = hkdf32(secret, Buffer.concat([share, identity.publicKey]), X25519_LABEL);
    fileKey = chachaOpen(wrapKey, ZERO_NONCE, s.body);
    if (fileKey) break;
  }
  if (!fileKey) throw new BastionError('decryption_failed', 'age: the identity does not match any recipient of this payload', { details: { reason: 'no_matching_identity' } });
  const noMac = Buffer.from(lines.join('\n').slice(0, -(line.length - 3)), 'latin1');
  if (mac.length !== 32 || !crypto.timingSafeEqual(headerMac(fileKey, noMac), mac)) throw corrupt('header MAC mismatch');
  const nonce = await q.readExact(16, 'age payload nonce');
  return { fileKey, nonce };
}
