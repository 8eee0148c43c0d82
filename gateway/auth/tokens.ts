/**
 * Session tokens, their CSRF tokens, API token hashing and the session cookie.
 *
 * - A session token is 32 random bytes (base64url) in the `bastion_session`
 *   cookie; the database keeps only its SHA-256.
 * - The CSRF token is HMAC-SHA256 keyed by the session token: nothing to
 *   store, every gateway sharing the database agrees on it, and a page on
 *   another site cannot compute it (the cookie is HttpOnly). It changes with
 *   each login.
 * - API tokens (`bst_` + 43 base64url characters) are minted by
 *   `bastion.create_api_token` in SQL; the gateway hashes what a client sends
 *   the same way to look it up.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Name of the session cookie. */
export const SESSION_COOKIE = 'bastion_session';
/** Fixed session lifetime (not extended by use). */
export const SESSION_TTL_SECONDS = 7 * 24 * 3600;
/** Header carrying the CSRF token on mutations. */
export const CSRF_HEADER = 'x-csrf-token';

const SESSION_TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;
const API_TOKEN_RE = /^bst_[A-Za-z0-9_-]{43}$/;

/** A new random session token. */
export function newSessionToken(): string {
  return randomBytes(32).toString('base64url');
}

/** True when `value` has the shape of a session token (checked before any database lookup). */
export function isSessionToken(value: string): boolean {
  return SESSION_TOKEN_RE.test(value);
}

/** True when `value` has the shape of an API token. */
export function isApiToken(value: string): boolean {
  return API_TOKEN_RE.test(value);
}

/** SHA-256 of a token's text, as stored in the database. */
export function tokenHash(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** The CSRF token of a session. */
export function csrfTokenFor(sessionToken: string): string {
  return createHmac('sha256', sessionToken).update('bastion-csrf-v1').digest('base64url');
}

/** Constant-time check of a CSRF header value against the session's token. */
export function csrfMatches(sessionToken: string, header: string | undefined): boolean {
  if (header === undefined) return false;
  const expected = Buffer.from(csrfTokenFor(sessionToken));
  const actual = Buffer.from(header.trim());
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** The value of cookie `name` in a Cookie header (first occurrence), or undefined. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(/;\s*/)) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    if (part.slice(0, eq).trim() !== name) continue;
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    return value;
  }
  return undefined;
}

/** Set-Cookie value that stores a session (HttpOnly, SameSite=Lax, Path=/, fixed expiry; Secure behind HTTPS). */
export function sessionCookie(token: string, secure: boolean, maxAgeSeconds: number = SESSION_TTL_SECONDS): string {
  return `${SESSION_COOKIE}=${token}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${maxAgeSeconds}${secure ? '; Secure' : ''}`;
}

/** Set-Cookie value that removes the session cookie. */
export function clearSessionCookie(secure: boolean): string {
  return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0${secure ? '; Secure' : ''}`;
}
