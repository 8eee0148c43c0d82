/**
 * The gateway's side of the agents (DESIGN §6, §8): the `/agent/ws` socket,
 * `POST /agent/enroll`, and everything between the sockets and the database.
 *
 * - Upgrade: a missing or malformed `Authorization: Bearer <agent key>` gets
 *   401 `agent_key_invalid` and no socket; a well-formed key is looked up just
 *   after open (see #upgrade), and an unknown key or a revoked agent is
 *   closed with 4401 before any frame is handled.
 * - One live socket per agent: a new socket replaces the old one, here or on
 *   another gateway (NOTIFY `connected`, double-checked against the database
 *   so a late notification never closes the newer socket).
 * - Frames of one agent are handled in order (a serial queue per socket);
 *   before `hello` only `hello` and `ping` are accepted; invalid frames are
 *   answered with `protocol_error` and counted, and more than 20 within 10 s
 *   close the socket (4400). Other agents are not affected.
 * - Delivery: on hello, on NOTIFY `outbox` for an agent held here, and when
 *   the heartbeat finds messages not yet sent on the live socket (a missed
 *   NOTIFY). Every open message is sent again on every new socket of the
 *   agent; the agent's results cache answers repeats.
 * - Results are applied by SQL functions that only act while the attempt or
 *   run is still the agent's (sql/migrations/0007).
 * - Heartbeat every 10 s while it holds agents: the gateway's row, agents'
 *   last_seen_at, and the attempts in flight of agents that sent a frame
 *   within 30 s.
 * - A closed socket that was the live one starts a grace timer (25 s): if the
 *   agent is still away, its work in flight fails (attempts with kind
 *   offline, runs with agent_lost). A quick reconnect (a hub restart, a
 *   network blip) keeps the work: its messages are sent again.
 * - Revocation and key rotation close the live socket at once (NOTIFY).
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_socket_context_t } from 'uWebSockets.js';
import {
  AGENT_LOST_GRACE_MS,
  AGENT_PING_INTERVAL_MS,
  CLOSE_CODES,
  HARD_MAX_FRAME_BYTES,
  MAX_FRAME_BYTES,
  decodeFrame,
  type AgentFrame,
  type OutgoingFrame,
  type ProtocolErrorCode,
} from '../../core/agent-protocol.ts';
import { BastionError, ERRORS, type ErrorCode } from '../../core/errors.ts';
import { metrics as defaultMetrics, type MetricsRegistry } from '../../core/metrics.ts';
import { scrubSecrets } from '../../core/webdav-errors.ts';
import {
  AGENT_KEY_RE,
  ackOutboxMany,
  agentConnected,
  agentDisconnected,
  agentHello,
  agentLost,
  applyRunResult,
  applyTaskResult,
  applyTaskResults,
  authenticateAgent,
  gatewayBeat,
  gatewayStopped,
  recordRunEvent,
  recordRunProgress,
  recordTaskEvents,
  registerGateway,
  takeOutboxMany,
  type OutboxMessage,
  type ResultDisposition,
  type TaskEventItem,
} from '../../db/queries/agents.ts';
import type { TaskResult } from '../../core/agent-protocol.ts';
import { Batcher } from './batcher.ts';
import type { SecretKeyProvider } from '../../engine/secrets/secret-key.ts';
import type { TrustedProxies } from '../auth/client-address.ts';
import type { Router } from '../http-adapter.ts';
import { AgentConnection, type SocketData } from './agent-connection.ts';
import { addEnrollRoute } from './enroll-route.ts';
import { planDelivery } from './outbox-frames.ts';

/** The NOTIFY channel of sql/migrations/0007. */
export const AGENT_CHANNEL = 'bastion_agents';

/** Timing and limits; tests shorten the timing, production keeps the defaults. */
export interface AgentHubTiming {
  /** Gateway heartbeat period (default 10 s). */
  beatMs: number;
  /** Work of an agent that stays away this long after its socket closed fails (default 25 s: before the queues' 40 s and the runs' 45 s watchdogs). */
  lostGraceMs: number;
  /** An agent's attempts are heartbeated while it sent a frame within this window (default 30 s = 3 pings). */
  reportingWindowMs: number;
  /** Ping period the agents are told to use (default 10 s). */
  pingIntervalMs: number;
}

