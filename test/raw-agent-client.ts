/**
 * A bare WebSocket client on /agent/ws for protocol tests and the benchmark:
 * it sends whatever it is told (valid frames, garbage, oversized frames) and
 * records every frame and the close, so tests can see exactly what the hub
 * answers. Not an agent: it executes nothing unless a test does.
 */
import WebSocket from 'ws';
import { encodeFrame, type HubFrame, type OutgoingFrame } from '../core/agent-protocol.ts';

interface ClientSocket {
  on(event: 'open', fn: () => void): this;
  on(event: 'message', fn: (data: Buffer, isBinary: boolean) => void): this;
  on(event: 'close', fn: (code: number, reason: Buffer) => void): this;
  on(event: 'error', fn: (err: Error) => void): this;
  on(event: 'unexpected-response', fn: (req: { destroy(): void }, res: NodeJS.ReadableStream & { statusCode?: number }) => void): this;
  send(data: string | Buffer, cb?: (err?: Error) => void): void;
  close(code?: number): void;
  terminate(): void;
  readonly readyState: number;
}
type Ctor = new (url: string, options: { headers: Record<string, string>; maxPayload?: number; perMessageDeflate?: boolean }) => ClientSocket;

/** A connected raw client. */
export interface RawAgent {
  /** Every frame received (parsed JSON; unparsable ones as {raw}). */
  received: Array<HubFrame | { raw: string }>;
  closed: Promise<{ code: number; reason: string }>;
  isOpen(): boolean;
  send(frame: OutgoingFrame | Record<string, unknown>): void;
  sendText(text: string | Buffer): void;
  /** Resolves with the first received frame (already or later) matching. */
  next<F extends HubFrame['type']>(type: F, match?: (f: Extract<HubFrame, { type: F }>) => boolean, ms?: number): Promise<Extract<HubFrame, { type: F }>>;
  close(): void;
}

/** Outcome of an upgrade that was refused. */
export interface Refused {
  status: number;
  body: { error?: string; message?: string };
}

/** Open /agent/ws with `headers`; resolves with the client, or with the HTTP refusal. */
export function connectRaw(hubUrl: string, headers: Record<string, string>): Promise<RawAgent | Refused> {
  const url = `${hubUrl.replace(/^http/, 'ws')}/agent/ws`;
  const ws = new (WebSocket as unknown as Ctor)(url, { headers, maxPayload: 64 * 1024 * 1024, perMessageDeflate: false });
  const received: RawAgent['received'] = [];
  const listeners = new Set<() => void>();
  let resolveClosed!: (c: { code: number; reason: string }) => void;
  const closed = new Promise<{ code: number; reason: string }>((r) => (resolveClosed = r));
  return new Promise((resolve, reject) => {
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => {
        req.destroy();
        let parsed: Refused['body'] = {};
        try {
          parsed = JSON.parse(body) as Refused['body'];
        } catch {
          parsed = {};
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    ws.on('error', (err) => reject(err));
    ws.on('message', (data) => {
      const text = data.toString('utf8');
      try {
        received.push(JSON.parse(text) as HubFrame);
      } catch {
        received.push({ raw: text });
      }
      for (const l of [...listeners]) l();
    });
    ws.on('close', (code, reason) => {
      resolveClosed({ code, reason: reason.toString('utf8') });
      for (const l of [...listeners]) l();
    });
    ws.on('open', () => {
      const client: RawAgent = {
        received,
        closed,
        isOpen: () => ws.readyState === 1,
        send: (frame) => ws.send('v' in frame ? JSON.stringify(frame) : encodeFrame(frame as OutgoingFrame)),
        sendText: (text) => ws.send(text),
        close: () => ws.close(1000),
        next: (type, match, ms = 15_000) =>
          new Promise((res, rej) => {
            const find = () => received.find((f) => 'type' in f && f.type === type && (!match || match(f as never))) as never;
            const hit = find();
            if (hit) return res(hit);
            const timer = setTimeout(() => {
              listeners.delete(check);
              rej(new Error(`no ${type} frame within ${ms} ms; got ${JSON.stringify(received.slice(-5))}`));
            }, ms);
            const check = () => {
              const f = find();
              if (f) {
                clearTimeout(timer);
                listeners.delete(check);
                res(f);
              }
            };
            listeners.add(check);
          }),
      };
      resolve(client);
    });
  });
}

/** Connect with a key and say hello; resolves once welcomed. */
export async function helloRaw(hubUrl: string, key: string): Promise<RawAgent> {
  const c = await connectRaw(hubUrl, { authorization: `Bearer ${key}` });
  if (!('send' in c)) throw new Error(`refused: ${c.status} ${c.body.error}`);
  c.send({ type: 'hello', version: 'raw', capabilities: { kinds: ['snapshot_delete'], targets: ['local_dir'], formats: ['archive_v1'] } });
  const r = await Promise.race([c.next('welcome').then(() => 'welcome' as const), c.closed.then((x) => x)]);
  if (r !== 'welcome') throw new Error(`closed before welcome: ${r.code} ${r.reason}`);
  return c;
}
