/**
 * The request/response layer between uWebSockets.js and Bastion's handlers.
 *
 * uWS is fast because it is strict; breaking its rules crashes the process
 * (NOTES.md). This file is the only place that touches uWS's HttpRequest and
 * HttpResponse, and it follows the rules once for everyone:
 * - method, URL, query, headers and route parameters are read synchronously,
 *   before anything else (the request object dies when the callback returns);
 * - `onAborted` is registered before the first await, and nothing touches the
 *   response after an abort;
 * - the body is collected with `onData`, copying each chunk (uWS reuses the
 *   buffer), and refused with 413 as soon as it passes the route's limit;
 * - the response is written inside `cork`, with uWS computing Content-Length.
 *
 * Handlers are plain async functions from a normalised {@link Request} to a
 * {@link Response}; they never see uWS, so they are easy to read and to test.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { HttpRequest as UwsRequest, HttpResponse as UwsResponse, TemplatedApp } from 'uWebSockets.js';
import type { Logger } from 'pino';
import { BastionError, ERRORS, type ErrorDetails } from '../core/errors.ts';
import { bastionErrorFromSql } from '../core/database-error.ts';

/** A normalised HTTP request. */
export interface Request {
  /** Upper-case method. */
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** Header values by lower-case name (repeated headers joined with ", "). */
  readonly headers: Readonly<Record<string, string>>;
  /** Route parameters by name (`/api/jobs/:job_id` → `job_id`), percent-decoded. */
  readonly params: Readonly<Record<string, string>>;
  /** Peer address as text (no proxy resolution here; see the auth layer). */
  readonly remoteAddress: string;
  /** The whole request body (bounded by the route's limit). */
  readonly body: Buffer;
  /** Aborted when the client goes away before the response is written. */
  readonly signal: AbortSignal;
  /** Id used in logs and in 500 answers. */
  readonly id: string;
}

/** What a handler returns. */
export interface Response {
  status: number;
  headers?: Record<string, string | string[]>;
  body?: string | Uint8Array;
}

/** A route handler. */
export type Handler = (req: Request) => Promise<Response> | Response;

/** Per-route options. */
export interface RouteOptions {
  /** Largest accepted request body in bytes (default 1 MiB); larger bodies get 413. */
  maxBodyBytes?: number;
}

/** Default request body limit. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

type Method = 'get' | 'post' | 'put' | 'patch' | 'del' | 'options' | 'head' | 'any';

/** A JSON response. */
export function json(status: number, value: unknown, headers: Record<string, string | string[]> = {}): Response {
  return { status, headers: { 'content-type': 'application/json; charset=utf-8', ...headers }, body: JSON.stringify(value) };
}

/** A response without a body (204 by default). */
export function noContent(headers: Record<string, string | string[]> = {}): Response {
  return { status: 204, headers };
}

/** The JSON error body every API route uses: `{error, message, details?}`. */
export function errorResponse(code: keyof typeof ERRORS, message?: string, details?: ErrorDetails, status?: number): Response {
  const body: Record<string, unknown> = { error: code, message: message ?? ERRORS[code].message };
  if (details !== undefined) body.details = details;
  return json(status ?? ERRORS[code].status, body);
}

/**
 * Turn anything thrown by a handler into a safe response. BastionErrors and
 * Bastion's SQL domain errors (message = code, SQLSTATE BAnnn) are shown as
 * they are; PostgreSQL's own permission error becomes `forbidden`; anything
 * else is logged with an id and answered with that id only.
 */
export function toErrorResponse(err: unknown, requestId: string, logger: Logger): Response {
  const known = toBastionError(err);
  if (known) return errorResponse(known.code, known.message, known.details, known.status);
  logger.error({ err, request_id: requestId }, 'unexpected error while handling a request');
  return errorResponse('internal_error', `Internal error (id ${requestId}); the server log has details`, { error_id: requestId });
}

/** Map an error to a BastionError when it is one of ours (or PostgreSQL's permission refusal); null otherwise. */
export function toBastionError(err: unknown): BastionError | null {
  const domain = bastionErrorFromSql(err);
  if (domain) return domain;
  const e = err as { code?: unknown; message?: unknown } | null;
  if (e?.code === '42501') return new BastionError('forbidden', undefined, { cause: err });
  // PostgreSQL refusing a value the client sent (bad UUID text, out-of-range
  // number, a CHECK constraint): the client's input, so a 400 with
  // PostgreSQL's one-line message (it quotes only that input).
  if (typeof e?.code === 'string' && (e.code.startsWith('22') || e.code === '23514') && typeof e.message === 'string') {
    return new BastionError('invalid_input', e.message.split('\n')[0]?.slice(0, 300), { details: { reason: e.code === '23514' ? 'constraint' : 'invalid_value' }, cause: err });
  }
  return null;
}

function decodeParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** Called once per answered request, with the route pattern (not the raw path, so labels stay few). */
export type ResponseObserver = (info: { method: string; route: string; status: number; seconds: number }) => void;

