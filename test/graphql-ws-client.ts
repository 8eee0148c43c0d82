/**
 * graphql-ws clients for the subscription tests: a client that signs in like
 * an ApiClient (cookie or bearer, optionally from an Origin), a collector
 * whose next() waits for the next result, and listening(), which waits until
 * the server LISTENs on a topic. PostGraphile LISTENs only after the
 * subscribe message is handled; listening() sends probe notifications until
 * one comes back, and the collector counts probes instead of delivering them,
 * so a late probe is never mistaken for the change a test waits for.
 */
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import type { Api, ApiClient } from './api-harness.ts';

/** A graphql-ws client authenticating like `who` (cookie or bearer), optionally from an Origin. */
export function wsClient(t: { teardown(fn: () => unknown): void }, api: Api, who: ApiClient, options: { origin?: string; connectionParams?: Record<string, unknown> } = {}): Client {
  const headers: Record<string, string> = {};
  if (who.cookie) headers.cookie = who.cookie;
  if (who.token) headers.authorization = `Bearer ${who.token}`;
  if (options.origin) headers.origin = options.origin;
  class AuthWebSocket extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols, { headers });
    }
  }
  const client = createClient({ url: `${api.base.replace('http', 'ws')}/graphql`, webSocketImpl: AuthWebSocket, retryAttempts: 0, lazy: false, ...(options.connectionParams ? { connectionParams: options.connectionParams } : {}) });
  t.teardown(() => client.dispose());
  return client;
}

/** Subscribe and collect results; `next()` waits (up to `timeoutMs`) for the next one. */
export function collect(client: Client, query: string, variables: Record<string, unknown> = {}) {
  const queue: unknown[] = [];
  const waiters: Array<(v: unknown) => void> = [];
  let failure: unknown;
  let probes = 0;
  const dispose = client.subscribe(
    { query, variables },
    {
      next: (v) => {
        // listening()'s probes are counted, never delivered: a late one must not
        // stand in for the change a test waits for.
        if (Object.values(v.data ?? {}).some((x) => (x as { op?: unknown } | null)?.op === LISTEN_PROBE)) probes++;
        else (waiters.shift() ?? ((x: unknown) => queue.push(x)))(v);
      },
      error: (e) => {
        failure = e;
        for (const w of waiters.splice(0)) w({ failure: e });
      },
      complete: () => {},
    },
  );
  return {
    dispose,
    probes: () => probes,
    failure: () => failure,
    next(timeoutMs = 10_000): Promise<any> {
      if (queue.length) return Promise.resolve(queue.shift());
      if (failure) return Promise.resolve({ failure });
      return new Promise((resolve, reject) => {
        const waiter = (v: unknown) => {
          clearTimeout(timer);
          resolve(v);
        };
        const timer = setTimeout(() => {
          // A late result must not go to a waiter nobody awaits any more.
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`no subscription result within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.push(waiter);
      });
    },
  };
}

/** `table` and `op` of listening()'s probe notifications. */
const LISTEN_PROBE = 'listen-probe';

/** Wait until the server LISTENs on `channel`: send probes (with `probe`'s fields) until one comes back. */
export async function listening(api: Api, sub: ReturnType<typeof collect>, channel: string, probe: Record<string, unknown>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (sub.failure()) throw new Error(`the subscription failed: ${JSON.stringify(sub.failure())}`);
    await api.pool.query('select pg_notify($1, $2)', [channel, JSON.stringify({ ...probe, table: LISTEN_PROBE, op: LISTEN_PROBE })]);
    await new Promise((r) => setTimeout(r, 50));
    if (sub.probes() > 0) return;
  }
  throw new Error(`nobody listens on ${channel}`);
}

/** What collect() returns. */
export type Collector = ReturnType<typeof collect>;
