/**
 * A small WebDAV client on node:http / node:https: exactly the methods Bastion
 * needs (MKCOL, PUT, HEAD, GET, DELETE, PROPFIND Depth 1 and a tree delete),
 * written to work against the servers real users run (NOTES.md: webdav-server
 * and rclone disagree on MKCOL 201/405, PUT into a missing collection 409/404,
 * href forms, recursive DELETE).
 *
 * Why node:http and not fetch: we need an exact Content-Length on streamed
 * PUTs (servers and proxies refuse or buffer chunked uploads), byte-accurate
 * control over request bodies read from disk, and a per-connection limit
 * (the agent's maxSockets, default 4, the reference's limiter default).
 *
 * Invariants:
 * - Credentials live in a private field and go only into the Authorization
 *   header. Every error message is built from redacted URLs and scrubbed of the
 *   password and the Basic token (some servers echo them in error pages), then
 *   cut to ≤ 500 bytes on one line (core/webdav-errors.ts).
 * - Timeouts are inactivity timeouts: a request fails when nothing moved (no
 *   connection, no body byte written, no response byte read) for `timeoutMs`
 *   (default 60 s). A total deadline would fail a healthy 256 MiB part upload on
 *   a slow link; an idle one only fails stalled exchanges. Time spent queued for
 *   a connection slot does not count, and neither does time a GET body spends
 *   paused by a slow consumer.
 * - Retries (default 3 attempts, 1 s doubling to 30 s, Retry-After honoured up
 *   to 60 s) apply to every method for network failures and transient statuses
 *   (408, 429, 5xx except 501/505/506/507/508/510/511). A PUT body is re-read
 *   from the file on each attempt, so retries are exact.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import https from 'node:https';
import { PassThrough, Readable, Transform, pipeline } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { redactUrl } from '../../core/redact.ts';
import {
  classifyWebdavStatus,
  DEFAULT_RETRY_POLICY,
  isRetriableStatus,
  parseRetryAfter,
  retryDelayMs,
  WebdavError,
} from '../../core/webdav-errors.ts';
import type { RetryPolicy, WebdavErrorInit } from '../../core/webdav-errors.ts';
import { parseContentLength, parsePropfindChildren } from '../../core/webdav-multistatus.ts';
import type { PropfindChild } from '../../core/webdav-multistatus.ts';
import { normalizeWebdavBaseUrl, parseRelativePath } from '../../core/webdav-path.ts';
import type { WebdavCredentials } from '../../core/webdav-path.ts';

export type { WebdavCredentials } from '../../core/webdav-path.ts';
export type { PropfindChild } from '../../core/webdav-multistatus.ts';

/** Default inactivity timeout per request (reference §7). */
export const DEFAULT_WEBDAV_TIMEOUT_MS = 60_000;
/** Default number of parallel connections per client (reference limiter default). */
export const DEFAULT_WEBDAV_MAX_CONNECTIONS = 4;
/** Entries a tree walk enumerates before it stops (reference: 10,000). */
export const DEFAULT_WEBDAV_MAX_TREE_ENTRIES = 10_000;
/** Parent levels MKCOL creates at most (reference: 32). */
export const MAX_WEBDAV_PARENT_LEVELS = 32;
/** Largest PROPFIND body read: about 50,000 entries of webdav-server's verbose XML. */
export const MAX_PROPFIND_BYTES = 32 * 1024 * 1024;
/** Bytes of an error response body read for the message excerpt. */
const ERROR_BODY_EXCERPT_BYTES = 2048;

const USER_AGENT = 'bastion-webdav/1';

const PROPFIND_BODY = Buffer.from(
  '<?xml version="1.0" encoding="utf-8"?>\n<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/></D:prop></D:propfind>\n',
  'utf8',
);

/** Called before each in-request retry (for progress events and logs; carries no credentials). */
export interface WebdavRetryInfo {
  method: string;
  /** Redacted URL. */
  url: string;
  /** The attempt that failed (1-based). */
  attempt: number;
  attempts: number;
  delayMs: number;
  status: number | undefined;
  reason: string;
}