/** Defaults of {@link AgentHubTiming}. */
export const DEFAULT_AGENT_HUB_TIMING: AgentHubTiming = { beatMs: 10_000, lostGraceMs: AGENT_LOST_GRACE_MS, reportingWindowMs: 30_000, pingIntervalMs: AGENT_PING_INTERVAL_MS };

/** Frames of one agent waiting to be handled before the socket is closed (4429). */
const MAX_PENDING_FRAMES = 512;
/** Messages taken from the outbox per round trip. */
const DELIVERY_BATCH = 100;
/** Above this many buffered bytes, delivery waits for uWS to drain the socket. */
const DELIVERY_HIGH_WATER = 1024 * 1024;

/** What the agent hub needs. */
export interface AgentHubDeps {
  pool: pg.Pool;
  logger: Logger;
  version: string;
  trustedProxies: TrustedProxies;
  secretKeys?: SecretKeyProvider | undefined;
  metrics?: MetricsRegistry;
  timing?: Partial<AgentHubTiming>;
}

function writeRefusal(res: HttpResponse, code: ErrorCode, message?: string): void {
  const status = ERRORS[code].status;
  res.cork(() => {
    res.writeStatus(`${status} ${status === 401 ? 'Unauthorized' : status === 503 ? 'Service Unavailable' : 'Error'}`);
    res.writeHeader('content-type', 'application/json; charset=utf-8');
    res.end(JSON.stringify({ error: code, message: message ?? ERRORS[code].message }), true);
  });
}

/** The agents' side of one gateway process. */
export class AgentHub {
  /** This gateway process's id (bastion_private.gateways, agents.connected_gateway). */
  readonly gatewayId = randomUUID();
  readonly #deps: AgentHubDeps;
  readonly #log: Logger;
  readonly #timing: AgentHubTiming;
  /** Live sockets by agent id (at most one per agent). */
  readonly #conns = new Map<string, AgentConnection>();
  readonly #lostTimers = new Map<string, NodeJS.Timeout>();
  /** The LISTEN connection and how to give it back (exactly once). */
  #listener: { client: pg.PoolClient; release(err?: Error): void } | undefined;
  #listenRetry: NodeJS.Timeout | undefined;
  #beatTimer: NodeJS.Timeout | undefined;
  #started: Promise<void> | undefined;
  #stopping = false;
  readonly #gauge;
  readonly #frames;
  readonly #invalid;
  readonly #deliveries;
  /** Database calls of many agents' frames, batched (gateway/agents/batcher.ts). */
  readonly #takes: Batcher<{ agent_id: string; session: string }, OutboxMessage[]>;
  readonly #acks: Batcher<{ agent_id: string; message_id: string }, boolean>;
  readonly #events: Batcher<TaskEventItem, null>;
  readonly #results: Batcher<{ agent_id: string; message_id: string; result: TaskResult }, ResultDisposition | 'retry'>;

