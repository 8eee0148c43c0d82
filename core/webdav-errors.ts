/**
 * How WebDAV failures are classified, retried and described. Pure: the client
 * (engine/targets/webdav-client.ts) feeds it statuses, headers and clocks; the
 * delete and cleanup queues read the resulting {@link WebdavError.kind} to pick
 * their backoff row (DESIGN §5) and whether a task goes `blocked` or `retrying`.
 *
 * Kind rule (DESIGN §6, the same for every method):
 *   401, 403            → auth     (operator must fix credentials or rights)
 *   408, 429, 5xx       → network  (transient; the queue retries with backoff)
 *   other 4xx, 3xx, odd → http
 *   bad URL / no creds  → config
 *   refused, reset, DNS, timeout → network
 *
 * 507 Insufficient Storage is a 5xx, so it is `network`. The Rust reference
 * classed it `storage_full` (config-like, i.e. blocked for 6 h) for PUT; we keep
 * DESIGN's single rule because a full disk is usually freed by the operator or
 * by retention within the network backoff (1 min doubling to 6 h), and a blocked
 * task would sit for 6 h after space came back. What differs is the in-request
 * retry: 501, 505, 506, 507, 508, 510 and 511 do not heal within seconds, so
 * the client does not spend its 3 quick attempts on them
 * ({@link isRetriableStatus}); the queue's backoff handles them.
 */
import { BastionError } from './errors.ts';
import { MAX_ERROR_BYTES, sanitizeErrorText } from './redact.ts';

/** What kind of failure a WebDAV request had; the queues' backoff rows are keyed by it. */
export type WebdavErrorKind = 'auth' | 'network' | 'http' | 'config';

/**
 * A finer, stable reason for tests and diagnostics:
 * - `status`: the server answered with a failing HTTP status (see `status`);
 * - `timeout`: no progress for the request timeout;
 * - `connection`: refused, reset, DNS failure, socket closed mid-exchange;
 * - `invalid_config`: base URL, credentials or client options are invalid;
 * - `invalid_path`: a relative name is not acceptable (`..`, empty segment, NUL, …);
 * - `bad_response`: a success status with a body or headers we cannot use;
 * - `not_a_collection`: PROPFIND on a name that is a file;
 * - `too_many_entries`: a tree walk reached its entry limit;
 * - `too_deep`: collection creation needed more parent levels than allowed.
 */
export type WebdavErrorReason =
  | 'status'
  | 'timeout'
  | 'connection'
  | 'invalid_config'
  | 'invalid_path'
  | 'bad_response'
  | 'not_a_collection'
  | 'too_many_entries'
  | 'too_deep';

/** Kind of a failing HTTP status. Success and informational codes never reach this; if they do they are `http`. */
export function classifyWebdavStatus(status: number): WebdavErrorKind {
  if (status === 401 || status === 403) return 'auth';
  if (status === 408 || status === 429) return 'network';
  if (status >= 500 && status <= 599) return 'network';
  return 'http';
}

/** 5xx codes that mean "this will not work in a few seconds either": not retried inside one request. */
const NOT_TRANSIENT_5XX: ReadonlySet<number> = new Set([501, 505, 506, 507, 508, 510, 511]);

/** True when a status is worth an immediate in-request retry (after backoff / Retry-After). */
export function isRetriableStatus(status: number): boolean {
  if (status === 408 || status === 429) return true;
  return status >= 500 && status <= 599 && !NOT_TRANSIENT_5XX.has(status);
}

/** Largest Retry-After we parse (about 31 years); anything bigger is treated as not given. */
const MAX_RETRY_AFTER_SECONDS = 1_000_000_000;

const HTTP_DATE_RE =
  /^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT|(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), \d{2}-(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{2} \d{2}:\d{2}:\d{2} GMT|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}:\d{2} \d{4})$/;

/**
 * Parse a Retry-After header (RFC 9110 §10.2.3): delta-seconds or an HTTP date
 * (IMF-fixdate, RFC 850 or asctime, all UTC). Returns whole seconds from
 * `nowMs` (a date in the past gives 0), or null when absent or malformed.
 * Date.parse alone is far too lenient (it accepts "1.5" and "-1"), so the
 * three date grammars are matched first.
 */
export function parseRetryAfter(value: string | readonly string[] | null | undefined, nowMs: number): number | null {
  if (value === null || value === undefined) return null;
  const text = (typeof value === 'string' ? value : value[0] ?? '').trim();
  if (/^\d{1,10}$/.test(text)) {
    const n = Number(text);
    return n <= MAX_RETRY_AFTER_SECONDS ? n : null;
  }
  if (!HTTP_DATE_RE.test(text)) return null;
  // asctime has no zone but is defined as UTC; RFC 850 has two-digit years, which Date.parse maps to 19xx/20xx.
  const ms = Date.parse(/GMT$/.test(text) ? text : `${text} GMT`);
  if (Number.isNaN(ms)) return null;
  return Math.max(0, Math.ceil((ms - nowMs) / 1000));
}