/** Construction options; validated with zod (see {@link WebdavClient}). */
export interface WebdavClientOptions {
  /** http(s) base URL; userinfo in it is used as credentials when `credentials` is absent, and never sent in the URL. */
  baseUrl: string;
  credentials?: WebdavCredentials;
  /** Inactivity timeout per request, 1 ms … 1 h. Default 60 s. */
  timeoutMs?: number;
  /** In-request retry policy; defaults: 3 attempts, 1 s doubling to 30 s, Retry-After up to 60 s. */
  retry?: Partial<RetryPolicy>;
  /** Parallel connections, 1 … 128. Default 4. */
  maxConnections?: number;
  /** Entries {@link WebdavClient.deleteTree} enumerates before stopping. Default 10,000. */
  maxTreeEntries?: number;
  onRetry?: (info: WebdavRetryInfo) => void;
}

const credentialsSchema = z.object({
  username: z
    .string()
    .min(1, 'must not be empty')
    .max(1024, 'must be at most 1024 characters')
    .refine((u) => !u.includes(':'), 'must not contain ":" (HTTP Basic cannot carry it)'),
  password: z.string().max(4096, 'must be at most 4096 characters'),
});

const optionsSchema = z.object({
  baseUrl: z.string(),
  credentials: credentialsSchema.optional(),
  timeoutMs: z.number().int().min(1).max(3_600_000).optional(),
  retry: z
    .object({
      attempts: z.number().int().min(1).max(20),
      baseDelayMs: z.number().int().min(0).max(600_000),
      maxDelayMs: z.number().int().min(0).max(3_600_000),
      maxRetryAfterMs: z.number().int().min(0).max(3_600_000),
    })
    .partial()
    .strict()
    .optional(),
  maxConnections: z.number().int().min(1).max(128).optional(),
  maxTreeEntries: z.number().int().min(1).max(10_000_000).optional(),
  onRetry: z.custom<(info: WebdavRetryInfo) => void>((v) => v === undefined || typeof v === 'function', 'must be a function').optional(),
}).strict();

/** Result of {@link WebdavClient.deleteTree}. */
export interface DeleteTreeResult {
  /** False when the first DELETE answered 404: there was nothing to delete. */
  existed: boolean;
  /** `delete`: one recursive DELETE did it; `walk`: the server refused, and we enumerated and deleted entry by entry. */
  strategy: 'delete' | 'walk';
  /** Entries deleted one by one by the walk (0 for `delete`). */
  deletedEntries: number;
  /** Status of the refused recursive DELETE that started the walk. */
  refusedStatus?: number;
}

interface Exchange {
  status: number;
  statusText: string;
  headers: IncomingHttpHeaders;
  res: IncomingMessage;
}

type Body = { kind: 'none' } | { kind: 'bytes'; data: Uint8Array } | { kind: 'file'; path: string; size: number };

interface SendSpec {
  headers?: Record<string, string>;
  body?: Body;
  signal?: AbortSignal | undefined;
}

/** Raised inside a request when the inactivity timer fires; mapped to a `network`/`timeout` WebdavError. */
class IdleTimeout extends Error {}

/** Raised when the local file of a PUT cannot be read or changed under us: not a WebDAV failure. */
class LocalBodyError extends Error {
  readonly localCause: unknown;
  constructor(message: string, cause?: unknown) {
    super(message);
    this.localCause = cause;
  }
}

/** Build the error thrown for an invalid configuration, without quoting any value (it may hold a secret). */
function configError(problem: string): WebdavError {
  return new WebdavError(`WebDAV client configuration is invalid: ${problem}`, { kind: 'config', reason: 'invalid_config' });
}

/**
 * One WebDAV endpoint with one set of credentials. Cheap to create; call
 * {@link WebdavClient.close} when done to release pooled connections.
 */
export class WebdavClient {
  /** Redacted base URL, ending with `/`. */
  readonly baseUrl: string;
  readonly #base: URL;
  readonly #auth: string;
  readonly #secrets: string[];
  readonly #timeoutMs: number;
  readonly #policy: RetryPolicy;
  readonly #maxTreeEntries: number;
  readonly #agent: http.Agent;
  readonly #onRetry: ((info: WebdavRetryInfo) => void) | undefined;
  readonly #mkcolInFlight = new Map<string, Promise<'created' | 'exists' | 'parent_missing'>>();

