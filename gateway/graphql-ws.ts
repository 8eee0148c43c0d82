/**
 * GraphQL over WebSocket (graphql-ws, `graphql-transport-ws`) on the same
 * path as HTTP GraphQL, served by uWS's own WebSocket support.
 *
 * graphql-ws's bundled uWS helper drops header-based auth (NOTES.md), so
 * this is a small handler of our own around `makeServer(makeGraphQLWSConfig(serv))`:
 * - the upgrade is refused (HTTP 401/403) when it carries no credential, a
 *   malformed one, or a cookie from another site's page (Origin check); those
 *   checks read headers only, so the upgrade itself stays synchronous. The
 *   credential is then looked up right after the socket opens, before any
 *   graphql-ws message is handled (messages wait); an unknown, expired or
 *   revoked one closes the socket with 4401 and the error code as reason.
 *   Upgrading after an await is what uWebSockets.js's UpgradeAsync example
 *   does, but this uWS build can close such a socket right after `open`
 *   (uNetworking/uWebSockets#1929: `cork()` misreads the reallocated socket),
 *   which dropped about one subscription in a few hundred under load;
 * - the socket never mutates unless `connection_init` carries the session's
 *   `csrf_token`;
 * - every `subscribe` message authenticates again, and open sockets are
 *   re-checked every {@link RECHECK_MS}: an ended session, a revoked token or
 *   a disabled user loses the socket (close 4401);
 * - the user rides on the upgrade request (`extra.request.bastion`), where
 *   the preset's context callback finds it;
 * - sends respect backpressure (the graphql-ws send promise resolves on
 *   drain, pausing the subscription), and a client that stops reading past
 *   {@link MAX_BACKPRESSURE_BYTES} is closed by uWS.
 */
import type { Logger } from 'pino';
import { GraphQLError } from 'graphql';
import { CloseCode, makeServer } from 'graphql-ws';
import { makeGraphQLWSConfig } from 'postgraphile/grafserv';
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_socket_context_t } from 'uWebSockets.js';
import { toBastionError } from './http-adapter.ts';
import { BastionError } from '../core/errors.ts';
import { readCredential, type RequestAuth } from './auth/authenticate.ts';
import { csrfMatches } from './auth/tokens.ts';
import type { UwsGrafserv } from './grafserv-uws.ts';
import type { BastionRequestContext } from './graphql/preset.ts';

/** Largest unsent data per socket before uWS closes it (a client that stopped reading). */
export const MAX_BACKPRESSURE_BYTES = 1024 * 1024;
/** How often open sockets re-check their credentials. */
export const RECHECK_MS = 30_000;
/** Messages a socket may send before its credential is checked (graphql-ws sends one: connection_init). */
const MAX_EARLY_MESSAGES = 8;
const PROTOCOL = 'graphql-transport-ws';

interface UpgradeRequest {
  method: 'GET';
  url: string;
  headers: Record<string, string>;
  bastion: BastionRequestContext;
}

interface SocketData {
  request: UpgradeRequest;
  peer: string;
  protocol: string;
  closed: boolean;
  /** Messages that arrived while the credential was being looked up. */
  early: string[];
  onMessage?: (data: string) => Promise<void>;
  onClose?: (code?: number, reason?: string) => Promise<void>;
  drainWaiters: Array<() => void>;
}

/** What the WebSocket handler needs from the gateway. */
export interface GraphQLWebSocketDeps {
  authenticate(headers: Readonly<Record<string, string>>, peer: string): Promise<RequestAuth>;
  /** True when a cookie-authenticated upgrade's Origin is this server. */
  originAllowed(headers: Readonly<Record<string, string>>, peer: string): boolean;
  logger: Logger;
  onConnectionChange?(delta: 1 | -1): void;
}

/** Handle to the mounted WebSocket endpoint. */
export interface GraphQLWebSocket {
  /** Open sockets right now. */
  readonly size: number;
  /** Stop the periodic re-check and close every socket. */
  close(): void;
}

function writeRefusal(res: HttpResponse, status: number, code: string, message: string): void {
  res.cork(() => {
    res.writeStatus(`${status} ${status === 401 ? 'Unauthorized' : status === 403 ? 'Forbidden' : 'Error'}`);
    res.writeHeader('content-type', 'application/json; charset=utf-8');
    res.end(JSON.stringify({ error: code, message }), true);
  });
}