/** In-request retry policy (not the queue's backoff: that is DESIGN §5). */
export interface RetryPolicy {
  /** Total attempts including the first (≥ 1). */
  attempts: number;
  /** First backoff delay; doubles per attempt. */
  baseDelayMs: number;
  /** Largest backoff delay. */
  maxDelayMs: number;
  /** Largest Retry-After we wait for inside a request; a longer one ends the request and is left to the queue. */
  maxRetryAfterMs: number;
}

/** Defaults from the reference implementation: 3 attempts, 1 s doubling to 30 s, Retry-After honoured up to 60 s. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  attempts: 3,
  baseDelayMs: 1000,
  maxDelayMs: 30_000,
  maxRetryAfterMs: 60_000,
});

/**
 * How long to wait before attempt `failedAttempt + 1`, or null when no further
 * attempt should be made: attempts exhausted, or the server's Retry-After is
 * longer than we are willing to hold a request open (waiting an hour inside
 * one request would pin a worker slot; the queue's durable retry, which keeps
 * `retryAfterSeconds`, is the right place for that).
 */
export function retryDelayMs(failedAttempt: number, retryAfterSeconds: number | null, policy: RetryPolicy): number | null {
  if (failedAttempt >= policy.attempts) return null;
  if (retryAfterSeconds !== null) {
    const ms = retryAfterSeconds * 1000;
    return ms > policy.maxRetryAfterMs ? null : ms;
  }
  const exp = Math.min(Math.max(failedAttempt - 1, 0), 30);
  return Math.min(policy.baseDelayMs * 2 ** exp, policy.maxDelayMs);
}

/** Largest error message, in UTF-8 bytes, ellipsis included (DESIGN §6: ≤ 500 bytes). */
export const WEBDAV_ERROR_MAX_BYTES = MAX_ERROR_BYTES;

/**
 * Remove every occurrence of each secret (password, Basic token, …) from text,
 * including percent-encoded forms. Applied to response bodies before they go
 * into a message, because some servers echo request headers or URLs in error
 * pages.
 */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) {
    if (s.length === 0) continue;
    for (const form of new Set([s, encodeURIComponent(s)])) out = out.split(form).join('[redacted]');
  }
  return out;
}

/**
 * The stored form of a WebDAV error message: secrets scrubbed, URLs redacted,
 * one line, at most {@link WEBDAV_ERROR_MAX_BYTES} UTF-8 bytes including the
 * ellipsis, cut on a character boundary.
 */
export function cleanWebdavMessage(text: string, secrets: readonly string[] = []): string {
  // sanitizeErrorText appends a 3-byte `…` after its limit; reserve room for it.
  return sanitizeErrorText(scrubSecrets(text, secrets), WEBDAV_ERROR_MAX_BYTES - 3);
}

/** Catalogue codes of WebDAV errors (core/errors.ts, WebDAV section). */
export type WebdavErrorCode = `webdav_${WebdavErrorKind}`;

/** Facts a WebDAV error carries besides its message. */
export interface WebdavErrorInit {
  kind: WebdavErrorKind;
  reason: WebdavErrorReason;
  /** HTTP status of the failing request, when the server answered. */
  status?: number;
  /** Seconds the server asked us to wait (Retry-After), when it said. */
  retryAfterSeconds?: number;
  /** HTTP method of the failing request. */
  method?: string;
  /** Redacted URL of the failing request (no userinfo, query or fragment). */
  url?: string;
  cause?: unknown;
}

/**
 * The one error type of the WebDAV client and target. Its message is already
 * clean (see {@link cleanWebdavMessage}); its `code` is `webdav_<kind>` from the
 * error catalogue. Never carries credentials or an Authorization header.
 *
 * It is not a BastionError because `status` here is the WebDAV server's HTTP
 * status (what the queues record as `http_status`), not the status Bastion's
 * own API answers with; {@link WebdavError.toBastionError} converts when an
 * API response needs one.
 */
export class WebdavError extends Error {
  readonly code: WebdavErrorCode;
  readonly kind: WebdavErrorKind;
  readonly reason: WebdavErrorReason;
  /** HTTP status of the failing request, when the server answered. */
  readonly status: number | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly method: string | undefined;
  readonly url: string | undefined;
  /** Wall time of the whole operation, set by the maintenance primitives (deleteRunDir, cleanupIncompleteRunDir) for their events. */
  durationMs: number | undefined;

  constructor(message: string, init: WebdavErrorInit, secrets: readonly string[] = []) {
    super(cleanWebdavMessage(message, secrets), init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'WebdavError';
    this.code = `webdav_${init.kind}`;
    this.kind = init.kind;
    this.reason = init.reason;
    this.status = init.status;
    this.retryAfterSeconds = init.retryAfterSeconds;
    this.method = init.method;
    this.url = init.url;
    this.durationMs = undefined;
  }

  /** The same failure as a client-safe BastionError (catalogue code, clean message, structured details). */
  toBastionError(): BastionError {
    return new BastionError(this.code, this.message, {
      details: { reason: this.reason, kind: this.kind, http_status: this.status, retry_after_seconds: this.retryAfterSeconds },
      cause: this,
    });
  }
}

/** True for a {@link WebdavError}. */
export function isWebdavError(err: unknown): err is WebdavError {
  return err instanceof WebdavError;
}
