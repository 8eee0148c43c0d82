/**
 * The agent's connection to its hub, as a state machine (STYLE.md): the
 * modes are listed once, one private transition function checks where each
 * move comes from, and every move is emitted (`mode` events) so the CLI can
 * print it and tests can wait for it.
 *
 *   idle ──start──▶ connecting ──open──▶ handshaking ──welcome──▶ ready
 *                     ▲   │                   │                      │
 *                     │   └──────failure──────┴────────close─────────┤
 *                     │                       ▼                      ▼
 *                     └────────timer──────  waiting ◀────────────────┘
 *   any ──stop() / key refused (401 at upgrade, close 4401/4403)──▶ stopped
 *
 * Reconnects back off from 1 s to 30 s with jitter (agent/reconnect-backoff.ts)
 * and start again from 1 s after a session that was ready for 10 s. While
 * ready the agent pings every `ping_interval_ms` the welcome names and
 * reconnects when no pong came for three intervals (a half-open TCP
 * connection is otherwise invisible).
 */
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import {
  AGENT_PING_INTERVAL_MS,
  CLOSE_CODES,
  HARD_MAX_FRAME_BYTES,
  decodeFrame,
  encodeFrame,
  type DecodeResult,
  type HubFrame,
  type OutgoingFrame,
} from '../core/agent-protocol.ts';
import { ReconnectBackoff, type BackoffPolicy } from './reconnect-backoff.ts';
import { socketUrl } from './hub-url.ts';

/** The session's modes. */
export const SESSION_MODES = {
  /** Built, not started. */
  idle: 'not started',
  /** Opening the WebSocket (upgrade with the key). */
  connecting: 'opening the socket',
  /** Socket open, hello sent, waiting for welcome. */
  handshaking: 'waiting for the hub to answer hello',
  /** Welcome received: work is delivered and results sent. */
  ready: 'connected',
  /** Disconnected; the next attempt is scheduled. */
  waiting: 'disconnected, waiting to retry',
  /** Stopped for good (stop() or the key was refused). */
  stopped: 'stopped',
} as const;
export type SessionMode = keyof typeof SESSION_MODES;

const ALLOWED_FROM: Record<SessionMode, readonly SessionMode[]> = {
  idle: [],
  connecting: ['idle', 'waiting'],
  handshaking: ['connecting'],
  ready: ['handshaking'],
  waiting: ['connecting', 'handshaking', 'ready'],
  stopped: ['idle', 'connecting', 'handshaking', 'ready', 'waiting'],
};

/** A `mode` event. */
export interface ModeChange {
  from: SessionMode;
  to: SessionMode;
  /** Why (close code and reason, HTTP status, error). */
  reason?: string;
  /** In `waiting`: milliseconds until the next attempt. */
  retryInMs?: number;
  /** In `stopped`: true when the hub refused the key (revoked, rotated, unknown). */
  refused?: boolean;
}

/** The parts of the `ws` client the session uses (the package ships no types). */
interface ClientSocket {
  on(event: 'open', fn: () => void): this;
  on(event: 'message', fn: (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => void): this;
  on(event: 'close', fn: (code: number, reason: Buffer) => void): this;
  on(event: 'error', fn: (err: Error) => void): this;
  on(event: 'unexpected-response', fn: (req: { destroy(): void }, res: NodeJS.ReadableStream & { statusCode?: number }) => void): this;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  readonly readyState: number;
}
type ClientSocketCtor = new (url: string, options: { headers: Record<string, string>; maxPayload: number; handshakeTimeout: number; perMessageDeflate: boolean }) => ClientSocket;
const OPEN = 1;

/** What the session needs. */
export interface AgentSessionOptions {
  hubUrl: string;
  key: string;
  /** The hello frame (version and capabilities). */
  hello: Extract<OutgoingFrame, { type: 'hello' }>;
  backoff?: Partial<BackoffPolicy>;
  random?: () => number;
  /** Give up on a handshake that got no welcome within this long (default 15 s). */
  handshakeTimeoutMs?: number;
}

/**
 * The connection to the hub. Emits `mode` (ModeChange), `frame` (a decoded
 * hub frame other than welcome and pong), `invalid` (a refused hub frame).
 */
export class AgentSession extends EventEmitter {
  readonly #opts: AgentSessionOptions;
  readonly #backoff: ReconnectBackoff;
  #mode: SessionMode = 'idle';
  #ws: ClientSocket | undefined;
  #timer: NodeJS.Timeout | undefined;
  #pingTimer: NodeJS.Timeout | undefined;
  #readyAt: number | null = null;
  #lastPongAt = 0;
  #pingSeq = 0;
  #pingIntervalMs = AGENT_PING_INTERVAL_MS;
  /** Why the current socket ended, set by whoever ends it first. */
  #ending: { reason: string; stop?: boolean; refused?: boolean } | undefined;
  #stopped: Promise<ModeChange>;
  #resolveStopped!: (c: ModeChange) => void;

  constructor(options: AgentSessionOptions) {
    super();
    this.#opts = options;
    this.#backoff = new ReconnectBackoff(options.backoff, options.random);
    this.#stopped = new Promise((resolve) => (this.#resolveStopped = resolve));
  }

  /** The current mode. */
  get mode(): SessionMode {
    return this.#mode;
  }

  /** Resolves with the final change when the session stops. */
  get stopped(): Promise<ModeChange> {
    return this.#stopped;
  }

  /** Connect (and keep reconnecting until stopped). */
  start(): void {
    this.#connect();
  }