/** Mount GraphQL subscriptions (and queries) over WebSocket at `path`. */
export function addGraphQLWebSocket(app: TemplatedApp, path: string, serv: UwsGrafserv, deps: GraphQLWebSocketDeps): GraphQLWebSocket {
  const base = makeGraphQLWSConfig(serv);
  const sockets = new Set<WebSocket<SocketData>>();

  const server = makeServer<Record<string, unknown> | undefined, { request: UpgradeRequest; socket: WebSocket<SocketData> }>({
    ...base,
    connectionInitWaitTimeout: 10_000,
    onConnect(ctx) {
      // Mutations over a cookie-authenticated socket need the CSRF token in
      // connection_init's payload ({csrf_token}); reads never do.
      const auth = ctx.extra.request.bastion.auth;
      if (auth.kind === 'session' && auth.sessionToken) {
        const given = ctx.connectionParams?.csrf_token;
        auth.csrfOk = typeof given === 'string' && csrfMatches(auth.sessionToken, given);
      }
      return true;
    },
    async onSubscribe(ctx, id, payload) {
      const request = ctx.extra.request;
      let auth: RequestAuth;
      try {
        auth = await deps.authenticate(request.headers, ctx.extra.socket.getUserData().peer);
      } catch (e) {
        const known = toBastionError(e);
        if (!known) throw e;
        return [new GraphQLError(known.message, { extensions: { code: known.code } })];
      }
      // Keep the CSRF decision taken at connection_init for this session.
      auth.csrfOk = auth.kind === 'token' || (request.bastion.auth.csrfOk && auth.sessionToken === request.bastion.auth.sessionToken);
      request.bastion = { auth, transport: 'ws' };
      return base.onSubscribe!(ctx as never, id, payload) as never;
    },
  });

  const handle = (ws: WebSocket<SocketData>, data: SocketData, text: string) => {
    data.onMessage?.(text).catch((err: unknown) => {
      deps.logger.warn({ err }, 'GraphQL WebSocket message failed');
      if (!data.closed) {
        data.closed = true;
        ws.end(CloseCode.InternalServerError, 'Internal error');
      }
    });
  };

  app.ws<SocketData>(path, {
    maxPayloadLength: serv.maxRequestBytes,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    maxBackpressure: MAX_BACKPRESSURE_BYTES,
    closeOnBackpressureLimit: true,
    upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t) {
      const headers: Record<string, string> = {};
      req.forEach((k, v) => {
        headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
      });
      const peer = Buffer.from(res.getRemoteAddressAsText()).toString();
      const credential = readCredential(headers);
      if (credential.kind === 'none' || credential.kind === 'malformed') {
        const code = credential.kind === 'none' ? 'unauthorized' : credential.what === 'authorization' ? 'invalid_token' : 'session_expired';
        writeRefusal(res, 401, code, new BastionError(code).message);
        return;
      }
      if (credential.kind === 'session' && !deps.originAllowed(headers, peer)) {
        writeRefusal(res, 403, 'origin_not_allowed', 'The Origin header does not match this server');
        return;
      }
      // Offer graphql-ws's protocol when the client asked for it; anything
      // else is refused by graphql-ws right after opening (close 4406).
      const offered = (headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter(Boolean);
      const protocol = offered.includes(PROTOCOL) ? PROTOCOL : (offered[0] ?? '');
      // Nobody is signed in until open() has looked the credential up.
      const pending: RequestAuth = { kind: credential.kind, userId: '', username: '', role: 'viewer', csrfOk: false };
      const data: SocketData = { request: { method: 'GET', url: req.getUrl(), headers, bastion: { auth: pending, transport: 'ws' } }, peer, protocol, closed: false, early: [], drainWaiters: [] };
      res.upgrade(data, headers['sec-websocket-key'] ?? '', protocol, headers['sec-websocket-extensions'] ?? '', context);
    },
    open(ws) {
      const data = ws.getUserData();
      sockets.add(ws);
      deps.onConnectionChange?.(1);
      const refuse = (code: number, reason: string) => {
        if (data.closed) return;
        data.closed = true;
        ws.end(code, reason);
      };
      deps.authenticate(data.request.headers, data.peer).then(
        (auth) => {
          if (data.closed) return;
          data.request.bastion = { auth: { ...auth, csrfOk: auth.kind === 'token' }, transport: 'ws' };
          data.onClose = server.opened(
            {
              protocol: data.protocol,
              send: (message) => {
                if (data.closed) return;
                const status = ws.send(message, false);
                // 0: queued behind backpressure; resolve when uWS drains it.
                if (status === 0) return new Promise<void>((resolve) => data.drainWaiters.push(resolve));
              },
              close: refuse,
              onMessage: (cb) => {
                data.onMessage = cb;
              },
            },
            { request: data.request, socket: ws },
          );
          for (const text of data.early.splice(0)) handle(ws, data, text);
        },
        (e: unknown) => {
          const known = toBastionError(e);
          if (!known) deps.logger.error({ err: e }, 'GraphQL WebSocket authentication failed');
          if (known?.status === 401) refuse(CloseCode.Unauthorized, known.code);
          else refuse(CloseCode.InternalServerError, known?.code ?? 'internal_error');
        },
      );
    },
    message(ws, message) {
      const data = ws.getUserData();
      // Copy now: uWS reuses the buffer after this callback.
      const text = Buffer.from(message).toString('utf8');
      if (data.onMessage) handle(ws, data, text);
      else if (data.early.length < MAX_EARLY_MESSAGES) data.early.push(text);
      else if (!data.closed) {
        data.closed = true;
        ws.end(CloseCode.TooManyInitialisationRequests, 'Too many messages before authentication');
      }
    },
    drain(ws) {
      const data = ws.getUserData();
      if (ws.getBufferedAmount() > MAX_BACKPRESSURE_BYTES / 2) return;
      for (const resolve of data.drainWaiters.splice(0)) resolve();
    },
    close(ws, code, message) {
      const data = ws.getUserData();
      data.closed = true;
      sockets.delete(ws);
      deps.onConnectionChange?.(-1);
      for (const resolve of data.drainWaiters.splice(0)) resolve();
      void data.onClose?.(code, Buffer.from(message).toString('utf8')).catch(() => {});
    },
  });

  const recheck = setInterval(() => {
    for (const ws of sockets) {
      const data = ws.getUserData();
      void deps.authenticate(data.request.headers, data.peer).then(
        (auth) => {
          // A role change applies to the next operation.
          data.request.bastion = { auth: { ...auth, csrfOk: data.request.bastion.auth.csrfOk }, transport: 'ws' };
        },
        (e: unknown) => {
          if (data.closed || !toBastionError(e)) return;
          data.closed = true;
          ws.end(CloseCode.Unauthorized, 'Unauthorized');
        },
      );
    }
  }, RECHECK_MS);
  recheck.unref();

  return {
    get size() {
      return sockets.size;
    },
    close() {
      clearInterval(recheck);
      for (const ws of [...sockets]) {
        const data = ws.getUserData();
        if (data.closed) continue;
        data.closed = true;
        ws.end(1001, 'Server shutting down');
      }
    },
  };
}
