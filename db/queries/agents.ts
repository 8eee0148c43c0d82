/**
 * Agents in the database (sql/migrations/0007): enrollment, authentication,
 * connections of the gateway, the outbox (dispatch by workers; delivery,
 * acks, events and results by the gateway), listings and admin actions.
 * Every call is one SQL function; SQL domain errors come back as
 * BastionErrors (`enrollment_token_expired`, `agent_revoked`, …).
 *
 * Keys and tokens travel as text only between the client, the gateway and
 * PostgreSQL's hash function: {@link secretHash} is how both sides hash them.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { sqlCall } from '../../core/database-error.ts';
import type { AgentWorkKind, RunResultReport, TaskResult } from '../../core/agent-protocol.ts';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** Shape of an enrollment token: `bet_` + 43 base64url characters. */
export const ENROLLMENT_TOKEN_RE = /^bet_[A-Za-z0-9_-]{43}$/;
/** Shape of an agent key: `bak_` + 43 base64url characters. */
export const AGENT_KEY_RE = /^bak_[A-Za-z0-9_-]{43}$/;

/** SHA-256 of a token or key text, as bastion_private stores it. */
export function secretHash(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** The claimed_by value of attempts an agent executes. */
export function agentWorker(agentId: string): string {
  return `agent:${agentId}`;
}

/** An agent row (bastion.agents) with its online state. */
export interface AgentRow {
  id: string;
  name: string;
  created_at: Date;
  updated_at: Date;
  enrolled_by: string | null;
  version: string | null;
  capabilities: Record<string, unknown>;
  last_seen_at: Date | null;
  connected_gateway: string | null;
  connected_at: Date | null;
  disconnected_at: Date | null;
  key_rotated_at: Date | null;
  revoked_at: Date | null;
  online: boolean;
}

const AGENT_COLUMNS = `a.id, a.name, a.created_at, a.updated_at, a.enrolled_by, a.version, a.capabilities, a.last_seen_at, a.connected_gateway,
  a.connected_at, a.disconnected_at, a.key_rotated_at, a.revoked_at, bastion.agents_online(a) as online`;

/** Every agent (revoked ones only when asked), by name. */
export async function listAgents(db: Queryable, options: { includeRevoked?: boolean } = {}): Promise<AgentRow[]> {
  const { rows } = await db.query<AgentRow>(
    `select ${AGENT_COLUMNS} from bastion.agents a where $1 or a.revoked_at is null order by lower(a.name), a.id`,
    [options.includeRevoked === true],
  );
  return rows;
}

/** One agent, or undefined. */
export async function getAgent(db: Queryable, agentId: string): Promise<AgentRow | undefined> {
  const { rows } = await db.query<AgentRow>(`select ${AGENT_COLUMNS} from bastion.agents a where a.id = $1`, [agentId]);
  return rows[0];
}

// --- enrollment ----------------------------------------------------------------------

/** A new enrollment token (the text is shown once). */
export interface CreatedEnrollmentToken {
  id: string;
  token: string;
  expires_at: Date;
  remaining_uses: number;
  note: string | null;
}

/** Admin: create an enrollment token. */
export async function createEnrollmentToken(db: Queryable, options: { ttlSeconds?: number; uses?: number; note?: string | null } = {}): Promise<CreatedEnrollmentToken> {
  const { rows } = await sqlCall(
    db.query<CreatedEnrollmentToken>('select * from bastion.create_enrollment_token(ttl_seconds => $1, uses => $2, note => $3)', [options.ttlSeconds ?? 3600, options.uses ?? 1, options.note ?? null]),
  );
  return rows[0] as CreatedEnrollmentToken;
}

/** An enrolled agent's identity (the key is shown once). */
export interface EnrolledAgent {
  agent_id: string;
  agent_key: string;
  name: string;
}

/** Gateway: exchange an enrollment token for an agent identity. */
export async function enrollAgent(db: Queryable, token: string, name: string, throttleKey: string | null): Promise<EnrolledAgent> {
  const { rows } = await sqlCall(db.query<EnrolledAgent>('select * from bastion_private.enroll_agent($1, $2, $3)', [secretHash(token), name, throttleKey]));
  return rows[0] as EnrolledAgent;
}

/** Gateway: the agent of a key, or undefined when unknown. */
export async function authenticateAgent(db: Queryable, key: string): Promise<{ agent_id: string; name: string; revoked: boolean } | undefined> {
  const { rows } = await db.query<{ agent_id: string; name: string; revoked: boolean }>('select * from bastion_private.authenticate_agent($1)', [secretHash(key)]);
  return rows[0];
}

// --- gateways and connections ------------------------------------------------------

/** Gateway: register this process. */
export async function registerGateway(db: Queryable, gatewayId: string, info: { host: string; pid: number; version: string }): Promise<void> {
  await db.query('select bastion_private.gateway_register($1, $2, $3, $4)', [gatewayId, info.host, info.pid, info.version]);
}

/** Gateway: this process stops; returns how many agents it held. */
export async function gatewayStopped(db: Queryable, gatewayId: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>('select bastion_private.gateway_stopped($1) as n', [gatewayId]);
  return rows[0]?.n ?? 0;
}

/** What a heartbeat asks the gateway to do for one of its agents. */
export interface BeatAction {
  agent_id: string;
  action: 'close' | 'deliver';
}

/** Gateway: heartbeat (gateway, reporting agents' last_seen and their attempts in flight). */
export async function gatewayBeat(db: Queryable, gatewayId: string, agentIds: readonly string[]): Promise<BeatAction[]> {
  const { rows } = await db.query<BeatAction>('select agent_id, action from bastion_private.gateway_beat($1, $2::uuid[])', [gatewayId, agentIds]);
  return rows;
}

/** Gateway: a socket opened; false when the agent is revoked. */
export async function agentConnected(db: Queryable, agentId: string, gatewayId: string, sessionId: string): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>('select bastion_private.agent_connected($1, $2, $3) as ok', [agentId, gatewayId, sessionId]);
  return rows[0]?.ok === true;
}

