/**
 * A programmable HTTP proxy that sits in front of a real server (usually the
 * WebDAV test server) and injects the faults real servers will not produce on
 * demand: an answer with a given status (401, 423, 429 + Retry-After, 503, 507,
 * …), a dropped connection before or after the response headers, a request
 * that is never answered, a delay. Everything else passes through untouched.
 *
 * Rules are checked in the order they were added; the first rule that matches
 * the method and path and still has uses left applies, once per request.
 * Every request is recorded (method, raw and decoded path, headers with the
 * Authorization value replaced, arrival time, what the proxy did, the status
 * sent back) so tests can assert what a client sent, in which order and how
 * long it waited between attempts.
 *
 *   const proxy = await startFaultProxy(t, dav.url);
 *   proxy.inject({ method: 'PUT', path: /part1$/, times: 1, action: { kind: 'status', status: 429, headers: { 'retry-after': '1' } } });
 *   … client on proxy.url …
 *   t.same(proxy.requests.map((r) => r.method), ['PUT', 'PUT']);
 */
import http from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { TeardownHost } from './webdav-server.ts';

/** What the proxy does with a matching request. */
export type FaultAction =
  /** Answer with this status (after reading the request body), optional headers and body. */
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string }
  /** Destroy the connection: as soon as the request head arrives, or after sending a 200 head and part of a body. */
  | { kind: 'drop'; when: 'before-headers' | 'after-headers' }
  /** Never answer (until the proxy closes). */
  | { kind: 'hang' }
  /** Wait, then pass through. */
  | { kind: 'delay'; ms: number };

/** A fault to inject. */
export interface FaultRule {
  /** HTTP method (case-insensitive); any when absent. */
  method?: string;
  /** Decoded URL path (`/job/run/a b`): exact string, or a RegExp tested against it; any when absent. */
  path?: string | RegExp;
  /** How many matching requests this rule handles; always when absent. */
  times?: number;
  action: FaultAction;
}

/** One request as the proxy saw it. */
export interface RecordedRequest {
  /** 1-based arrival order. */
  seq: number;
  method: string;
  /** Raw request target as sent (percent-encoded). */
  rawPath: string;
  /** Decoded path (query dropped); the raw path when it does not decode. */
  path: string;
  /** Request headers; `authorization` reduced to its scheme (`Basic [redacted]`). */
  headers: IncomingHttpHeaders;
  /** performance.now() at arrival, in ms. */
  at: number;
  /** What the proxy did. */
  handling: 'pass' | FaultAction['kind'];
  /** Status sent back (pass-through: the upstream's), once known. */
  status?: number;
  /** Request body bytes received. */
  bodyBytes: number;
}

/** A running proxy. */
export interface FaultProxy {
  /** The proxy's base URL: same path as the target URL, the proxy's host and port. */
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Add a rule (after existing ones). Returns the rule, whose `times` counts down. */
  inject(rule: FaultRule): FaultRule;
  /** Remove every rule. */
  clearRules(): void;
  /** Forget recorded requests. */
  clearRequests(): void;
  /** Close the proxy and every open connection, hung ones included. Idempotent. */
  close(): Promise<void>;
}

function decodePath(raw: string): string {
  const p = raw.split('?')[0] ?? raw;
  try {
    return decodeURIComponent(p);
  } catch {
    return p;
  }
}

function redactHeaders(h: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = { ...h };
  if (typeof out.authorization === 'string') out.authorization = `${out.authorization.split(' ')[0] ?? ''} [redacted]`;
  return out;
}

function matches(rule: FaultRule, method: string, path: string): boolean {
  if ((rule.times ?? Infinity) <= 0) return false;
  if (rule.method !== undefined && rule.method.toUpperCase() !== method.toUpperCase()) return false;
  if (rule.path === undefined) return true;
  return typeof rule.path === 'string' ? rule.path === path : rule.path.test(path);
}

/** Start a proxy in front of `targetUrl` (http only) on 127.0.0.1, port chosen by the OS; closed at teardown. */
export async function startFaultProxy(t: TeardownHost, targetUrl: string): Promise<FaultProxy> {
  const target = new URL(targetUrl);
  if (target.protocol !== 'http:') throw new Error('fault proxy: only http targets');
  const rules: FaultRule[] = [];
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const upstreamAgent = new http.Agent({ keepAlive: true });
  let seq = 0;

  const passThrough = (req: IncomingMessage, res: ServerResponse, rec: RecordedRequest) => {
    const up = http.request({
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: { ...req.headers, host: target.host },
      agent: upstreamAgent,
    });
    up.on('response', (upRes) => {
      rec.status = upRes.statusCode;
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, upRes.headers);
      upRes.pipe(res);
      upRes.on('error', () => res.destroy());
    });
    up.on('error', () => {
      if (!res.headersSent) {
        rec.status = 502;
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end('fault proxy: upstream failed');
      } else res.destroy();
    });
    req.pipe(up);
    req.on('error', () => up.destroy());
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
  };

  const server = http.createServer((req, res) => {
    const method = req.method ?? 'GET';
    const rawPath = req.url ?? '/';
    const path = decodePath(rawPath);
    const rule = rules.find((r) => matches(r, method, path));
    if (rule !== undefined && rule.times !== undefined) rule.times -= 1;
    const action = rule?.action;
    const rec: RecordedRequest = {
      seq: ++seq,
      method,
      rawPath,
      path,
      headers: redactHeaders(req.headers),
      at: performance.now(),
      handling: action?.kind ?? 'pass',
      bodyBytes: 0,
    };
    requests.push(rec);
    req.on('data', (c: Buffer) => {
      rec.bodyBytes += c.length;
    });

    if (action === undefined) return passThrough(req, res, rec);
    switch (action.kind) {
      case 'status': {
        req.resume();
        req.on('end', () => {
          rec.status = action.status;
          const body = action.body ?? `fault proxy: injected ${action.status}\n`;
          res.writeHead(action.status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), ...action.headers });
          res.end(method === 'HEAD' ? undefined : body);
        });
        return;
      }
      case 'drop': {
        if (action.when === 'before-headers') {
          req.socket.destroy();
          return;
        }
        req.resume();
        req.on('end', () => {
          rec.status = 200;
          // Promise a body, send a little of it, then cut the connection.
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '1048576' });
          res.write(Buffer.alloc(16, 0x61), () => setTimeout(() => req.socket.destroy(), 20));
        });
        return;
      }
      case 'hang':
        req.resume();
        return;
      case 'delay':
        req.pause();
        setTimeout(() => passThrough(req, res, rec), action.ms);
        return;
    }
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('fault proxy: no TCP address');

  let closing: Promise<void> | undefined;
  const proxy: FaultProxy = {
    url: `http://127.0.0.1:${addr.port}${target.pathname}`,
    requests,
    inject(rule) {
      rules.push(rule);
      return rule;
    },
    clearRules() {
      rules.length = 0;
    },
    clearRequests() {
      requests.length = 0;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
        upstreamAgent.destroy();
      });
      return closing;
    },
  };
  t.teardown(() => proxy.close());
  return proxy;
}
