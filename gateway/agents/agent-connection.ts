/**
 * One agent socket on this gateway, as the hub sees it: identity, the
 * connection state, the invalid-frame budget, and a serial queue so the
 * frames of one agent are handled in the order they arrived (an attempt's
 * `start` event is recorded before its result) while different agents
 * proceed in parallel.
 *
 * States (one transition function, {@link AgentConnection.to}):
 *   connecting  the socket is open; the database does not know it yet
 *   open        registered as the agent's live socket; waiting for hello
 *   ready       hello answered with welcome; work is delivered
 *   closed      gone (closed by either side); nothing is sent any more
 */
import type { WebSocket } from 'uWebSockets.js';
import { encodeFrame, InvalidFrameBudget, type OutgoingFrame } from '../../core/agent-protocol.ts';

/** Connection states, in order. */
export type ConnectionState = 'connecting' | 'open' | 'ready' | 'closed';

const ALLOWED_FROM: Record<ConnectionState, readonly ConnectionState[]> = {
  connecting: [],
  open: ['connecting'],
  ready: ['open'],
  closed: ['connecting', 'open', 'ready'],
};

/** What the uWS socket carries as user data. */
export interface SocketData {
  /** The bearer key from the upgrade, looked up after open. */
  agentKey: string;
  peer: string;
  /** Set once the key checked out. */
  conn?: AgentConnection;
  /** Frames received before that (handled in order once it has). */
  early: Array<string | null>;
  /** The socket is closed or closing. */
  closed: boolean;
}

/** A connected agent. */
export class AgentConnection {
  readonly agentId: string;
  readonly name: string;
  /** Id of this socket (agents.connected_session). */
  readonly sessionId: string;
  readonly peer: string;
  readonly openedAt = Date.now();
  readonly budget = new InvalidFrameBudget();
  #state: ConnectionState = 'connecting';
  #ws: WebSocket<SocketData> | undefined;
  #queue: Promise<void> = Promise.resolve();
  #pending = 0;
  #drainWaiters: Array<() => void> = [];
  /** Last frame received (the hub heartbeats the agent's work while it reports). */
  lastFrameAt = Date.now();
  /** Set while a delivery loop runs; a second request sets {@link deliverAgain}. */
  delivering = false;
  deliverAgain = false;
  /** Close code and reason once closed. */
  closeInfo: { code: number; reason: string; byHub: boolean } | undefined;

  constructor(init: { agentId: string; name: string; sessionId: string; peer: string }) {
    this.agentId = init.agentId;
    this.name = init.name;
    this.sessionId = init.sessionId;
    this.peer = init.peer;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Move to `next`; false (and nothing changes) when the move is not allowed from the current state. */
  to(next: ConnectionState): boolean {
    if (!ALLOWED_FROM[next].includes(this.#state)) return false;
    this.#state = next;
    return true;
  }

  /** Attach the uWS socket (in `open`). */
  attach(ws: WebSocket<SocketData>): void {
    this.#ws = ws;
  }

  /**
   * Queue `fn` after the agent's earlier frames; false when more than `limit`
   * are waiting (the caller closes the socket). `fn` handles its own errors;
   * one that escapes is swallowed here so later frames still run.
   */
  enqueue(fn: () => Promise<void>, limit: number): boolean {
    if (this.#pending >= limit) return false;
    this.#pending++;
    this.#queue = this.#queue
      .then(fn)
      .catch(() => {})
      .finally(() => {
        this.#pending--;
      });
    return true;
  }

  /** Resolves when everything queued so far has run. */
  idle(): Promise<void> {
    return this.#queue;
  }

  /** Send one frame; false when the socket is closed. */
  send(frame: OutgoingFrame): boolean {
    if (this.#state === 'closed' || !this.#ws) return false;
    const ws = this.#ws;
    ws.cork(() => ws.send(encodeFrame(frame), false));
    return true;
  }

  /** Bytes queued in uWS for this socket (backpressure). */
  bufferedAmount(): number {
    if (this.#state === 'closed' || !this.#ws) return 0;
    return this.#ws.getBufferedAmount();
  }

  /** Resolves when uWS drained the socket (or it closed). */
  waitForDrain(): Promise<void> {
    if (this.#state === 'closed') return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** uWS says the socket drained. */
  drained(): void {
    for (const resolve of this.#drainWaiters.splice(0)) resolve();
  }

  /** Close from the hub side (no-op when already closed). */
  close(code: number, reason: string): void {
    if (this.#state === 'closed') return;
    const ws = this.#ws;
    this.closeInfo = { code, reason, byHub: true };
    this.to('closed');
    this.drained();
    // uWS calls the close handler synchronously from end().
    ws?.end(code, reason);
  }

  /** uWS closed the socket (either side). */
  closedByPeer(code: number, reason: string): void {
    if (this.#state !== 'closed') {
      this.closeInfo = { code, reason, byHub: false };
      this.to('closed');
    }
    this.#ws = undefined;
    this.drained();
  }
}