/** Gateway: a socket closed. */
export async function agentDisconnected(db: Queryable, agentId: string, sessionId: string): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>('select bastion_private.agent_disconnected($1, $2) as ok', [agentId, sessionId]);
  return rows[0]?.ok === true;
}

/** Gateway: hello on the live socket; null when the socket is not the live one. */
export async function agentHello(db: Queryable, agentId: string, sessionId: string, version: string, capabilities: Record<string, unknown>): Promise<{ tasks: number; runs: number } | null> {
  const { rows } = await db.query<{ r: { tasks: number; runs: number } | null }>('select bastion_private.agent_hello($1, $2, $3, $4) as r', [agentId, sessionId, version, JSON.stringify(capabilities)]);
  return rows[0]?.r ?? null;
}

/** Gateway / watchdog: fail work in flight on agents offline for longer than `graceSeconds`. */
export async function agentLost(db: Queryable, agentId: string | null, graceSeconds: number): Promise<{ agents: number; tasks: number; runs: number }> {
  const { rows } = await db.query<{ r: { agents: number; tasks: number; runs: number } }>('select bastion_private.agent_lost($1, make_interval(secs => $2)) as r', [agentId, graceSeconds]);
  return rows[0]?.r ?? { agents: 0, tasks: 0, runs: 0 };
}

// --- outbox --------------------------------------------------------------------------

/** An outbox row (bastion.agent_outbox). */
export interface OutboxMessage {
  id: string;
  agent_id: string;
  kind: AgentWorkKind;
  queue: string | null;
  run_id: string;
  attempt: number | null;
  payload: Record<string, unknown>;
  created_at: Date;
  delivered_at: Date | null;
  delivery_count: number;
  acked_at: Date | null;
  completed_at: Date | null;
  result: Record<string, unknown> | null;
}