  constructor(deps: AgentHubDeps) {
    this.#deps = deps;
    this.#log = deps.logger.child({ component: 'agent-hub' });
    this.#timing = { ...DEFAULT_AGENT_HUB_TIMING, ...deps.timing };
    const registry = deps.metrics ?? defaultMetrics;
    this.#gauge = registry.gauge('bastion_agents_connected', 'Agent sockets held by this gateway process.');
    this.#frames = registry.counter('bastion_agent_frames_total', 'Agent protocol frames by direction and type.', ['direction', 'type']);
    this.#invalid = registry.counter('bastion_agent_invalid_frames_total', 'Frames refused with protocol_error, by code.', ['code']);
    this.#deliveries = registry.counter('bastion_agent_deliveries_total', 'Outbox messages sent to agents, by kind.', ['kind']);
    const pool = deps.pool;
    this.#takes = new Batcher(async (items) => {
      const rows = await takeOutboxMany(pool, items, DELIVERY_BATCH);
      const byAgent = new Map<string, OutboxMessage[]>();
      for (const r of rows) (byAgent.get(r.agent_id) ?? byAgent.set(r.agent_id, []).get(r.agent_id)!).push(r);
      // A socket asked twice in one batch gets its rows once.
      return items.map((i) => {
        const mine = byAgent.get(i.agent_id) ?? [];
        byAgent.delete(i.agent_id);
        return mine;
      });
    });
    this.#acks = new Batcher(async (items) => {
      const known = await ackOutboxMany(pool, items);
      return items.map((i) => known.has(i.message_id));
    });
    // Results and events of different agents touch different tasks, in task
    // order: two batches may run at once (2 database cores measured here).
    this.#events = new Batcher(
      async (items) => {
        await recordTaskEvents(pool, items);
        return items.map(() => null);
      },
      { maxInFlight: 2 },
    );
    this.#results = new Batcher((items) => applyTaskResults(pool, items), { maxInFlight: 2, maxBatch: 100 });
  }

  /** Agents connected to this gateway right now. */
  get size(): number {
    return this.#conns.size;
  }

  /** The connection of an agent held here (tests, diagnostics). */
  connectionOf(agentId: string): AgentConnection | undefined {
    return this.#conns.get(agentId);
  }

  /** Register this gateway, LISTEN, start the heartbeat. Idempotent. */
  start(): Promise<void> {
    return (this.#started ??= (async () => {
      await registerGateway(this.#deps.pool, this.gatewayId, { host: os.hostname(), pid: process.pid, version: this.#deps.version });
      await this.#listen();
      this.#beatTimer = setInterval(() => void this.#beat(), this.#timing.beatMs);
      this.#beatTimer.unref();
      this.#log.debug({ gateway_id: this.gatewayId }, 'agent hub started');
    })());
  }

  /** Close every agent socket (1001), stop listening and deregister. Agents reconnect elsewhere or later; their work is re-sent then. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#beatTimer) clearInterval(this.#beatTimer);
    if (this.#listenRetry) clearTimeout(this.#listenRetry);
    for (const t of this.#lostTimers.values()) clearTimeout(t);
    this.#lostTimers.clear();
    const conns = [...this.#conns.values()];
    for (const c of conns) c.close(CLOSE_CODES.shutdown, 'hub shutting down');
    await Promise.allSettled(conns.map((c) => c.idle()));
    const listener = this.#listener;
    this.#listener = undefined;
    if (listener) {
      await listener.client.query(`unlisten ${AGENT_CHANNEL}`).catch(() => {});
      listener.release();
    }
    if (this.#started) {
      await this.#started.catch(() => {});
      await gatewayStopped(this.#deps.pool, this.gatewayId).catch((err: unknown) => this.#log.warn({ err }, 'could not deregister the gateway'));
    }
  }

  /** Mount `/agent/ws` on the app and `POST /agent/enroll` on the router. */
  mount(app: TemplatedApp, router: Router): void {
    addEnrollRoute(router, { pool: this.#deps.pool, logger: this.#log, trustedProxies: this.#deps.trustedProxies, version: this.#deps.version });
    app.ws<SocketData>('/agent/ws', {
      // Frames up to MAX_FRAME_BYTES are handled; larger ones up to the hard
      // limit get protocol_error; above it uWS closes the socket (1009).
      maxPayloadLength: HARD_MAX_FRAME_BYTES,
      idleTimeout: 45,
      sendPingsAutomatically: true,
      maxBackpressure: 16 * 1024 * 1024,
      closeOnBackpressureLimit: true,
      upgrade: (res, req, context) => this.#upgrade(res, req, context),
      open: (ws) => this.#open(ws),
      message: (ws, message, isBinary) => {
        // Copy now: uWS reuses the buffer after this callback.
        const text = isBinary ? null : Buffer.from(message).toString('utf8');
        const data = ws.getUserData();
        if (data.conn) this.#message(data.conn, text);
        else if (data.early.length < MAX_PENDING_FRAMES) data.early.push(text);
        else if (!data.closed) {
          // Frames before the key check are held; an agent sends one (hello).
          data.closed = true;
          ws.end(CLOSE_CODES.overloaded, 'too many frames waiting');
        }
      },
      drain: (ws) => {
        if (ws.getBufferedAmount() < DELIVERY_HIGH_WATER) ws.getUserData().conn?.drained();
      },
      close: (ws, code, message) => {
        const data = ws.getUserData();
        data.closed = true;
        if (data.conn) this.#closed(data.conn, code, Buffer.from(message).toString('utf8'));
      },
    });
  }

  // --- connections ---------------------------------------------------------------

  #upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void {
    // Only what the headers say is checked here, so the upgrade stays
    // synchronous: this uWS build can close a socket upgraded after an await
    // right after open (uNetworking/uWebSockets#1929). The key is looked up
    // in open(); an unknown or revoked one is closed with 4401 before welcome.
    const m = /^Bearer\s+(\S+)$/i.exec(req.getHeader('authorization').trim());
    const agentKey = m?.[1] ?? '';
    if (!AGENT_KEY_RE.test(agentKey)) {
      writeRefusal(res, 'agent_key_invalid');
      return;
    }
    if (this.#stopping) {
      writeRefusal(res, 'internal_error', 'The hub is shutting down; retry later');
      return;
    }
    const data: SocketData = { agentKey, peer: Buffer.from(res.getRemoteAddressAsText()).toString(), early: [], closed: false };
    const protocol = req.getHeader('sec-websocket-protocol').split(',')[0]?.trim() ?? '';
    res.upgrade<SocketData>(data, req.getHeader('sec-websocket-key'), protocol, req.getHeader('sec-websocket-extensions'), context);
  }

  #open(ws: WebSocket<SocketData>): void {
    const data = ws.getUserData();
    const refuse = (code: number, reason: string) => {
      if (data.closed) return;
      data.closed = true;
      ws.end(code, reason);
    };
    void (async () => {
      await this.start();
      return authenticateAgent(this.#deps.pool, data.agentKey);
    })().then(
      (who) => {
        data.agentKey = '';
        if (data.closed) return;
        if (this.#stopping) return refuse(CLOSE_CODES.shutdown, 'hub shutting down');
        if (!who || who.revoked) return refuse(CLOSE_CODES.revoked, who ? 'agent_key_revoked' : 'agent_key_invalid');
        const conn = new AgentConnection({ agentId: who.agent_id, name: who.name, sessionId: randomUUID(), peer: data.peer });
        this.#register(ws, conn);
        for (const text of data.early.splice(0)) this.#message(conn, text);
      },
      (err: unknown) => {
        this.#log.error({ err }, 'could not check an agent key');
        refuse(1011, 'the hub could not check the agent key; retry later');
      },
    );
  }

  /** The key checked out: make `conn` the agent's live socket on this gateway. */
  #register(ws: WebSocket<SocketData>, conn: AgentConnection): void {
    ws.getUserData().conn = conn;
    conn.attach(ws);
    const previous = this.#conns.get(conn.agentId);
    this.#conns.set(conn.agentId, conn);
    this.#gauge.set({}, this.#conns.size);
    const lost = this.#lostTimers.get(conn.agentId);
    if (lost) {
      clearTimeout(lost);
      this.#lostTimers.delete(conn.agentId);
    }
    if (previous) previous.close(CLOSE_CODES.replaced, 'replaced by a newer connection');
    if (this.#stopping) {
      conn.close(CLOSE_CODES.shutdown, 'hub shutting down');
      return;
    }
    conn.enqueue(async () => {
      const ok = await agentConnected(this.#deps.pool, conn.agentId, this.gatewayId, conn.sessionId).catch((err: unknown) => {
        this.#log.error({ err, agent_id: conn.agentId }, 'could not record the agent connection');
        return false;
      });
      if (!ok) {
        conn.close(CLOSE_CODES.revoked, 'agent revoked or unknown');
        return;
      }
      if (conn.to('open')) this.#log.info({ agent_id: conn.agentId, name: conn.name, peer: conn.peer, session: conn.sessionId }, 'agent connected');
    }, MAX_PENDING_FRAMES);
  }

  #closed(conn: AgentConnection, code: number, reason: string): void {
    conn.closedByPeer(code, reason);
    if (this.#conns.get(conn.agentId) === conn) {
      this.#conns.delete(conn.agentId);
      this.#gauge.set({}, this.#conns.size);
    }
    this.#log.info({ agent_id: conn.agentId, session: conn.sessionId, code: conn.closeInfo?.code ?? code, by_hub: conn.closeInfo?.byHub ?? false }, 'agent disconnected');
    if (this.#stopping) return;
    conn.enqueue(async () => {
      const wasLive = await agentDisconnected(this.#deps.pool, conn.agentId, conn.sessionId).catch((err: unknown) => {
        this.#log.warn({ err, agent_id: conn.agentId }, 'could not record the agent disconnection');
        return false;
      });
      if (wasLive && !this.#stopping && !this.#conns.has(conn.agentId)) this.#armLostTimer(conn.agentId);
    }, Number.MAX_SAFE_INTEGER);
  }

  #armLostTimer(agentId: string): void {
    const previous = this.#lostTimers.get(agentId);
    if (previous) clearTimeout(previous);
    const timer = setTimeout(() => {
      this.#lostTimers.delete(agentId);
      void agentLost(this.#deps.pool, agentId, Math.max(1, Math.floor(this.#timing.lostGraceMs / 1000))).then(
        (r) => {
          if (r.tasks > 0 || r.runs > 0) this.#log.warn({ agent_id: agentId, ...r }, 'agent did not come back: its work in flight failed');
        },
        (err: unknown) => this.#log.warn({ err, agent_id: agentId }, 'could not fail the work of a lost agent; the watchdog will'),
      );
    }, this.#timing.lostGraceMs + 250);
    timer.unref();
    this.#lostTimers.set(agentId, timer);
  }

  // --- frames ----------------------------------------------------------------------

  #message(conn: AgentConnection, text: string | null): void {
    if (conn.state === 'closed') return;
    conn.lastFrameAt = Date.now();
    const queued = conn.enqueue(async () => {
      try {
        await this.#handle(conn, text);
      } catch (err) {
        // Not the agent's fault (the database, a bug): its work stays open in
        // the outbox; closing makes it reconnect, and everything open is sent
        // again (results answered from its cache).
        this.#log.error({ err, agent_id: conn.agentId }, 'handling an agent frame failed; closing the socket so the agent reconnects');
        this.#invalid.inc({ code: 'internal_error' });
        conn.send({ type: 'protocol_error', code: 'internal_error', message: 'the hub could not handle this frame; reconnect' });
        conn.close(1011, 'internal error');
      }
    }, MAX_PENDING_FRAMES);
    if (!queued) {
      this.#log.warn({ agent_id: conn.agentId }, `agent sent more than ${MAX_PENDING_FRAMES} frames the hub had not handled yet; closing`);
      conn.close(CLOSE_CODES.overloaded, 'too many frames waiting');
    }
  }

  /** Answer an invalid frame; closes the socket when the budget is spent. */
  #refuse(conn: AgentConnection, code: ProtocolErrorCode, message: string, ref?: { type?: string | undefined; messageId?: string | undefined }): void {
    this.#invalid.inc({ code });
    conn.send({ type: 'protocol_error', code, message, ...(ref?.type ? { ref_type: ref.type } : {}), ...(ref?.messageId ? { message_id: ref.messageId } : {}) });
    if (!conn.budget.spend(Date.now())) {
      this.#log.warn({ agent_id: conn.agentId, invalid_frames: conn.budget.total }, 'too many invalid frames from the agent; closing its socket');
      conn.close(CLOSE_CODES.flood, 'too many invalid frames');
    }
  }

  async #handle(conn: AgentConnection, text: string | null): Promise<void> {
    if (conn.state === 'closed') return;
    if (text === null) {
      this.#refuse(conn, 'binary_not_supported', 'binary frames are not part of protocol v1');
      return;
    }
    const decoded = decodeFrame(text, 'agent');
    if (!decoded.ok) {
      this.#refuse(conn, decoded.code, decoded.message, { type: decoded.type, messageId: decoded.messageId });
      return;
    }
    const frame = decoded.frame;
    this.#frames.inc({ direction: 'in', type: frame.type });
    if (frame.type === 'ping') {
      conn.send({ type: 'pong', ...(frame.seq !== undefined ? { seq: frame.seq } : {}) });
      return;
    }
    if (frame.type === 'protocol_error') {
      // The agent refused something the hub sent: worth a look, not a strike.
      this.#log.warn({ agent_id: conn.agentId, code: frame.code, ref_type: frame.ref_type, message_id: frame.message_id, message: frame.message }, 'agent refused a frame from the hub');
      return;
    }
    if (frame.type === 'hello') {
      if (conn.state !== 'open') {
        this.#refuse(conn, 'unexpected_hello', conn.state === 'ready' ? 'hello was already said on this socket' : 'the hub is still registering this socket');
        return;
      }
      const r = await agentHello(this.#deps.pool, conn.agentId, conn.sessionId, frame.version, frame.capabilities);
      if (r === null) {
        conn.close(CLOSE_CODES.replaced, 'this socket is not the live one any more');
        return;
      }
      conn.send({ type: 'welcome', agent_id: conn.agentId, name: conn.name, hub_version: this.#deps.version, ping_interval_ms: this.#timing.pingIntervalMs, max_frame_bytes: MAX_FRAME_BYTES });
      conn.to('ready');
      this.#log.info({ agent_id: conn.agentId, version: frame.version, rescheduled_tasks: r.tasks, rescheduled_runs: r.runs }, 'agent ready');
      this.deliver(conn);
      return;
    }
    if (conn.state !== 'ready') {
      this.#refuse(conn, 'hello_required', 'send hello first', { type: frame.type, messageId: 'message_id' in frame ? frame.message_id : undefined });
      return;
    }
    await this.#handleWork(conn, frame);
  }

  async #handleWork(conn: AgentConnection, frame: Exclude<AgentFrame, { type: 'hello' | 'ping' | 'protocol_error' }>): Promise<void> {
    const pool = this.#deps.pool;
    const log = { agent_id: conn.agentId, message_id: frame.message_id };
    switch (frame.type) {
      case 'ack':
        if (!(await this.#acks.submit({ agent_id: conn.agentId, message_id: frame.message_id }))) {
          this.#refuse(conn, 'unknown_message', 'no such message for this agent', { type: frame.type, messageId: frame.message_id });
        }
        return;
      case 'task_event':
        // Dropped when the attempt is no longer the agent's: nothing to refuse.
        await this.#events.submit({ agent_id: conn.agentId, message_id: frame.message_id, level: frame.level, kind: frame.kind, message: frame.message, fields: frame.fields });
        return;
      case 'task_result': {
        let r = await this.#results.submit({ agent_id: conn.agentId, message_id: frame.message_id, result: frame.result });
        if (r === 'retry') r = await applyTaskResult(pool, conn.agentId, frame.message_id, frame.result);
        if (r === 'unknown') this.#refuse(conn, 'unknown_message', 'no such task message for this agent', { type: frame.type, messageId: frame.message_id });
        else this.#log.info({ ...log, outcome: 'outcome' in frame.result ? frame.result.outcome : `failed:${frame.result.kind}`, applied: r }, 'agent task result');
        return;
      }
      case 'run_progress':
        if (!(await recordRunProgress(pool, conn.agentId, frame.message_id, frame.progress, frame.message))) {
          conn.send({ type: 'cancel', message_id: frame.message_id, reason: 'the run is not running on this agent any more' });
        }
        return;
      case 'run_event':
        await recordRunEvent(pool, conn.agentId, frame.message_id, frame);
        return;
      case 'run_result': {
        const r = await applyRunResult(pool, conn.agentId, frame.message_id, frame.result);
        if (r === 'unknown') this.#refuse(conn, 'unknown_message', 'no such run message for this agent', { type: frame.type, messageId: frame.message_id });
        else this.#log.info({ ...log, status: frame.result.status, applied: r }, 'agent run result');
        return;
      }
    }
  }

  // --- delivery ----------------------------------------------------------------------

  /** Send the agent's open messages not yet sent on this socket (coalesces concurrent requests). */
  deliver(conn: AgentConnection): void {
    if (conn.state !== 'ready') return;
    if (conn.delivering) {
      conn.deliverAgain = true;
      return;
    }
    conn.delivering = true;
    void (async () => {
      try {
        do {
          conn.deliverAgain = false;
          let batch;
          do {
            batch = await this.#takes.submit({ agent_id: conn.agentId, session: conn.sessionId });
            for (const m of batch) {
              if (conn.state !== 'ready') return;
              if (conn.bufferedAmount() > DELIVERY_HIGH_WATER) await conn.waitForDrain();
              const plan = await planDelivery(m, this.#deps);
              if ('fail' in plan) {
                this.#log.warn({ agent_id: conn.agentId, message_id: m.id, run_id: m.run_id, error_code: plan.fail.error_code }, 'backup run cannot be sent to the agent');
                await applyRunResult(this.#deps.pool, conn.agentId, m.id, { status: 'failed', error_code: plan.fail.error_code, error: plan.fail.error });
                continue;
              }
              if (!conn.send(plan.send)) return;
              this.#frames.inc({ direction: 'out', type: plan.send.type });
              this.#deliveries.inc({ kind: m.kind });
            }
          } while (batch.length === DELIVERY_BATCH && conn.state === 'ready');
        } while (conn.deliverAgain && conn.state === 'ready');
      } catch (err) {
        // The messages stay open; the next heartbeat finds them and retries.
        this.#log.warn({ agent_id: conn.agentId, err: scrubSecrets(String((err as Error)?.message ?? err), []) }, 'delivery to the agent failed; retrying at the next heartbeat');
      } finally {
        conn.delivering = false;
      }
    })();
  }

  // --- LISTEN / NOTIFY and the heartbeat -----------------------------------------------

  async #listen(): Promise<void> {
    const client = await this.#deps.pool.connect();
    let released = false;
    const handle = {
      client,
      release: (err?: Error) => {
        if (released) return;
        released = true;
        client.release(err);
      },
    };
    const onError = (err: Error) => {
      if (released) return;
      handle.release(err);
      if (this.#listener === handle) this.#listener = undefined;
      if (!this.#stopping) {
        this.#log.warn({ err: err.message }, 'agent LISTEN connection lost; reconnecting');
        this.#relisten();
      }
    };
    client.on('error', onError);
    client.on('notification', (n) => {
      if (n.channel === AGENT_CHANNEL && n.payload) this.#notified(n.payload);
    });
    try {
      await client.query(`listen ${AGENT_CHANNEL}`);
    } catch (err) {
      handle.release(err as Error);
      throw err;
    }
    this.#listener = handle;
  }

  /** LISTEN again in a second (and again until it works); then look at every agent held here, as notifications may have been missed. */
  #relisten(): void {
    if (this.#stopping) return;
    this.#listenRetry = setTimeout(() => {
      this.#listen().then(
        () => this.#beat(true),
        (err: unknown) => {
          this.#log.warn({ err: (err as Error)?.message }, 'agent LISTEN failed; retrying');
          this.#relisten();
        },
      );
    }, 1000);
    this.#listenRetry.unref();
  }

  #notified(payload: string): void {
    let n: { op?: unknown; agent_id?: unknown; session?: unknown };
    try {
      n = JSON.parse(payload) as typeof n;
    } catch {
      return;
    }
    const conn = typeof n.agent_id === 'string' ? this.#conns.get(n.agent_id) : undefined;
    if (!conn) return;
    switch (n.op) {
      case 'outbox':
        this.deliver(conn);
        return;
      case 'revoked':
        conn.close(CLOSE_CODES.revoked, 'agent revoked');
        return;
      case 'key_rotated':
        conn.close(CLOSE_CODES.keyRotated, 'agent key replaced');
        return;
      case 'connected':
        if (n.session === conn.sessionId) return;
        // A notification may be older than this socket: ask the database which socket is live.
        void this.#deps.pool.query<{ s: string | null }>('select connected_session::text as s from bastion.agents where id = $1', [conn.agentId]).then(
          ({ rows }) => {
            if (rows[0]?.s !== conn.sessionId && conn.state !== 'connecting') conn.close(CLOSE_CODES.replaced, 'replaced by a newer connection');
          },
          () => {},
        );
        return;
    }
  }

  async #beat(all = false): Promise<void> {
    // With no agent here nothing depends on this gateway's heartbeat (the
    // first socket re-registers it), so an idle gateway does not write.
    if (this.#stopping || this.#conns.size === 0) return;
    const now = Date.now();
    const reporting = [...this.#conns.values()].filter((c) => c.state === 'ready' && (all || now - c.lastFrameAt <= this.#timing.reportingWindowMs));
    try {
      const actions = await gatewayBeat(
        this.#deps.pool,
        this.gatewayId,
        reporting.map((c) => c.agentId),
      );
      for (const a of actions) {
        const conn = this.#conns.get(a.agent_id);
        if (!conn) continue;
        if (a.action === 'close') conn.close(CLOSE_CODES.replaced, 'the agent is connected elsewhere or revoked');
        else this.deliver(conn);
      }
    } catch (err) {
      this.#log.warn({ err: (err as Error)?.message }, 'gateway heartbeat failed; retrying at the next beat');
    }
  }
}
