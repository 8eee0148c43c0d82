/**
 * grafserv on uWebSockets.js. There is no upstream adapter, so this one
 * subclasses grafserv's base class and does what every grafserv adapter
 * does: turn the framework's request into a RequestDigest, call
 * `processRequest`, and write the tagged result it returns.
 *
 * The uWS rules (NOTES.md) shape the code:
 * - method, URL, query, headers and peer address are read synchronously in
 *   the handler (the HttpRequest dies when it returns), and `onAborted` is
 *   registered before anything asynchronous;
 * - the body is collected with `onData`, copying each chunk (uWS reuses the
 *   buffer), and refused with 413 once it passes grafserv's
 *   `maxRequestLength`;
 * - every write after an await happens inside `cork`, and never after an
 *   abort; grafserv's own `content-length` is dropped (uWS adds one, and two
 *   would corrupt the response);
 * - streamed results (incremental delivery) drop `transfer-encoding` (uWS
 *   chunks by itself), wait for `onWritable` when uWS reports backpressure,
 *   and stop the iterator when the client goes away.
 *
 * Authentication happens before grafserv sees the request: the digest
 * carries the user in `requestContext.bastion`, from which the preset's
 * context callback derives the per-request PostgreSQL role.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import { parse as parseQueryString } from 'node:querystring';
import type { Logger } from 'pino';
import { GrafservBase, type GrafservConfig, type RequestDigest, type Result } from 'postgraphile/grafserv';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { BastionError } from '../core/errors.ts';
import type { RequestAuth } from './auth/authenticate.ts';
import type { RequestTransaction } from './auth/request-transaction.ts';
import { toBastionError } from './http-adapter.ts';

/** How the adapter learns who is asking (resolved before grafserv runs). */
export interface UwsGrafservHooks {
  /**
   * Authenticate a request from its headers; throws a BastionError (401)
   * when it cannot. With a `transaction` (begun as the user in the same
   * round trip), the operation runs in it and the adapter ends it once the
   * answer is written.
   */
  authenticate(headers: Readonly<Record<string, string>>, peer: string): Promise<{ auth: RequestAuth; transaction?: RequestTransaction }>;
  /** Whether the client reached us over HTTPS (through a trusted proxy). */
  isSecure(headers: Readonly<Record<string, string>>, peer: string): boolean;
  /** Called once per finished request (metrics). */
  onResponse?(info: { path: string; method: string; status: number; seconds: number }): void;
  logger: Logger;
}

interface Pending {
  aborted: boolean;
  /** Set while a streamed result is being written, so an abort can stop it. */
  iterator?: AsyncGenerator<Buffer, void, undefined>;
  /** Set while waiting for uWS to drain, so an abort ends the wait. */
  wake?: () => void;
  status: number;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const ERRORS_ONLY = Buffer.from('{"errors":');

/**
 * Request errors (syntax, validation) skip grafserv's maskError, so they
 * arrive without `extensions.code`. They are the only payloads that start
 * with `{"errors":` (results start with `{"data":`), so only those are
 * re-read, and each error gains `code: invalid_query` (or keeps its own).
 */
function withErrorCodes(buffer: Buffer): Buffer {
  if (buffer.length < ERRORS_ONLY.length || buffer.compare(ERRORS_ONLY, 0, ERRORS_ONLY.length, 0, ERRORS_ONLY.length) !== 0) return buffer;
  let payload: { errors?: Array<{ extensions?: Record<string, unknown> }> };
  try {
    payload = JSON.parse(buffer.toString('utf8')) as typeof payload;
  } catch {
    return buffer;
  }
  if (!Array.isArray(payload.errors)) return buffer;
  for (const e of payload.errors) e.extensions = { ...e.extensions, code: typeof e.extensions?.code === 'string' ? e.extensions.code : 'invalid_query' };
  return Buffer.from(JSON.stringify(payload));
}

/** A grafserv server whose requests come from uWebSockets.js. */
export class UwsGrafserv extends GrafservBase {
  readonly #hooks: UwsGrafservHooks;
  #inFlight = 0;

  /** Requests being processed right now (a graceful stop waits for them). */
  get inFlight(): number {
    return this.#inFlight;
  }

  constructor(config: GrafservConfig, hooks: UwsGrafservHooks) {
    super(config);
    this.#hooks = hooks;
  }

  /** The largest request body grafserv accepts, in bytes. */
  get maxRequestBytes(): number {
    return this.dynamicOptions.maxRequestLength;
  }

