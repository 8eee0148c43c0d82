/**
 * The uWS adapter on its own (a small grafast schema, no database): request
 * bodies and their limit, authentication before grafserv, grafserv's result
 * kinds including a streamed one (the event stream), and a client that goes
 * away in the middle of a stream.
 */
import { pino } from 'pino';
import t from 'tap';
import { App, us_listen_socket_close, us_socket_local_port, type us_listen_socket, type us_socket } from 'uWebSockets.js';
import { constant, makeGrafastSchema } from 'postgraphile/grafast';
import { BastionError } from '../core/errors.ts';
import { UwsGrafserv } from './grafserv-uws.ts';

async function start(t: { teardown(fn: () => unknown): void }) {
  const schema = makeGrafastSchema({ typeDefs: 'type Query { hello: String }', objects: { Query: { plans: { hello: () => constant('world') } } } });
  const seen: Array<{ status: number }> = [];
  const serv = new UwsGrafserv(
    { schema, preset: { grafserv: { graphqlPath: '/graphql', watch: true, eventStreamPath: '/graphql/stream', maxRequestLength: 1000, graphiql: false } } },
    {
      logger: pino({ level: 'silent' }),
      authenticate: async (headers) => {
        if (headers.authorization !== 'Bearer ok') throw new BastionError('unauthorized');
        return { auth: { kind: 'token', userId: '00000000-0000-4000-8000-000000000000', username: 'u', role: 'viewer', csrfOk: true } };
      },
      isSecure: () => false,
      onResponse: (r) => seen.push(r),
    },
  );
  await serv.ready();
  const app = App();
  app.any('/*', (res, req) => serv.handle(res, req));
  const socket = await new Promise<us_listen_socket>((resolve, reject) => app.listen('127.0.0.1', 0, (s: us_listen_socket | false) => (s ? resolve(s) : reject(new Error('listen')))));
  t.teardown(async () => {
    us_listen_socket_close(socket);
    app.close();
    await serv.release();
  });
  return { base: `http://127.0.0.1:${us_socket_local_port(socket as unknown as us_socket)}`, seen, serv };
}

const auth = { authorization: 'Bearer ok' };

t.test('queries, limits, authentication, not found', async (t) => {
  const { base, seen } = await start(t);
  const post = (body: string, headers: Record<string, string> = {}) => fetch(`${base}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth, ...headers }, body });
  const ok = await post(JSON.stringify({ query: '{ hello }' }));
  t.equal(ok.status, 200);
  t.same(await ok.json(), { data: { hello: 'world' } });
  t.equal(ok.headers.get('content-length'), String(JSON.stringify({ data: { hello: 'world' } }).length), 'one Content-Length, from uWS');
  const big = await post(JSON.stringify({ query: `{ hello } # ${'x'.repeat(2000)}` }));
  t.equal(big.status, 413);
  t.match(await big.json(), { errors: [{ extensions: { code: 'payload_too_large' } }] });
  const streamed = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth },
    body: new ReadableStream({
      start(c) {
        for (let i = 0; i < 5; i++) c.enqueue(new TextEncoder().encode(' '.repeat(300)));
        c.close();
      },
    }),
    duplex: 'half',
  } as RequestInit);
  t.equal(streamed.status, 413, 'chunked bodies are counted too');
  const anon = await post(JSON.stringify({ query: '{ hello }' }), { authorization: 'Bearer nope' });
  t.equal(anon.status, 401);
  t.match(await anon.json(), { errors: [{ extensions: { code: 'unauthorized' } }] });
  const invalid = await post(JSON.stringify({ query: '{ nope }' }), { accept: 'application/graphql-response+json' });
  t.equal(invalid.status, 400);
  t.match(await invalid.json(), { errors: [{ message: /Cannot query field/, extensions: { code: 'invalid_query' } }] }, 'validation errors gain a code');
  const missing = await fetch(`${base}/elsewhere`, { headers: auth });
  t.equal(missing.status, 404);
  t.match(await missing.json(), { errors: [{ extensions: { code: 'not_found' } }] });
  t.ok(seen.some((s) => s.status === 413) && seen.some((s) => s.status === 200), 'responses observed for metrics');
});

t.test('a streamed result starts, and a client leaving mid-stream is cleaned up', async (t) => {
  const { base, serv } = await start(t);
  const controller = new AbortController();
  const res = await fetch(`${base}/graphql/stream`, { headers: { ...auth, accept: 'text/event-stream' }, signal: controller.signal });
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
  t.equal(res.headers.get('transfer-encoding'), 'chunked', 'chunked by uWS, one header');
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const first = await reader.read();
  t.match(new TextDecoder().decode(first.value), /event: open/);
  t.equal(serv.inFlight, 1, 'the stream is in flight');
  controller.abort();
  await reader.cancel().catch(() => {});
  for (let i = 0; i < 200 && serv.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(serv.inFlight, 0, 'the iterator was stopped when the client left');
  const after = await fetch(`${base}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ query: '{ hello }' }) });
  t.equal(after.status, 200, 'still serving');
});