  /** Close and stop reconnecting. */
  stop(reason = 'stopped'): Promise<ModeChange> {
    if (this.#mode === 'stopped') return this.#stopped;
    clearTimeout(this.#timer);
    if (this.#ws && this.#mode !== 'waiting') {
      this.#ending = { reason, stop: true };
      this.#ws.close(1000, 'agent stopping');
      // A hub that does not answer the close handshake: do not wait forever.
      const ws = this.#ws;
      setTimeout(() => ws.terminate(), 2000).unref();
    } else {
      this.#to('stopped', { reason });
    }
    return this.#stopped;
  }

  /** Send a frame on the live socket; false when not connected. */
  send(frame: OutgoingFrame): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== OPEN || (this.#mode !== 'ready' && frame.type !== 'hello')) return false;
    ws.send(encodeFrame(frame));
    return true;
  }

  #to(next: SessionMode, info: Omit<ModeChange, 'from' | 'to'> = {}): boolean {
    if (!ALLOWED_FROM[next].includes(this.#mode)) return false;
    const change: ModeChange = { from: this.#mode, to: next, ...info };
    this.#mode = next;
    this.emit('mode', change);
    if (next === 'stopped') this.#resolveStopped(change);
    return true;
  }

  #connect(): void {
    if (!this.#to('connecting')) return;
    this.#ending = undefined;
    const Ctor = WebSocket as unknown as ClientSocketCtor;
    let ws: ClientSocket;
    try {
      ws = new Ctor(socketUrl(this.#opts.hubUrl), {
        headers: { authorization: `Bearer ${this.#opts.key}` },
        maxPayload: HARD_MAX_FRAME_BYTES,
        handshakeTimeout: 10_000,
        perMessageDeflate: false,
      });
    } catch (err) {
      this.#ended(`cannot open the socket: ${(err as Error).message}`);
      return;
    }
    this.#ws = ws;
    ws.on('unexpected-response', (req, res) => {
      const status = res.statusCode ?? 0;
      let body = '';
      res.on('data', (c: Buffer) => {
        if (body.length < 4096) body += c.toString('utf8');
      });
      res.on('end', () => {
        let code = '';
        try {
          code = String((JSON.parse(body) as { error?: unknown }).error ?? '');
        } catch {
          code = '';
        }
        // 401: the key is unknown or the agent revoked — retrying cannot help.
        this.#ending ??= status === 401 ? { reason: `the hub refused this agent's key (${code || 'HTTP 401'})`, stop: true, refused: true } : { reason: `the hub answered HTTP ${status}${code ? ` (${code})` : ''}` };
        req.destroy();
        ws.terminate();
      });
    });
    ws.on('open', () => {
      if (!this.#to('handshaking')) return;
      ws.send(encodeFrame(this.#opts.hello));
      this.#timer = setTimeout(() => {
        this.#ending ??= { reason: 'no welcome from the hub' };
        ws.terminate();
      }, this.#opts.handshakeTimeoutMs ?? 15_000);
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const text = Buffer.isBuffer(data) ? data.toString('utf8') : Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8');
      this.#onText(ws, text);
    });
    ws.on('error', (err) => {
      this.#ending ??= { reason: err.message };
    });
    ws.on('close', (code, reason) => {
      const why = reason.toString('utf8');
      if (code === CLOSE_CODES.revoked || code === CLOSE_CODES.keyRotated) {
        this.#ending = { reason: `the hub closed the connection: ${why || code} — this agent's key is no longer valid`, stop: true, refused: true };
      }
      this.#ending ??= { reason: `connection closed (${code}${why ? ` ${why}` : ''})` };
      this.#ended(this.#ending.reason);
    });
  }

  #onText(ws: ClientSocket, text: string): void {
    const decoded = decodeFrame(text, 'hub');
    if (!decoded.ok) {
      this.emit('invalid', decoded satisfies DecodeResult<HubFrame>);
      return;
    }
    const frame = decoded.frame;
    if (frame.type === 'welcome') {
      clearTimeout(this.#timer);
      this.#pingIntervalMs = frame.ping_interval_ms;
      if (!this.#to('ready')) return;
      this.#readyAt = Date.now();
      this.#lastPongAt = Date.now();
      this.#pingTimer = setInterval(() => {
        if (Date.now() - this.#lastPongAt > 3 * this.#pingIntervalMs) {
          this.#ending ??= { reason: `no pong for ${Math.round((3 * this.#pingIntervalMs) / 1000)} s` };
          ws.terminate();
          return;
        }
        this.send({ type: 'ping', seq: ++this.#pingSeq });
      }, this.#pingIntervalMs);
      this.emit('welcome', frame);
      return;
    }
    if (frame.type === 'pong') {
      this.#lastPongAt = Date.now();
      return;
    }
    this.emit('frame', frame);
  }

  #ended(reason: string): void {
    clearTimeout(this.#timer);
    clearInterval(this.#pingTimer);
    this.#ws = undefined;
    const readyFor = this.#readyAt === null ? null : Date.now() - this.#readyAt;
    this.#readyAt = null;
    const ending = this.#ending;
    this.#ending = undefined;
    if (ending?.stop) {
      this.#to('stopped', { reason: ending.reason, ...(ending.refused ? { refused: true } : {}) });
      return;
    }
    this.#backoff.sessionEnded(readyFor);
    const delay = this.#backoff.next();
    if (!this.#to('waiting', { reason, retryInMs: delay })) return;
    this.#timer = setTimeout(() => this.#connect(), delay);
  }
}