/**
 * Collects routes and mounts them on a uWS app. Routes use uWS patterns
 * (`/api/jobs/:job_id/snapshots`); unmatched requests get a JSON 404.
 */
export class Router {
  readonly #routes: Array<{ method: Method; pattern: string; handler: Handler; options: RouteOptions }> = [];
  readonly #logger: Logger;
  readonly #onResponse: ResponseObserver | undefined;
  #inFlight = 0;

  /** Handlers running right now (a graceful stop waits for them). */
  get inFlight(): number {
    return this.#inFlight;
  }

  constructor(logger: Logger, options: { onResponse?: ResponseObserver } = {}) {
    this.#logger = logger;
    this.#onResponse = options.onResponse;
  }

  /** Every registered route (for docs and tests). */
  get routes(): ReadonlyArray<{ method: string; pattern: string }> {
    return this.#routes.map((r) => ({ method: r.method, pattern: r.pattern }));
  }

  /** Register a handler for `method` (uWS method name: get, post, put, patch, del, any, …). */
  add(method: Method, pattern: string, handler: Handler, options: RouteOptions = {}): this {
    this.#routes.push({ method, pattern, handler, options });
    return this;
  }

  get(pattern: string, handler: Handler, options?: RouteOptions): this {
    return this.add('get', pattern, handler, options);
  }
  post(pattern: string, handler: Handler, options?: RouteOptions): this {
    return this.add('post', pattern, handler, options);
  }
  put(pattern: string, handler: Handler, options?: RouteOptions): this {
    return this.add('put', pattern, handler, options);
  }
  delete(pattern: string, handler: Handler, options?: RouteOptions): this {
    return this.add('del', pattern, handler, options);
  }

  /** Attach every route, then the JSON 404 fallback, to `app`. */
  mount(app: TemplatedApp): void {
    for (const r of this.#routes) {
      const names = [...r.pattern.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1] as string);
      app[r.method](r.pattern, (res, req) => this.#serve(res, req, names, r.handler, r.options, r.pattern));
    }
    app.any('/*', (res, req) => this.#serve(res, req, [], () => errorResponse('not_found', 'No such route'), {}, '(unmatched)'));
  }

  #serve(res: UwsResponse, req: UwsRequest, paramNames: string[], handler: Handler, options: RouteOptions, pattern: string): void {
    const started = performance.now();
    // Everything from `req` is read now: it is invalid after this function returns.
    const method = req.getCaseSensitiveMethod().toUpperCase();
    const path = req.getUrl();
    const query = new URLSearchParams(req.getQuery() ?? '');
    const headers: Record<string, string> = {};
    req.forEach((k, v) => {
      headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
    });
    const params: Record<string, string> = {};
    paramNames.forEach((name, i) => {
      params[name] = decodeParam(req.getParameter(i) ?? '');
    });
    const remoteAddress = Buffer.from(res.getRemoteAddressAsText()).toString();
    const id = randomUUID();
    const abort = new AbortController();
    let done = false;
    res.onAborted(() => {
      done = true;
      abort.abort();
    });

    const observe = (status: number) => this.#onResponse?.({ method, route: pattern, status, seconds: (performance.now() - started) / 1000 });
    const limit = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    const declared = Number(headers['content-length'] ?? '0');
    if (Number.isFinite(declared) && declared > limit) {
      this.#write(res, errorResponse('payload_too_large', `The request body is larger than ${limit} bytes`, { limit_bytes: limit }), () => done, true);
      done = true;
      observe(413);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    res.onData((chunk, isLast) => {
      if (done) return;
      size += chunk.byteLength;
      if (size > limit) {
        done = true;
        this.#write(res, errorResponse('payload_too_large', `The request body is larger than ${limit} bytes`, { limit_bytes: limit }), () => false, true);
        observe(413);
        return;
      }
      chunks.push(Buffer.from(chunk.slice(0)));
      if (!isLast) return;
      const request: Request = { method, path, query, headers, params, remoteAddress, body: Buffer.concat(chunks, size), signal: abort.signal, id };
      this.#inFlight++;
      void (async () => {
        let response: Response;
        try {
          response = await handler(request);
        } catch (err) {
          response = toErrorResponse(err, id, this.#logger);
        } finally {
          this.#inFlight--;
        }
        this.#write(res, response, () => done, false);
        done = true;
        observe(response.status);
      })();
    });
  }

  #write(res: UwsResponse, response: Response, isDone: () => boolean, close: boolean): void {
    if (isDone()) return;
    res.cork(() => {
      res.writeStatus(`${response.status} ${STATUS_CODES[response.status] ?? ''}`.trimEnd());
      for (const [k, v] of Object.entries(response.headers ?? {})) {
        // uWS adds its own content-length; a second one would corrupt the response.
        if (k.toLowerCase() === 'content-length') continue;
        for (const value of Array.isArray(v) ? v : [v]) res.writeHeader(k, value);
      }
      if (response.body === undefined || response.status === 204 || response.status === 304) res.endWithoutBody(undefined, close);
      else res.end(response.body, close);
    });
  }
}