/** Gateway: open messages not yet sent on socket `sessionId`, marked delivered on it. */
export async function takeOutbox(db: Queryable, agentId: string, sessionId: string, limit = 100): Promise<OutboxMessage[]> {
  const { rows } = await db.query<OutboxMessage>(
    'select id, agent_id, kind, queue, run_id, attempt, payload, created_at, delivered_at, delivery_count, acked_at, completed_at, result from bastion_private.agent_outbox_take($1, $2, $3) order by created_at, id',
    [agentId, sessionId, limit],
  );
  return rows;
}

/** Gateway: {@link takeOutbox} for many sockets in one statement (rows of all of them). */
export async function takeOutboxMany(db: Queryable, items: ReadonlyArray<{ agent_id: string; session: string }>, limit = 100): Promise<OutboxMessage[]> {
  const { rows } = await db.query<OutboxMessage>(
    'select id, agent_id, kind, queue, run_id, attempt, payload, created_at, delivered_at, delivery_count, acked_at, completed_at, result from bastion_private.agent_outbox_take_many($1, $2) order by created_at, id',
    [JSON.stringify(items), limit],
  );
  return rows;
}

/** Gateway: many acks in one statement; the message ids that belong to their agent. */
export async function ackOutboxMany(db: Queryable, items: ReadonlyArray<{ agent_id: string; message_id: string }>): Promise<Set<string>> {
  const { rows } = await db.query<{ message_id: string; known: boolean }>('select message_id, known from bastion_private.agent_outbox_ack_many($1)', [JSON.stringify(items)]);
  return new Set(rows.filter((r) => r.known).map((r) => r.message_id));
}

/** An agent's task event for {@link recordTaskEvents}. */
export interface TaskEventItem {
  agent_id: string;
  message_id: string;
  level: string;
  kind: string;
  message: string;
  fields?: Record<string, unknown> | undefined;
}

/** Gateway: many task events in one statement (best effort). */
export async function recordTaskEvents(db: Queryable, items: readonly TaskEventItem[]): Promise<void> {
  await db.query('select count(*) from bastion_private.agent_task_events($1)', [JSON.stringify(items.map((i) => ({ ...i, fields: i.fields ?? {} })))]);
}

/** Gateway: many task results in one statement; a disposition per item, in input order (`retry`: apply it again alone). */
export async function applyTaskResults(db: Queryable, items: ReadonlyArray<{ agent_id: string; message_id: string; result: TaskResult }>): Promise<Array<ResultDisposition | 'retry'>> {
  const { rows } = await sqlCall(db.query<{ item: number; disposition: ResultDisposition | 'retry' }>('select item, disposition from bastion_private.agent_task_results($1)', [JSON.stringify(items)]));
  const out: Array<ResultDisposition | 'retry'> = items.map(() => 'unknown');
  for (const r of rows) out[r.item - 1] = r.disposition;
  return out;
}

/** Gateway: the agent acknowledged a message; false when it is not that agent's. */
export async function ackOutbox(db: Queryable, agentId: string, messageId: string): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>('select bastion_private.agent_outbox_ack($1, $2) as ok', [agentId, messageId]);
  return rows[0]?.ok === true;
}

/** How a result was taken: applied, stale (its attempt/run moved on), duplicate, or unknown (not this agent's). */
export type ResultDisposition = 'applied' | 'stale' | 'duplicate' | 'unknown';

/** Gateway: an agent's event on a task attempt. */
export async function recordTaskEvent(db: Queryable, agentId: string, messageId: string, e: { level: string; kind: string; message: string; fields?: Record<string, unknown> | undefined }): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>('select bastion_private.agent_task_event($1, $2, $3, $4, $5, $6) as ok', [agentId, messageId, e.level, e.kind, e.message, JSON.stringify(e.fields ?? {})]);
  return rows[0]?.ok === true;
}

/** Gateway: an agent's task result. */
export async function applyTaskResult(db: Queryable, agentId: string, messageId: string, result: TaskResult): Promise<ResultDisposition> {
  const { rows } = await sqlCall(db.query<{ r: ResultDisposition }>('select bastion_private.agent_task_result($1, $2, $3) as r', [agentId, messageId, JSON.stringify(result)]));
  return rows[0]?.r ?? 'unknown';
}

