/**
 * Password hashing with scrypt from node:crypto, stored as a PHC-style string
 * `$scrypt$ln=15,r=8,p=1$<salt>$<hash>` (standard base64 without padding), so
 * the cost can be raised later and old hashes still verify with their own
 * parameters.
 *
 * Cost: N = 2^15, r = 8, p = 1 takes ≈ 56 ms and 32 MiB per hash on these
 * 2 cores (2^14 ≈ 24 ms, 2^16 ≈ 107 ms; measured with scryptSync), inside the
 * 50–100 ms a login may cost. The async form runs on libuv's thread pool, so
 * a burst of logins does not stall the event loop; the login throttle bounds
 * how many an address may attempt.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { BastionError } from '../../core/errors.ts';

/** Shortest accepted password, in characters. */
export const MIN_PASSWORD_LENGTH = 12;
/** Longest accepted password, in characters (bounds the work an attacker can ask for). */
export const MAX_PASSWORD_LENGTH = 1024;

/** Parameters of new hashes. */
export const SCRYPT_PARAMS = { ln: 15, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

/** Largest parameters accepted when verifying a stored hash (a forged row must not exhaust memory). */
const MAX_LN = 20;

function scryptAsync(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key))));
}

function options(ln: number, r: number, p: number): ScryptOptions {
  const N = 2 ** ln;
  // scrypt needs 128·N·r bytes; Node refuses above maxmem (32 MiB by default, exactly our cost).
  return { N, r, p, maxmem: 256 * N * r };
}

/** Refuse passwords outside the accepted length (`invalid_password`, with the reason). */
export function checkPassword(password: unknown, field = 'password'): string {
  if (typeof password !== 'string') throw new BastionError('invalid_password', `${field} must be a string`, { details: { field, reason: 'required' } });
  const length = [...password].length;
  if (length < MIN_PASSWORD_LENGTH) throw new BastionError('invalid_password', `${field} must be at least ${MIN_PASSWORD_LENGTH} characters`, { details: { field, reason: 'min_length', min: MIN_PASSWORD_LENGTH } });
  if (length > MAX_PASSWORD_LENGTH) throw new BastionError('invalid_password', `${field} must be at most ${MAX_PASSWORD_LENGTH} characters`, { details: { field, reason: 'max_length', max: MAX_PASSWORD_LENGTH } });
  return password;
}

/** Hash a password (after {@link checkPassword}) into a PHC string. */
export async function hashPassword(password: string): Promise<string> {
  const { ln, r, p } = SCRYPT_PARAMS;
  const salt = randomBytes(SALT_BYTES);
  const key = await scryptAsync(password.normalize('NFC'), salt, KEY_BYTES, options(ln, r, p));
  return `$scrypt$ln=${ln},r=${r},p=${p}$${salt.toString('base64').replace(/=+$/, '')}$${key.toString('base64').replace(/=+$/, '')}`;
}

const PHC_RE = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

/**
 * True when `password` matches `stored`. Constant-time comparison of the
 * derived keys; a malformed or absurd stored hash verifies as false (and is
 * not an error the caller could leak).
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const m = PHC_RE.exec(stored);
  if (!m) return false;
  const [ln, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (ln < 10 || ln > MAX_LN || r < 1 || r > 32 || p < 1 || p > 16) return false;
  const salt = Buffer.from(m[4] as string, 'base64');
  const expected = Buffer.from(m[5] as string, 'base64');
  if (expected.length < 16) return false;
  const actual = await scryptAsync(password.normalize('NFC'), salt, expected.length, options(ln, r, p));
  return timingSafeEqual(actual, expected);
}

let decoy: Promise<string> | undefined;

/**
 * A hash of a random password, verified against when a login names an
 * unknown user, so unknown and known users take the same time to refuse.
 */
export function decoyHash(): Promise<string> {
  decoy ??= hashPassword(randomBytes(24).toString('base64'));
  return decoy;
}
