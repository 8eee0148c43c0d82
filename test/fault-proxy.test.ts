import t from 'tap';
import http from 'node:http';
import { once } from 'node:events';
import { startFaultProxy } from './fault-proxy.ts';
import type { TeardownHost } from './webdav-server.ts';

/** A real upstream: echoes method, raw path and body length as JSON. */
async function startEcho(t: TeardownHost): Promise<{ url: string; hits: () => number }> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, url: req.url, bytes: n, host: req.headers.host });
      res.writeHead(201, { 'content-type': 'application/json', 'x-upstream': 'yes' });
      res.end(body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  return { url: `http://127.0.0.1:${addr.port}/base/`, hits: () => hits };
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(url: string, opts: { method?: string; body?: string; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('response aborted')));
    });
    if (opts.timeoutMs !== undefined) req.setTimeout(opts.timeoutMs, () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

t.test('passes requests through and records them without the credential', async (t) => {
  const up = await startEcho(t);
  const proxy = await startFaultProxy(t, up.url);
  t.match(proxy.url, /^http:\/\/127\.0\.0\.1:\d+\/base\/$/);
  const r = await request(proxy.url + 'a%20b/c', { method: 'PUT', body: 'hello', headers: { authorization: 'Basic c2VjcmV0OnNlY3JldA==' } });
  t.equal(r.status, 201);
  t.equal(r.headers['x-upstream'], 'yes');
  const echoed = JSON.parse(r.body) as { method: string; url: string; bytes: number; host: string };
  t.same({ method: echoed.method, url: echoed.url, bytes: echoed.bytes }, { method: 'PUT', url: '/base/a%20b/c', bytes: 5 });
  t.equal(echoed.host, new URL(up.url).host, 'Host rewritten to the upstream');
  t.equal(proxy.requests.length, 1);
  const rec = proxy.requests[0]!;
  t.equal(rec.method, 'PUT');
  t.equal(rec.path, '/base/a b/c');
  t.equal(rec.rawPath, '/base/a%20b/c');
  t.equal(rec.handling, 'pass');
  t.equal(rec.status, 201);
  t.equal(rec.bodyBytes, 5);
  t.equal(rec.headers.authorization, 'Basic [redacted]');
  t.notMatch(JSON.stringify(proxy.requests), /c2VjcmV0/);
});

t.test('status faults: matched by method and path, the next N times, with headers', async (t) => {
  const up = await startEcho(t);
  const proxy = await startFaultProxy(t, up.url);
  proxy.inject({ method: 'put', path: /\/x$/, times: 2, action: { kind: 'status', status: 429, headers: { 'retry-after': '3' } } });
  const a = await request(proxy.url + 'x', { method: 'PUT', body: 'abc' });
  t.equal(a.status, 429);
  t.equal(a.headers['retry-after'], '3');
  t.equal((await request(proxy.url + 'x', { method: 'GET' })).status, 201, 'other method passes');
  t.equal((await request(proxy.url + 'y', { method: 'PUT' })).status, 201, 'other path passes');
  t.equal((await request(proxy.url + 'x', { method: 'PUT' })).status, 429);
  t.equal((await request(proxy.url + 'x', { method: 'PUT' })).status, 201, 'used up after 2');
  t.equal(up.hits(), 3, 'faulted requests never reached the upstream');
  t.same(proxy.requests.map((r) => [r.method, r.handling, r.status]), [
    ['PUT', 'status', 429],
    ['GET', 'pass', 201],
    ['PUT', 'pass', 201],
    ['PUT', 'status', 429],
    ['PUT', 'pass', 201],
  ]);
  t.equal(proxy.requests[0]!.bodyBytes, 3, 'body of a faulted request is read and counted');
});

t.test('every status the WebDAV tests use can be injected; rules without times apply always', async (t) => {
  const up = await startEcho(t);
  const proxy = await startFaultProxy(t, up.url);
  const statuses = [401, 403, 404, 405, 409, 423, 429, 500, 501, 503, 507];
  for (const s of statuses) proxy.inject({ path: `/base/s${s}`, action: { kind: 'status', status: s } });
  for (const s of statuses) {
    t.equal((await request(proxy.url + `s${s}`)).status, s);
    t.equal((await request(proxy.url + `s${s}`)).status, s, 'still applies');
  }
  proxy.clearRules();
  t.equal((await request(proxy.url + 's401')).status, 201, 'cleared');
  proxy.clearRequests();
  t.equal(proxy.requests.length, 0);
});

t.test('drop before headers: the client sees a connection error', async (t) => {
  const up = await startEcho(t);
  const proxy = await startFaultProxy(t, up.url);
  proxy.inject({ times: 1, action: { kind: 'drop', when: 'before-headers' } });
  await t.rejects(request(proxy.url + 'z'), { code: 'ECONNRESET' });
  t.equal((await request(proxy.url + 'z')).status, 201);
});

t.test('drop after headers: a 200 head arrives, then the body is cut', async (t) => {
  const up = await startEcho(t);
  const proxy = await startFaultProxy(t, up.url);
  proxy.inject({ times: 1, action: { kind: 'drop', when: 'after-headers' } });
  let sawHead = false;
  const err = await new Promise<Error>((resolve) => {
    const req = http.request(proxy.url + 'z', { agent: false }, (res) => {
      sawHead = res.statusCode === 200;
      res.resume();
      res.on('end', () => resolve(new Error('unexpected clean end')));
      res.on('error', resolve);
      res.on('aborted', () => resolve(new Error('aborted')));
    });
    req.on('error', resolve);
    req.end();
  });
  t.ok(sawHead, 'headers were received');
  t.not(err.message, 'unexpected clean end');
});

t.test('hang never answers (the client times out) and close() frees it', async (t) => {
  const up = await startEcho(t);
  const proxy = await startFaultProxy(t, up.url);
  proxy.inject({ action: { kind: 'hang' } });
  await t.rejects(request(proxy.url + 'h', { timeoutMs: 300 }), { message: 'client timeout' });
  const pending = request(proxy.url + 'h');
  // wait until the proxy has seen the second request, then close it under the client
  while (proxy.requests.length < 2) await new Promise((r) => setTimeout(r, 10));
  await proxy.close();
  await t.rejects(pending);
  t.equal(up.hits(), 0);
});

t.test('delay holds a request, then passes it through', async (t) => {
  const up = await startEcho(t);
  const proxy = await startFaultProxy(t, up.url);
  proxy.inject({ method: 'POST', action: { kind: 'delay', ms: 200 } });
  const t0 = performance.now();
  const r = await request(proxy.url + 'd', { method: 'POST', body: 'x'.repeat(1000) });
  t.equal(r.status, 201);
  t.equal((JSON.parse(r.body) as { bytes: number }).bytes, 1000, 'body intact after the delay');
  t.ok(performance.now() - t0 >= 190, 'the delay happened');
  t.equal(proxy.requests[0]?.handling, 'delay');
});

t.test('upstream down: pass-through answers 502', async (t) => {
  const proxy = await startFaultProxy(t, 'http://127.0.0.1:1/');
  const r = await request(proxy.url + 'q');
  t.equal(r.status, 502);
  t.equal(proxy.requests[0]?.status, 502);
});