/** Gateway: an agent's backup progress / heartbeat; false when the run is not running there (cancel it). */
export async function recordRunProgress(db: Queryable, agentId: string, messageId: string, progress: Record<string, unknown> | null, message: string | null): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>('select bastion_private.agent_run_progress($1, $2, $3, $4) as ok', [agentId, messageId, progress === null ? null : JSON.stringify(progress), message]);
  return rows[0]?.ok === true;
}

/** Gateway: an agent's note on a run. */
export async function recordRunEvent(db: Queryable, agentId: string, messageId: string, e: { level: string; kind: string; message: string; fields?: Record<string, unknown> | undefined }): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>('select bastion_private.agent_run_event($1, $2, $3, $4, $5, $6) as ok', [agentId, messageId, e.level, e.kind, e.message, JSON.stringify(e.fields ?? {})]);
  return rows[0]?.ok === true;
}

/** Gateway: an agent's backup result (or one the gateway records for it, e.g. a missing secret at delivery). */
export async function applyRunResult(db: Queryable, agentId: string, messageId: string, result: RunResultReport): Promise<ResultDisposition> {
  const { rows } = await sqlCall(db.query<{ r: ResultDisposition }>('select bastion_private.agent_run_result($1, $2, $3) as r', [agentId, messageId, JSON.stringify(result)]));
  return rows[0]?.r ?? 'unknown';
}

// --- dispatch (workers) ----------------------------------------------------------------

/** What dispatch did with one claimed task. */
export type TaskDisposition = 'dispatched' | 'offline' | 'refused';

/**
 * Worker: hand the worker's claimed attempts of agent-held tasks to their
 * agents. Returns a disposition per agent task (hub tasks are not listed).
 */
export async function dispatchAgentTasks(db: Queryable, queue: string, worker: string, runIds: readonly string[]): Promise<Map<string, TaskDisposition>> {
  const { rows } = await db.query<{ run_id: string; disposition: TaskDisposition }>('select run_id, disposition from bastion_private.agent_dispatch_tasks($1, $2, $3::uuid[])', [queue, worker, runIds]);
  return new Map(rows.map((r) => [r.run_id, r.disposition]));
}

/** Worker: claim and dispatch the due tasks of every online agent in `queue` (one call); returns how many were dispatched. */
export async function dispatchDueAgentTasks(db: Queryable, queue: string, worker: string, maxNodes = 200): Promise<number> {
  const { rows } = await db.query<{ n: number }>('select bastion_private.agent_dispatch_due($1, $2, $3) as n', [queue, worker, maxNodes]);
  return rows[0]?.n ?? 0;
}

/** What dispatch did with a queued agent run. */
export type RunDisposition = 'dispatched' | 'waiting' | 'failed' | 'skipped';

/** Worker: start a queued agent run and put it in its agent's outbox (or record why not). */
export async function dispatchAgentRun(db: Queryable, runId: string, targetSnapshot: unknown, payload: Record<string, unknown>): Promise<{ disposition: RunDisposition; message_id: string | null }> {
  const { rows } = await sqlCall(
    db.query<{ disposition: RunDisposition; message_id: string | null }>('select disposition, message_id from bastion_private.agent_dispatch_run($1, $2, $3)', [runId, JSON.stringify(targetSnapshot), JSON.stringify(payload)]),
  );
  return rows[0] ?? { disposition: 'skipped', message_id: null };
}

// --- admin --------------------------------------------------------------------------------

/** Admin: revoke an agent. */
export async function revokeAgent(db: Queryable, agentId: string): Promise<void> {
  await sqlCall(db.query('select bastion.revoke_agent($1)', [agentId]));
}

/** Admin: replace an agent's key; returns the new key (shown once). */
export async function rotateAgentKey(db: Queryable, agentId: string): Promise<string> {
  const { rows } = await sqlCall(db.query<{ agent_key: string }>('select agent_key from bastion.rotate_agent_key($1)', [agentId]));
  return rows[0]?.agent_key as string;
}