  /**
   * Handle one HTTP request: call from the uWS route handler, synchronously.
   * `requireAdmin` is set for the Ruru page.
   */
  handle(res: HttpResponse, req: HttpRequest, options: { requireAdmin?: boolean; requireAuth?: boolean } = {}): void {
    const started = performance.now();
    const rawMethod = req.getCaseSensitiveMethod().toUpperCase();
    const path = req.getUrl();
    const search = req.getQuery() ?? '';
    const headers: Record<string, string> = {};
    req.forEach((k, v) => {
      headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
    });
    const peer = Buffer.from(res.getRemoteAddressAsText()).toString();
    const pending: Pending = { aborted: false, status: 0 };
    res.onAborted(() => {
      pending.aborted = true;
      pending.wake?.();
      void pending.iterator?.return(undefined).catch(() => {});
    });
    const finish = (status: number) => {
      pending.status = status;
      this.#hooks.onResponse?.({ path, method: rawMethod, status, seconds: (performance.now() - started) / 1000 });
    };

    const limit = this.maxRequestBytes;
    const declared = Number(headers['content-length'] ?? '0');
    if (Number.isFinite(declared) && declared > limit) {
      this.#writeError(res, pending, 413, 'payload_too_large', `The request body is larger than ${limit} bytes`, true);
      finish(413);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let bodyDone = false;
    res.onData((chunk, isLast) => {
      if (bodyDone || pending.aborted) return;
      size += chunk.byteLength;
      if (size > limit) {
        bodyDone = true;
        this.#writeError(res, pending, 413, 'payload_too_large', `The request body is larger than ${limit} bytes`, true);
        finish(413);
        return;
      }
      chunks.push(Buffer.from(chunk.slice(0)));
      if (!isLast) return;
      bodyDone = true;
      const body = Buffer.concat(chunks, size);
      this.#inFlight++;
      void this.#process(res, pending, { rawMethod, path, search, headers, peer, body, options })
        .then(
          (status) => finish(status),
          (err: unknown) => {
            const id = randomUUID();
            this.#hooks.logger.error({ err, error_id: id }, 'GraphQL adapter failed');
            this.#writeError(res, pending, 500, 'internal_error', `Internal error (id ${id}); the server log has details`, false);
            finish(500);
          },
        )
        .finally(() => {
          this.#inFlight--;
        });
    });
  }

  async #process(
    res: HttpResponse,
    pending: Pending,
    r: { rawMethod: string; path: string; search: string; headers: Record<string, string>; peer: string; body: Buffer; options: { requireAdmin?: boolean; requireAuth?: boolean } },
  ): Promise<number> {
    const isRuruAsset = r.path.startsWith(this.dynamicOptions.graphiqlStaticPath);
    let auth: RequestAuth | undefined;
    let transaction: RequestTransaction | undefined;
    if (!isRuruAsset || r.options.requireAuth) {
      try {
        ({ auth, transaction } = await this.#hooks.authenticate(r.headers, r.peer));
      } catch (e) {
        const known = toBastionError(e);
        if (!known) throw e;
        return this.#writeError(res, pending, known.status, known.code, known.message, false);
      }
    }
    try {
      if (auth && r.options.requireAdmin && auth.role !== 'admin') {
        const err = new BastionError('forbidden', 'Only admins may use the GraphQL IDE');
        return this.#writeError(res, pending, err.status, err.code, err.message, false);
      }
      return await this.#execute(res, pending, r, auth, transaction);
    } finally {
      // After the answer is written (a streamed one may still be running:
      // its later statements take connections of their own). Reads do not
      // wait for this commit; mutations committed call by call already.
      if (transaction) {
        transaction.end().catch((err: unknown) => this.#hooks.logger.warn({ err }, 'ending a GraphQL request transaction failed'));
      }
    }
  }

  async #execute(
    res: HttpResponse,
    pending: Pending,
    r: { rawMethod: string; path: string; search: string; headers: Record<string, string>; peer: string; body: Buffer },
    auth: RequestAuth | undefined,
    transaction: RequestTransaction | undefined,
  ): Promise<number> {
    const digest: RequestDigest = {
      method: r.rawMethod,
      httpVersionMajor: 1,
      httpVersionMinor: 1,
      isSecure: this.#hooks.isSecure(r.headers, r.peer),
      path: r.path,
      headers: r.headers,
      getQueryParams: () => parseQueryString(r.search) as Record<string, string | string[]>,
      getBody: () => ({ type: 'buffer', buffer: r.body }),
      requestContext: auth ? { bastion: { auth, transport: 'http', transaction } } : {},
      preferJSON: false,
    };
    const result = await this.processRequest(digest);
    if (result?.type === 'bufferStream') {
      // A stream runs on after this; do not hold the request's connection
      // (and an open transaction) for as long as it lasts.
      transaction?.end().catch((err: unknown) => this.#hooks.logger.warn({ err }, 'ending a GraphQL request transaction failed'));
    }
    return this.#writeResult(res, pending, result, r.rawMethod === 'HEAD');
  }

  async #writeResult(res: HttpResponse, pending: Pending, result: Result | null, head: boolean): Promise<number> {
    if (result === null) return this.#writeError(res, pending, 404, 'not_found', `POST GraphQL requests to ${this.dynamicOptions.graphqlPath}`, false);
    switch (result.type) {
      case 'error': {
        const { error, statusCode } = result;
        // grafserv's SafeErrors (400/405/406/413/415…) are written for clients.
        if ((error as { name?: string }).name === 'SafeError' || (statusCode >= 400 && statusCode < 500)) {
          return this.#writeError(res, pending, statusCode, statusCode === 413 ? 'payload_too_large' : 'invalid_query', error.message, false);
        }
        const id = randomUUID();
        this.#hooks.logger.error({ err: error, error_id: id }, 'GraphQL request failed');
        return this.#writeError(res, pending, 500, 'internal_error', `Internal error (id ${id}); the server log has details`, false);
      }
      case 'buffer':
        this.#write(res, pending, result.statusCode, result.headers, head ? undefined : withErrorCodes(result.buffer));
        return result.statusCode;
      case 'json':
        this.#write(res, pending, result.statusCode, result.headers, head ? undefined : Buffer.from(JSON.stringify(result.json)));
        return result.statusCode;
      case 'noContent':
        this.#write(res, pending, result.statusCode, result.headers, undefined);
        return result.statusCode;
      case 'bufferStream':
        await this.#stream(res, pending, result.statusCode, result.headers, result.bufferIterator);
        return result.statusCode;
    }
  }

  #writeHead(res: HttpResponse, status: number, headers: Record<string, string>): void {
    res.writeStatus(`${status} ${STATUS_CODES[status] ?? ''}`.trimEnd());
    for (const [k, v] of Object.entries(headers)) {
      const key = k.toLowerCase();
      // uWS writes its own length / chunking; a second header corrupts the response.
      if (key === 'content-length' || key === 'transfer-encoding' || key === 'connection') continue;
      res.writeHeader(key, v);
    }
  }

