import http from 'node:http';
import { pino } from 'pino';
import t from 'tap';
import { App, us_listen_socket_close, us_socket_local_port, type us_listen_socket, type us_socket } from 'uWebSockets.js';
import { BastionError } from '../core/errors.ts';
import { testDatabase } from '../test/db.ts';
import { json, Router } from './http-adapter.ts';

async function serve(t: { teardown(fn: () => unknown): void }, build: (r: Router) => void): Promise<string> {
  const app = App();
  const router = new Router(pino({ level: 'silent' }));
  build(router);
  router.mount(app);
  const socket = await new Promise<us_listen_socket>((resolve, reject) => app.listen('127.0.0.1', 0, (s: us_listen_socket | false) => (s ? resolve(s) : reject(new Error('listen')))));
  t.teardown(() => {
    us_listen_socket_close(socket);
    app.close();
  });
  return `http://127.0.0.1:${us_socket_local_port(socket as unknown as us_socket)}`;
}

t.test('params, query, headers and body reach the handler', async (t) => {
  const base = await serve(t, (r) =>
    r.post('/things/:id/sub/:name', (req) => json(200, { method: req.method, params: req.params, q: req.query.getAll('s'), h: req.headers['x-test'], body: req.body.toString() })),
  );
  const res = await fetch(`${base}/things/a%20b/sub/%E2%9C%93?s=1&s=2`, { method: 'POST', headers: { 'x-test': 'yes' }, body: 'hello' });
  t.equal(res.status, 200);
  t.same(await res.json(), { method: 'POST', params: { id: 'a b', name: '✓' }, q: ['1', '2'], h: 'yes', body: 'hello' });
});

t.test('unknown routes get a JSON 404', async (t) => {
  const base = await serve(t, () => {});
  const res = await fetch(`${base}/nope`);
  t.equal(res.status, 404);
  t.same(await res.json(), { error: 'not_found', message: 'No such route' });
});

t.test('bodies over the limit get 413, declared or streamed', async (t) => {
  const base = await serve(t, (r) => r.post('/small', (req) => json(200, { n: req.body.length }), { maxBodyBytes: 1000 }));
  const ok = await fetch(`${base}/small`, { method: 'POST', body: 'x'.repeat(1000) });
  t.same(await ok.json(), { n: 1000 });
  const declared = await fetch(`${base}/small`, { method: 'POST', body: 'x'.repeat(1001) });
  t.equal(declared.status, 413);
  t.equal(((await declared.json()) as { error: string }).error, 'payload_too_large');
  // Chunked: no content-length, the limit is found while reading.
  const streamed = await new Promise<number>((resolve, reject) => {
    const req = http.request(`${base}/small`, { method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    for (let i = 0; i < 10; i++) req.write('y'.repeat(500));
    req.end();
  });
  t.equal(streamed, 413);
  const after = await fetch(`${base}/small`, { method: 'POST', body: 'z' });
  t.same(await after.json(), { n: 1 }, 'server keeps serving');
});

t.test('errors: Bastion errors are shown, SQL domain errors are mapped, anything else is masked', async (t) => {
  const { pool } = await testDatabase(t);
  const base = await serve(t, (r) => {
    r.get('/bastion', () => {
      throw new BastionError('invalid_input', 'limit must be at most 200', { details: { field: 'limit' } });
    });
    r.get('/sql', async () => {
      await pool.query(`select bastion_private.raise_error('invalid_input', 400, 'cursor is malformed', '{"field":"cursor","reason":"invalid_encoding"}')`);
      return json(200, {});
    });
    r.get('/forbidden', async () => {
      const c = await pool.connect();
      try {
        await c.query('begin');
        await c.query('set local role bastion_viewer');
        await c.query('select bastion.prune_run_history(1)');
        return json(200, {});
      } finally {
        await c.query('rollback');
        c.release();
      }
    });
    r.get('/boom', () => {
      throw new Error('secret internal detail at postgres://u:pw@db/x');
    });
  });
  const a = await fetch(`${base}/bastion`);
  t.equal(a.status, 400);
  t.same(await a.json(), { error: 'invalid_input', message: 'limit must be at most 200', details: { field: 'limit' } });
  const b = await fetch(`${base}/sql`);
  t.equal(b.status, 400);
  t.same(await b.json(), { error: 'invalid_input', message: 'cursor is malformed', details: { field: 'cursor', reason: 'invalid_encoding' } });
  const f = await fetch(`${base}/forbidden`);
  t.equal(f.status, 403);
  t.equal(((await f.json()) as { error: string }).error, 'forbidden');
  const c = await fetch(`${base}/boom`);
  t.equal(c.status, 500);
  const body = (await c.json()) as { error: string; message: string; details: { error_id: string } };
  t.equal(body.error, 'internal_error');
  t.notMatch(JSON.stringify(body), /secret|pw/);
  t.match(body.details.error_id, /^[0-9a-f-]{36}$/);
});

t.test('a client that goes away mid-request does not break the server', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let sawAbort = false;
  const base = await serve(t, (r) => {
    r.get('/slow', async (req) => {
      await gate;
      sawAbort = req.signal.aborted;
      return json(200, { late: true });
    });
    r.get('/fast', () => json(200, { ok: true }));
  });
  const ac = new AbortController();
  const pending = fetch(`${base}/slow`, { signal: ac.signal }).catch((e: Error) => e.name);
  await new Promise((r) => setTimeout(r, 100));
  ac.abort();
  t.equal(await pending, 'AbortError');
  await new Promise((r) => setTimeout(r, 50));
  release();
  await new Promise((r) => setTimeout(r, 50));
  t.ok(sawAbort, 'the handler saw the abort signal');
  const res = await fetch(`${base}/fast`);
  t.same(await res.json(), { ok: true });
});