  /** Throws a `config` WebdavError for an invalid URL, missing credentials or invalid options. */
  constructor(options: WebdavClientOptions) {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue && issue.path.length > 0 ? issue.path.join('.') : 'options';
      throw configError(`${where} ${issue?.message ?? 'is invalid'}`);
    }
    const o = parsed.data;
    const base = normalizeWebdavBaseUrl(o.baseUrl);
    if (!base.ok) throw configError(base.problem);
    const creds = o.credentials ?? base.userinfo;
    if (creds === null || creds === undefined) throw configError('credentials are missing (give a username and password)');
    const checked = credentialsSchema.safeParse(creds);
    if (!checked.success) throw configError(`credentials.${checked.error.issues[0]?.path.join('.') ?? ''} ${checked.error.issues[0]?.message ?? 'is invalid'}`);
    this.#base = base.url;
    this.baseUrl = base.url.toString();
    const token = Buffer.from(`${creds.username}:${creds.password}`, 'utf8').toString('base64');
    this.#auth = `Basic ${token}`;
    this.#secrets = creds.password === '' ? [token] : [creds.password, token];
    this.#timeoutMs = o.timeoutMs ?? DEFAULT_WEBDAV_TIMEOUT_MS;
    this.#policy = { ...DEFAULT_RETRY_POLICY, ...o.retry };
    this.#maxTreeEntries = o.maxTreeEntries ?? DEFAULT_WEBDAV_MAX_TREE_ENTRIES;
    const agentOptions = { keepAlive: true, maxSockets: o.maxConnections ?? DEFAULT_WEBDAV_MAX_CONNECTIONS };
    this.#agent = base.url.protocol === 'https:' ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.#onRetry = o.onRetry;
  }

  /** Release pooled connections. Requests in flight are aborted. */
  close(): void {
    this.#agent.destroy();
  }

  /** Redacted absolute URL of a relative name (for locations in logs and events). */
  urlOf(name: string, collection = false): string {
    return redactUrl(this.#resolve(name, collection ? 'collection' : 'any').toString());
  }

  // --- public operations ---------------------------------------------------

  /**
   * Create the collection `name` and any missing parents (MKCOL; 201 created,
   * 405 already there; 409 means a parent is missing, so walk up at most
   * {@link MAX_WEBDAV_PARENT_LEVELS} levels, then create downwards). Parents
   * above the base URL are created too, as a user pointing at a new folder
   * expects.
   */
  async ensureCollection(name: string, signal?: AbortSignal): Promise<void> {
    const target = this.#resolve(name, 'collection', { allowRoot: true });
    const segments = target.pathname.split('/').filter((s) => s !== '');
    const urlAt = (k: number) => new URL('/' + segments.slice(0, k).map((s) => s + '/').join(''), target);
    const pending: number[] = [];
    let k = segments.length;
    while (k > 0) {
      const r = await this.#mkcol(urlAt(k), signal);
      if (r !== 'parent_missing') break;
      pending.push(k);
      if (pending.length > MAX_WEBDAV_PARENT_LEVELS) {
        throw new WebdavError(`WebDAV MKCOL ${redactUrl(target.toString())} failed: more than ${MAX_WEBDAV_PARENT_LEVELS} parent collections are missing`, {
          kind: 'http',
          reason: 'too_deep',
          status: 409,
          method: 'MKCOL',
          url: redactUrl(target.toString()),
        });
      }
      k--;
    }
    for (const level of pending.reverse()) {
      const url = urlAt(level);
      const r = await this.#mkcol(url, signal);
      if (r === 'parent_missing') {
        throw new WebdavError(`WebDAV MKCOL ${redactUrl(url.toString())} failed: HTTP 409 Conflict although its parent was just created`, {
          kind: 'http',
          reason: 'status',
          status: 409,
          method: 'MKCOL',
          url: redactUrl(url.toString()),
        });
      }
    }
  }

  /** Size of the file `name` (HEAD Content-Length), or null when it does not exist (404/410). */
  async head(name: string, signal?: AbortSignal): Promise<number | null> {
    const url = this.#resolve(name, 'file');
    return this.#run('HEAD', url, { signal }, async (ex, attempt) => {
      await this.#drain(ex.res);
      if (ex.status === 404 || ex.status === 410) return null;
      if (ex.status >= 200 && ex.status < 300) {
        const n = parseContentLength(String(ex.headers['content-length'] ?? ''));
        if (n === null) throw this.#error('HEAD', url, 'the answer has no valid Content-Length', { kind: 'http', reason: 'bad_response', status: ex.status }, attempt);
        return n;
      }
      throw await this.#statusError('HEAD', url, ex, attempt);
    });
  }

  /**
   * Upload `size` bytes of the local file `localPath` to `name`, streamed with
   * an exact Content-Length (memory stays at one read buffer). The file must
   * have exactly `size` bytes now and while it is read; otherwise the upload is
   * refused or aborted with a plain Error (a local problem, not a WebDAV one).
   * When the server answers 409 or 404 (parent collection missing: RFC servers
   * say 409, rclone 404), the parents are created once and the PUT is re-sent.
   */
  async putFile(name: string, localPath: string, size: number, signal?: AbortSignal): Promise<void> {
    if (!Number.isSafeInteger(size) || size < 0) throw new TypeError('putFile: size must be a non-negative safe integer');
    const st = await stat(localPath);
    if (!st.isFile()) throw new Error(`putFile: ${localPath} is not a regular file`);
    if (st.size !== size) throw new Error(`putFile: local file has ${st.size} bytes, expected ${size}`);
    await this.#put(name, { kind: 'file', path: localPath, size }, signal);
  }

  /** Upload an in-memory body to `name` (small files: manifest.json, complete.json). */
  async putBytes(name: string, data: Uint8Array, signal?: AbortSignal): Promise<void> {
    await this.#put(name, { kind: 'bytes', data }, signal);
  }

  /**
   * Stream the file `name`, optionally the byte range [start, end). A range
   * that starts at or beyond the end of the file gives an empty stream (like
   * reading past EOF locally). A server that ignores Range (200) is handled by
   * skipping and cutting locally. Failures mid-body surface as a `network`
   * WebdavError on the stream.
   */
  async get(name: string, range?: { start: number; end?: number }, signal?: AbortSignal): Promise<Readable> {
    const url = this.#resolve(name, 'file');
    const headers: Record<string, string> = {};
    if (range !== undefined) {
      const { start, end } = range;
      if (!Number.isSafeInteger(start) || start < 0 || (end !== undefined && (!Number.isSafeInteger(end) || end < start))) {
        throw new RangeError('get: range must satisfy 0 <= start <= end');
      }
      if (end === start) return Readable.from([]);
      headers['range'] = `bytes=${start}-${end === undefined ? '' : end - 1}`;
    }
    return this.#run('GET', url, { headers, signal }, async (ex, attempt) => {
      if (range !== undefined && ex.status === 416) {
        await this.#drain(ex.res);
        return Readable.from([]);
      }
      if (range !== undefined && ex.status === 206) {
        const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(ex.headers['content-range'] ?? '').trim());
        if (m === null || Number(m[1]) !== range.start) {
          ex.res.destroy();
          throw this.#error('GET', url, 'the server answered a different range than asked', { kind: 'http', reason: 'bad_response', status: 206 }, attempt);
        }
        return this.#bodyStream('GET', url, ex.res, null);
      }
      if (ex.status === 200) return this.#bodyStream('GET', url, ex.res, range ?? null);
      throw await this.#statusError('GET', url, ex, attempt);
    });
  }

  /** DELETE a file, or a collection when `name` ends with `/`. 404 → `not_found`. */
  async delete(name: string, signal?: AbortSignal): Promise<'deleted' | 'not_found'> {
    const url = this.#resolve(name, 'any');
    return this.#run('DELETE', url, { signal }, async (ex, attempt) => {
      if (ex.status === 404) {
        await this.#drain(ex.res);
        return 'not_found';
      }
      if (ex.status >= 200 && ex.status < 300) {
        await this.#drain(ex.res);
        return 'deleted';
      }
      throw await this.#statusError('DELETE', url, ex, attempt);
    });
  }

  /**
   * The direct children of the collection `name` (PROPFIND Depth 1), or null
   * when it does not exist. A `name` that is a file fails with reason
   * `not_a_collection`.
   */
  async list(name: string, signal?: AbortSignal): Promise<PropfindChild[] | null> {
    const url = this.#resolve(name, 'collection', { allowRoot: true });
    return this.#run(
      'PROPFIND',
      url,
      { headers: { depth: '1', 'content-type': 'application/xml; charset=utf-8' }, body: { kind: 'bytes', data: PROPFIND_BODY }, signal },
      async (ex, attempt) => {
        if (ex.status === 404 || ex.status === 410) {
          await this.#drain(ex.res);
          return null;
        }
        if (ex.status !== 207 && ex.status !== 200) throw await this.#statusError('PROPFIND', url, ex, attempt);
        const body = await this.#readAll('PROPFIND', url, ex.res, MAX_PROPFIND_BYTES, attempt);
        const parsed = parsePropfindChildren(body.toString('utf8'), url.pathname);
        if (!parsed.ok) throw this.#error('PROPFIND', url, parsed.problem, { kind: 'http', reason: parsed.reason, status: ex.status }, attempt);
        return parsed.children;
      },
    );
  }

  /**
   * Delete the collection `name` and everything below it. First one DELETE
   * with a trailing slash (404 → nothing existed). When the server refuses a
   * recursive DELETE (403, 405, 409, 423 or 501 on the collection), or
   * answers 2xx but the collection is still there, walk it with PROPFIND
   * Depth 1 (at most `maxTreeEntries` entries), delete the files, then the
   * collections deepest first, then the collection itself. When the walk hits
   * its entry limit it deletes the files it found and fails with reason
   * `too_many_entries`; the next attempt continues where this one stopped.
   */
  async deleteTree(name: string, signal?: AbortSignal): Promise<DeleteTreeResult> {
    const rel = parseRelativePath(name);
    if (!rel.ok) throw new WebdavError(`WebDAV name is invalid: ${rel.problem}`, { kind: 'config', reason: 'invalid_path' });
    const root = rel.segments.join('/') + '/';
    const rootUrl = this.#resolve(root, 'collection');
    let refusedStatus: number | undefined;
    try {
      const first = await this.delete(root, signal);
      if (first === 'not_found') return { existed: false, strategy: 'delete', deletedEntries: 0 };
      if ((await this.list(root, signal)) === null) return { existed: true, strategy: 'delete', deletedEntries: 0 };
    } catch (err) {
      if (!(err instanceof WebdavError) || err.status === undefined || !RECURSIVE_DELETE_REFUSALS.has(err.status)) throw err;
      refusedStatus = err.status;
    }

    // Enumerate breadth-first so collections come out shallow to deep.
    const files: string[] = [];
    const dirs: Array<{ path: string; depth: number }> = [];
    const queue: Array<{ path: string; depth: number }> = [{ path: root, depth: 0 }];
    let entries = 0;
    let limitHit = false;
    while (queue.length > 0 && !limitHit) {
      const dir = queue.shift()!;
      const children = await this.list(dir.path, signal);
      if (children === null) continue;
      for (const c of children) {
        if (++entries > this.#maxTreeEntries) {
          limitHit = true;
          break;
        }
        const childPath = dir.path + c.name;
        if (c.collection) {
          const d = { path: childPath + '/', depth: dir.depth + 1 };
          dirs.push(d);
          queue.push(d);
        } else files.push(childPath);
      }
    }
    let deleted = 0;
    await this.#pool(files, async (f) => {
      if ((await this.delete(f, signal)) === 'deleted') deleted++;
    });
    if (limitHit) {
      throw this.#error(
        'DELETE',
        rootUrl,
        `the server refused a recursive DELETE${refusedStatus === undefined ? '' : ` (HTTP ${refusedStatus})`} and the tree holds more than ${this.#maxTreeEntries} entries; deleted ${deleted} files this time, the rest is left for the next attempt`,
        { kind: 'http', reason: 'too_many_entries' },
        1,
      );
    }
    dirs.sort((a, b) => b.depth - a.depth);
    for (let i = 0; i < dirs.length; ) {
      const depth = dirs[i]!.depth;
      const level: string[] = [];
      while (i < dirs.length && dirs[i]!.depth === depth) level.push(dirs[i++]!.path);
      await this.#pool(level, async (d) => {
        if ((await this.delete(d, signal)) === 'deleted') deleted++;
      });
    }
    await this.delete(root, signal);
    return { existed: true, strategy: 'walk', deletedEntries: deleted, ...(refusedStatus === undefined ? {} : { refusedStatus }) };
  }

  // --- internals -----------------------------------------------------------

  /** Resolve a relative name under the base URL; `file` refuses a trailing slash, `collection` adds one. */
  #resolve(name: string, as: 'file' | 'collection' | 'any', opts: { allowRoot?: boolean } = {}): URL {
    const rel = parseRelativePath(name, opts);
    if (!rel.ok) throw new WebdavError(`WebDAV name is invalid: ${rel.problem}`, { kind: 'config', reason: 'invalid_path' });
    if (as === 'file' && rel.collection) throw new WebdavError('WebDAV name is invalid: a file name must not end with /', { kind: 'config', reason: 'invalid_path' });
    const collection = as === 'collection' || (as === 'any' && rel.collection);
    const encoded = rel.segments.map((s) => encodeURIComponent(s)).join('/');
    return new URL(encoded + (collection && encoded !== '' ? '/' : ''), this.#base);
  }

  /**
   * MKCOL, shared by concurrent callers of the same URL. Parallel PUTs into one
   * new directory would otherwise race to create it, and rclone answers the
   * losers 423 Locked (measured: 100 parallel PUTs into a new directory failed
   * that way before this was added).
   */
  #mkcol(url: URL, signal: AbortSignal | undefined): Promise<'created' | 'exists' | 'parent_missing'> {
    const key = url.href;
    const inFlight = this.#mkcolInFlight.get(key);
    if (inFlight !== undefined) return inFlight;
    const p = this.#mkcolOnce(url, signal).finally(() => this.#mkcolInFlight.delete(key));
    this.#mkcolInFlight.set(key, p);
    return p;
  }

  async #mkcolOnce(url: URL, signal: AbortSignal | undefined): Promise<'created' | 'exists' | 'parent_missing'> {
    return this.#run('MKCOL', url, { signal }, async (ex, attempt) => {
      await this.#drain(ex.res);
      if (ex.status >= 200 && ex.status < 300) return 'created';
      if (ex.status === 405) return 'exists';
      if (ex.status === 409) return 'parent_missing';
      throw await this.#statusError('MKCOL', url, ex, attempt);
    });
  }

  async #put(name: string, body: Body, signal: AbortSignal | undefined): Promise<void> {
    const url = this.#resolve(name, 'file');
    const attemptPut = () =>
      this.#run('PUT', url, { body, signal }, async (ex, attempt) => {
        await this.#drain(ex.res);
        if (ex.status >= 200 && ex.status < 300) return 'ok' as const;
        if (ex.status === 409 || ex.status === 404) return ex;
        throw await this.#statusError('PUT', url, ex, attempt);
      });
    const first = await attemptPut();
    if (first === 'ok') return;
    // Parent missing: create it (for a top-level name, the base path itself) and send once more.
    await this.ensureCollection(name.slice(0, name.lastIndexOf('/') + 1), signal);
    const second = await attemptPut();
    if (second === 'ok') return;
    throw await this.#statusError('PUT', url, second, 1);
  }

  /**
   * One logical request with in-request retries. `handle` interprets the
   * response; a `network` WebdavError from it (or from sending) is retried when
   * it is transient, anything else is final.
   */
  async #run<T>(method: string, url: URL, spec: SendSpec, handle: (ex: Exchange, attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        const ex = await this.#send(method, url, spec, attempt);
        if (isRetriableStatus(ex.status)) throw await this.#statusError(method, url, ex, attempt);
        return await handle(ex, attempt);
      } catch (err) {
        if (!(err instanceof WebdavError) || err.kind !== 'network') throw err;
        if (err.status !== undefined && !isRetriableStatus(err.status)) throw err;
        if (spec.signal?.aborted) throw err;
        const delayMs = retryDelayMs(attempt, err.retryAfterSeconds ?? null, this.#policy);
        if (delayMs === null) throw err;
        this.#onRetry?.({
          method,
          url: redactUrl(url.toString()),
          attempt,
          attempts: this.#policy.attempts,
          delayMs,
          status: err.status,
          reason: err.reason,
        });
        await sleep(delayMs, undefined, spec.signal ? { signal: spec.signal } : undefined);
      }
    }
  }

  /** Send one request and resolve with its response head. Network failures reject with a `network` WebdavError. */
  #send(method: string, url: URL, spec: SendSpec, attempt: number): Promise<Exchange> {
    if (spec.signal?.aborted) return Promise.reject(spec.signal.reason);
    return new Promise<Exchange>((resolve, reject) => {
      const body = spec.body ?? { kind: 'none' };
      const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...spec.headers, authorization: this.#auth };
      if (body.kind === 'bytes') headers['content-length'] = String(body.data.byteLength);
      else if (body.kind === 'file') headers['content-length'] = String(body.size);
      else if (method !== 'GET' && method !== 'HEAD') headers['content-length'] = '0';
      const mod = url.protocol === 'https:' ? https : http;
      const req = mod.request(url, { method, headers, agent: this.#agent });
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      let localError: LocalBodyError | undefined;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => req.destroy(new IdleTimeout()), this.#timeoutMs);
      };
      const finish = () => {
        settled = true;
        clearTimeout(timer);
        spec.signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = () => req.destroy(spec.signal?.reason instanceof Error ? spec.signal.reason : new Error('aborted'));
      spec.signal?.addEventListener('abort', onAbort, { once: true });
      req.on('socket', arm);
      req.on('error', (err) => {
        if (settled) return;
        finish();
        if (localError !== undefined) reject(localError);
        else if (spec.signal?.aborted) reject(spec.signal.reason);
        else reject(this.#networkError(method, url, err, attempt));
      });
      req.on('response', (res) => {
        if (settled) {
          res.destroy();
          return;
        }
        finish();
        resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', headers: res.headers, res });
      });

      if (body.kind === 'none') req.end();
      else if (body.kind === 'bytes') req.end(body.data);
      else if (body.size === 0) req.end();
      else {
        const file = createReadStream(body.path, { start: 0, end: body.size - 1, highWaterMark: 256 * 1024 });
        let sent = 0;
        const counter = new Transform({
          transform(chunk: Buffer, _enc, cb: TransformCallback) {
            sent += chunk.length;
            arm();
            cb(null, chunk);
          },
          flush: (cb: TransformCallback) => {
            if (sent !== body.size) {
              localError = new LocalBodyError(`local file shrank while uploading: sent ${sent} of ${body.size} bytes`);
              cb(localError);
            } else cb();
          },
        });
        file.on('error', (err) => {
          localError ??= new LocalBodyError(`cannot read local file: ${err.message}`, err);
        });
        pipeline(file, counter, req, (err) => {
          // A server that answers early (401, 413) closes the upload: the response decides, not the pipe.
          if (err && localError !== undefined) req.destroy(localError);
        });
      }
    }).catch((err: unknown) => {
      if (err instanceof LocalBodyError) throw new Error(err.message, { cause: err.localCause });
      throw err;
    });
  }

  #networkError(method: string, url: URL, err: unknown, attempt: number): WebdavError {
    if (err instanceof IdleTimeout) {
      return this.#error(method, url, `no progress for ${this.#timeoutMs} ms (timed out)`, { kind: 'network', reason: 'timeout', cause: undefined }, attempt);
    }
    const e = err as NodeJS.ErrnoException;
    const code = typeof e?.code === 'string' ? `${e.code}: ` : '';
    const detail = e instanceof Error ? e.message : String(err);
    return this.#error(method, url, `connection failed: ${code}${detail}`, { kind: 'network', reason: 'connection', cause: err }, attempt);
  }

  /** Error for a failing status, with Retry-After and a scrubbed excerpt of the body. */
  async #statusError(method: string, url: URL, ex: Exchange, attempt: number): Promise<WebdavError> {
    const retryAfter = parseRetryAfter(ex.headers['retry-after'], Date.now());
    let excerpt = '';
    if (method !== 'HEAD') {
      excerpt = await this.#excerpt(ex.res);
      if (/html|xml/i.test(String(ex.headers['content-type'] ?? ''))) excerpt = excerpt.replace(/<[^>]*>/g, ' ');
    } else ex.res.resume();
    const status = `HTTP ${ex.status}${ex.statusText ? ' ' + ex.statusText : ''}`;
    const detail = `${status}${retryAfter === null ? '' : `; retry after ${retryAfter} s`}${excerpt.trim() ? `; response: ${excerpt.trim().slice(0, 300)}` : ''}`;
    return this.#error(method, url, detail, {
      kind: classifyWebdavStatus(ex.status),
      reason: 'status',
      status: ex.status,
      ...(retryAfter === null ? {} : { retryAfterSeconds: retryAfter }),
    }, attempt);
  }

  #error(method: string, url: URL, detail: string, init: Omit<WebdavErrorInit, 'method' | 'url'>, attempt: number): WebdavError {
    const redacted = redactUrl(url.toString());
    const attemptInfo = attempt > 1 || this.#policy.attempts > 1 ? ` (attempt ${attempt} of ${this.#policy.attempts})` : '';
    return new WebdavError(`WebDAV ${method} ${redacted} failed${attemptInfo}: ${detail}`, { ...init, method, url: redacted }, this.#secrets);
  }

  /** Up to {@link ERROR_BODY_EXCERPT_BYTES} of a body as text; the rest is discarded and the connection dropped if large. */
  async #excerpt(res: IncomingMessage): Promise<string> {
    try {
      const buf = await this.#readAll('', new URL(this.#base), res, ERROR_BODY_EXCERPT_BYTES, 1, true);
      return buf.toString('utf8');
    } catch {
      return '';
    }
  }

  /** Read and discard a (small) body so the connection can be reused. */
  async #drain(res: IncomingMessage): Promise<void> {
    try {
      await this.#readAll('', new URL(this.#base), res, 1024 * 1024, 1, true);
    } catch {
      /* a broken body after a final status does not change the outcome */
    }
  }

  /**
   * Read a whole body with the inactivity timer. Beyond `limit` bytes: with
   * `truncate`, return what fits and drop the connection; otherwise fail.
   */
  #readAll(method: string, url: URL, res: IncomingMessage, limit: number, attempt: number, truncate = false): Promise<Buffer> {
    // Already consumed (e.g. drained before a status error is built): nothing more will arrive.
    if (res.readableEnded || res.destroyed) return Promise.resolve(Buffer.alloc(0));
    return new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let timer: NodeJS.Timeout | undefined;
      let done = false;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => res.destroy(new IdleTimeout()), this.#timeoutMs);
      };
      const end = (err?: unknown) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err === undefined) resolve(Buffer.concat(chunks));
        else reject(this.#networkError(method, url, err, attempt));
      };
      arm();
      res.on('data', (c: Buffer) => {
        arm();
        if (size + c.length > limit) {
          if (truncate) {
            chunks.push(c.subarray(0, limit - size));
            size = limit;
            res.destroy();
            end();
            return;
          }
          res.destroy();
          done = true;
          clearTimeout(timer);
          reject(this.#error(method, url, `the response is larger than ${limit} bytes`, { kind: 'http', reason: 'bad_response' }, attempt));
          return;
        }
        chunks.push(c);
        size += c.length;
      });
      res.on('end', () => end());
      res.on('error', (err) => end(err));
      res.on('close', () => {
        if (!res.complete) end(new Error('the connection closed before the response body was complete'));
      });
    });
  }

  /**
   * Hand a response body to a consumer: inactivity timer only while the
   * consumer reads, failures mapped to `network` WebdavErrors, and, for a
   * server that ignored Range, the requested slice cut out locally.
   */
  #bodyStream(method: string, url: URL, res: IncomingMessage, slice: { start: number; end?: number } | null): Readable {
    const out = new PassThrough({ highWaterMark: 256 * 1024 });
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => res.destroy(new IdleTimeout()), this.#timeoutMs);
    };
    const disarm = () => clearTimeout(timer);
    res.on('data', arm);
    res.on('pause', disarm);
    res.on('resume', arm);
    arm();
    // Registered before pipeline's own listener, so the consumer sees the mapped error, not the raw one.
    res.on('error', (err) => {
      disarm();
      if (!out.destroyed) out.destroy(this.#networkError(method, url, err, 1));
    });
    const onDone = (err: NodeJS.ErrnoException | null) => {
      disarm();
      if (err && !out.destroyed) out.destroy(this.#networkError(method, url, err, 1));
    };
    if (slice === null) pipeline(res, out, onDone);
    else pipeline(res, sliceStream(slice.start, slice.end), out, onDone);
    res.on('close', () => {
      disarm();
      if (!res.complete && !out.destroyed) out.destroy(this.#networkError(method, url, new Error('the connection closed before the response body was complete'), 1));
    });
    return out;
  }

  /** Run `fn` over `items` with at most the connection limit in flight. */
  async #pool<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
    let next = 0;
    const width = Math.min(items.length, this.#agent.maxSockets === Infinity ? 4 : this.#agent.maxSockets);
    const workers = Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]!);
    });
    await Promise.all(workers);
  }
}

/** Statuses with which servers refuse a recursive collection DELETE (DESIGN §6). */
const RECURSIVE_DELETE_REFUSALS: ReadonlySet<number> = new Set([403, 405, 409, 423, 501]);

/** Skip `start` bytes and stop at `end` (exclusive), for servers that ignore Range. */
function sliceStream(start: number, end: number | undefined): Transform {
  let pos = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      const from = Math.max(0, start - pos);
      const to = end === undefined ? chunk.length : Math.min(chunk.length, end - pos);
      pos += chunk.length;
      cb(null, to > from ? chunk.subarray(from, to) : undefined);
    },
  });
}