  #write(res: HttpResponse, pending: Pending, status: number, headers: Record<string, string>, body: Buffer | undefined, close = false): void {
    if (pending.aborted) return;
    pending.aborted = true; // the response is finished: nothing may touch it again
    res.cork(() => {
      this.#writeHead(res, status, headers);
      if (body === undefined || status === 204 || status === 304) res.endWithoutBody(undefined, close);
      else res.end(body, close);
    });
  }

  #writeError(res: HttpResponse, pending: Pending, status: number, code: string, message: string, close: boolean): number {
    const body = Buffer.from(JSON.stringify({ errors: [{ message, extensions: { code } }] }));
    this.#write(res, pending, status, { 'content-type': JSON_TYPE, 'cache-control': 'no-store' }, body, close);
    return status;
  }

  async #stream(res: HttpResponse, pending: Pending, status: number, headers: Record<string, string>, iterator: AsyncGenerator<Buffer, void, undefined>): Promise<void> {
    if (pending.aborted) {
      await iterator.return(undefined).catch(() => {});
      return;
    }
    pending.iterator = iterator;
    res.cork(() => this.#writeHead(res, status, headers));
    try {
      for await (const chunk of iterator) {
        if (pending.aborted) break;
        let ok = true;
        res.cork(() => {
          ok = res.write(chunk);
        });
        if (!ok && !pending.aborted) {
          // Backpressure: wait until uWS has flushed what it holds.
          await new Promise<void>((resolve) => {
            pending.wake = resolve;
            res.onWritable(() => {
              resolve();
              return true;
            });
          });
          pending.wake = undefined;
        }
      }
    } catch (err) {
      this.#hooks.logger.warn({ err }, 'streamed GraphQL response ended with an error');
    } finally {
      pending.iterator = undefined;
      if (!pending.aborted) {
        pending.aborted = true;
        res.cork(() => res.end());
      }
    }
  }
}
