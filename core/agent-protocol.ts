/**
 * The Hub ↔ Agent protocol (DESIGN §8, docs/agent-protocol.md): every text
 * frame on `/agent/ws` is one JSON object `{v: 1, type, …}`, validated by one
 * zod discriminated union shared by the gateway and the agent.
 *
 *   agent → hub   hello, ping, ack, task_event, task_result, run_progress,
 *                 run_event, run_result, protocol_error
 *   hub → agent   welcome, pong, backup_run, snapshot_delete,
 *                 incomplete_cleanup, cancel, protocol_error
 *
 * Decoding never throws: {@link decodeFrame} answers a frame or a refusal with
 * a stable code (frame_too_large, invalid_json, invalid_frame,
 * unsupported_version, unknown_type), plus the message id when one could be
 * read, so an agent can answer a malformed task with a failed result instead
 * of leaving the task to time out. Unknown keys are dropped, not refused: a
 * newer peer may add optional fields (the reference's rule).
 *
 * Semantics stay with the code that acts: a task frame only has to have the
 * right shape (strings of bounded length); whether its job and run ids are
 * UUIDs and its base_dir a clean absolute path is decided by the same safety
 * code the hub uses (engine/targets/local-run-dir-removal.ts), so a crafted
 * message is refused by the agent with a recorded reason even if a hub sent it.
 *
 * Limits: {@link MAX_FRAME_BYTES} per frame (a bigger one is answered with a
 * protocol error); uWS closes the socket (1009) above {@link HARD_MAX_FRAME_BYTES}.
 * More than {@link INVALID_FRAME_LIMIT} invalid frames within
 * {@link INVALID_FRAME_WINDOW_MS} close the socket ({@link CLOSE_CODES}.flood).
 */
import { z } from 'zod';
import { UUID_RE } from './ids.ts';
import { jobSpecSchema } from './job-spec.ts';
import { TASK_ERROR_KINDS } from './task-status.ts';
import { targetSnapshotSchema } from './target-snapshot.ts';

/** The protocol version every frame carries as `v`. */
export const PROTOCOL_VERSION = 1;
/** Largest frame either side accepts (bytes of UTF-8 JSON); larger ones get protocol_error frame_too_large. */
export const MAX_FRAME_BYTES = 1024 * 1024;
/** uWS's maxPayloadLength on /agent/ws: above it the socket is closed with 1009 before anything is parsed. */
export const HARD_MAX_FRAME_BYTES = 4 * MAX_FRAME_BYTES;
/** Invalid frames tolerated within {@link INVALID_FRAME_WINDOW_MS} before the socket is closed. */
export const INVALID_FRAME_LIMIT = 20;
/** Window of the invalid-frame budget. */
export const INVALID_FRAME_WINDOW_MS = 10_000;
/** The agent pings this often; the hub heartbeats the agent's work while pings arrive. */
export const AGENT_PING_INTERVAL_MS = 10_000;
/** The agent reconnects when no pong came for this long (3 pings). */
export const AGENT_PONG_TIMEOUT_MS = 3 * AGENT_PING_INTERVAL_MS;
/**
 * Work in flight on an agent whose socket closed fails when the agent has not
 * come back after this long: attempts with kind offline, runs with
 * agent_lost. Shorter than the queues' stale-heartbeat threshold (40 s) and
 * the runs' (45 s), so the failure says what happened; long enough for a hub
 * restart or a network blip (the agent retries after 1, 2, 4, 8 s).
 */
export const AGENT_LOST_GRACE_MS = 25_000;

/** WebSocket close codes the hub uses (4xxx: application codes). */
export const CLOSE_CODES = {
  /** The hub is shutting down; reconnect. */
  shutdown: 1001,
  /** A frame above the hard limit: uWS drops the connection (clients may see 1006). */
  tooBig: 1009,
  /** Too many invalid frames. */
  flood: 4400,
  /** The key is unknown or the agent was revoked (reason: the error code): do not reconnect with this key. */
  revoked: 4401,
  /** The agent's key was replaced: do not reconnect with this key. */
  keyRotated: 4403,
  /** Another socket of the same agent replaced this one. */
  replaced: 4409,
  /** The agent sent frames faster than the hub could handle them. */
  overloaded: 4429,
} as const;

/** Stable codes of protocol_error frames. */
export const PROTOCOL_ERROR_CODES = [
  'frame_too_large',
  'invalid_json',
  'invalid_frame',
  'unsupported_version',
  'unknown_type',
  'binary_not_supported',
  'hello_required',
  'unexpected_hello',
  'unknown_message',
  'internal_error',
] as const;
export type ProtocolErrorCode = (typeof PROTOCOL_ERROR_CODES)[number];

/** What an agent can be asked to do (SQL enum bastion.agent_message_kind). */
export const AGENT_WORK_KINDS = ['backup_run', 'snapshot_delete', 'incomplete_cleanup'] as const;
export type AgentWorkKind = (typeof AGENT_WORK_KINDS)[number];

const uuid = z.string().regex(UUID_RE, 'must be a lower-case UUID');
const level = z.enum(['info', 'warn', 'error']);
const fieldName = z.string().regex(/^[a-z][a-z0-9_]{0,63}$/);
/** Structured event details: at most 32 keys of short scalars. */
const fields = z
  .record(fieldName, z.union([z.string().max(1000), z.number().finite(), z.boolean(), z.null()]))
  .refine((r) => Object.keys(r).length <= 32, 'at most 32 fields');
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** Bytes of the JSON text of a value (for nested documents with their own caps). */
const jsonBytes = (v: unknown): number => Buffer.byteLength(JSON.stringify(v) ?? '', 'utf8');

const base = { v: z.literal(PROTOCOL_VERSION) };

// --- agent → hub ----------------------------------------------------------------

export const helloFrameSchema = z.object({
  ...base,
  type: z.literal('hello'),
  /** Bastion version of the agent. */
  version: z.string().min(1).max(64),
  capabilities: z.object({
    kinds: z.array(z.enum(AGENT_WORK_KINDS)).max(16),
    targets: z.array(z.enum(['local_dir', 'webdav'])).max(16),
    formats: z.array(z.enum(['archive_v1', 'raw_tree_v1'])).max(16),
    os: z.string().max(64).optional(),
    arch: z.string().max(64).optional(),
    hostname: z.string().max(255).optional(),
  }),
});

export const pingFrameSchema = z.object({ ...base, type: z.literal('ping'), seq: count.optional() });

export const ackFrameSchema = z.object({ ...base, type: z.literal('ack'), message_id: uuid });

export const taskEventFrameSchema = z.object({
  ...base,
  type: z.literal('task_event'),
  message_id: uuid,
  level,
  /** start: the agent began the attempt; progress: still working (long deletes). */
  kind: z.enum(['start', 'progress']),
  message: z.string().max(1000),
  fields: fields.optional(),
});

/** A task attempt's outcome: done with a queue outcome, or failed with an error kind. */
export const taskResultSchema = z.union([
  z.object({
    /** The queue's done outcome: deleted | not_found (deletes), deleted | skip_complete | skip_not_found (cleanups). */
    outcome: z.string().regex(/^[a-z][a-z_]{0,31}$/),
    message: z.string().max(1000),
    fields: fields.optional(),
  }),
  z.object({
    kind: z.enum(TASK_ERROR_KINDS),
    /** One line, no credentials (the hub cleans it again). */
    error: z.string().min(1).max(2000),
    fields: fields.optional(),
    retry_after_secs: z.number().int().min(0).max(86_400).optional(),
  }),
]);
export type TaskResult = z.infer<typeof taskResultSchema>;

export const taskResultFrameSchema = z.object({ ...base, type: z.literal('task_result'), message_id: uuid, result: taskResultSchema });

/** runs.progress of a backup (engine/backup/run-progress.ts RunProgressDoc). */
export const runProgressDocSchema = z.object({
  stage: z.enum(['scan', 'packaging', 'finalize']),
  files_done: count,
  dirs_done: count,
  bytes_done: count,
  files_total: count.nullable(),
  dirs_total: count.nullable(),
  bytes_total: count.nullable(),
  stored_files: count,
  written_bytes: count,
  updated_at: z.string().max(40),
});

export const runProgressFrameSchema = z.object({
  ...base,
  type: z.literal('run_progress'),
  message_id: uuid,
  /** Null: a heartbeat with nothing new. */
  progress: runProgressDocSchema.nullable(),
  /** With a message, the hub also appends a progress event. */
  message: z.string().max(4096).nullable(),
});

export const runEventFrameSchema = z.object({
  ...base,
  type: z.literal('run_event'),
  message_id: uuid,
  level,
  /** Agent notes are namespaced so they never look like lifecycle events (start, complete, failed). */
  kind: z.string().regex(/^agent_[a-z0-9_]{1,40}$/),
  message: z.string().max(4096),
  fields: fields.optional(),
});

/** A backup's summary (engine/format BackupSummary plus the redacted location). At most 64 KiB. */
export const runSummarySchema = z
  .looseObject({
    artifact_format: z.enum(['archive_v1', 'raw_tree_v1']),
    source_total: z.object({ files: count, dirs: count, bytes: count }),
    transfer_total_bytes: count,
    entries_count: count,
    parts: count,
    location: z.string().max(4096),
  })
  .refine((s) => jsonBytes(s) <= 64 * 1024, 'summary must be at most 64 KiB');

export const runResultSchema = z.discriminatedUnion('status', [
  z.object({ status: z.literal('success'), summary: runSummarySchema }),
  z.object({
    status: z.literal('failed'),
    error_code: z.string().regex(/^[a-z][a-z0-9_]{0,63}$/),
    error: z.string().min(1).max(2000),
    fields: fields.optional(),
  }),
]);
export type RunResultReport = z.infer<typeof runResultSchema>;

export const runResultFrameSchema = z.object({ ...base, type: z.literal('run_result'), message_id: uuid, result: runResultSchema });

export const protocolErrorFrameSchema = z.object({
  ...base,
  type: z.literal('protocol_error'),
  code: z.enum(PROTOCOL_ERROR_CODES),
  message: z.string().max(1000),
  /** The type of the refused frame, when it could be read. */
  ref_type: z.string().max(64).optional(),
  /** The message id of the refused frame, when it could be read. */
  message_id: uuid.optional(),
});

// --- hub → agent ----------------------------------------------------------------

export const welcomeFrameSchema = z.object({
  ...base,
  type: z.literal('welcome'),
  agent_id: uuid,
  name: z.string().max(64),
  hub_version: z.string().max(64),
  /** How often the agent should ping. */
  ping_interval_ms: z.number().int().min(1000).max(600_000),
  max_frame_bytes: z.number().int().min(1024),
});

export const pongFrameSchema = z.object({ ...base, type: z.literal('pong'), seq: count.optional() });

/**
 * Where a task's data is, as the task row stores it. Only the shape is
 * checked here; the agent's safety code judges the values (see the file
 * comment).
 */
const taskTargetSnapshotSchema = z.object({
  node_id: z.string().max(64),
  target: z.object({ type: z.string().max(32), base_dir: z.string().max(4096).optional() }).loose(),
});

const taskFrameFields = {
  ...base,
  message_id: uuid,
  /** The task's attempt this message stands for. */
  attempt: z.number().int().min(1).max(1_000_000),
  run_id: z.string().max(200),
  job_id: z.string().max(200),
  target_snapshot: taskTargetSnapshotSchema,
};

export const snapshotDeleteFrameSchema = z.object({ ...taskFrameFields, type: z.literal('snapshot_delete') });
export const incompleteCleanupFrameSchema = z.object({ ...taskFrameFields, type: z.literal('incomplete_cleanup') });

/** WebDAV login resolved by the gateway at delivery time (never stored in the outbox). */
export const frameCredentialsSchema = z.object({ username: z.string().min(1).max(256), password: z.string().max(1024) });

export const backupRunFrameSchema = z.object({
  ...base,
  type: z.literal('backup_run'),
  message_id: uuid,
  run_id: uuid,
  job_id: uuid,
  /** runs.started_at (the manifest's started_at). */
  started_at: z.iso.datetime({ offset: true }),
  spec: jobSpecSchema,
  target_snapshot: targetSnapshotSchema,
  /** Present for WebDAV targets. */
  credentials: frameCredentialsSchema.optional(),
});

export const cancelFrameSchema = z.object({
  ...base,
  type: z.literal('cancel'),
  message_id: uuid,
  reason: z.string().max(200),
});

// --- the union ---------------------------------------------------------------------

/** Every frame, both directions. */
export const frameSchema = z.discriminatedUnion('type', [
  helloFrameSchema,
  pingFrameSchema,
  ackFrameSchema,
  taskEventFrameSchema,
  taskResultFrameSchema,
  runProgressFrameSchema,
  runEventFrameSchema,
  runResultFrameSchema,
  protocolErrorFrameSchema,
  welcomeFrameSchema,
  pongFrameSchema,
  backupRunFrameSchema,
  snapshotDeleteFrameSchema,
  incompleteCleanupFrameSchema,
  cancelFrameSchema,
]);
export type Frame = z.infer<typeof frameSchema>;
export type FrameType = Frame['type'];

/** Frames an agent sends. */
export const AGENT_FRAME_TYPES = ['hello', 'ping', 'ack', 'task_event', 'task_result', 'run_progress', 'run_event', 'run_result', 'protocol_error'] as const satisfies readonly FrameType[];
/** Frames the hub sends. */
export const HUB_FRAME_TYPES = ['welcome', 'pong', 'backup_run', 'snapshot_delete', 'incomplete_cleanup', 'cancel', 'protocol_error'] as const satisfies readonly FrameType[];

export type AgentFrame = Extract<Frame, { type: (typeof AGENT_FRAME_TYPES)[number] }>;
export type HubFrame = Extract<Frame, { type: (typeof HUB_FRAME_TYPES)[number] }>;
export type TaskFrame = Extract<Frame, { type: 'snapshot_delete' | 'incomplete_cleanup' }>;
export type BackupRunFrame = Extract<Frame, { type: 'backup_run' }>;

/** A frame as built by a sender (`v` is added by {@link encodeFrame}). */
export type OutgoingFrame<F extends Frame = Frame> = F extends Frame ? Omit<F, 'v'> : never;

/** Result of {@link decodeFrame}. */
export type DecodeResult<F extends Frame> =
  | { ok: true; frame: F }
  | {
      ok: false;
      code: Extract<ProtocolErrorCode, 'frame_too_large' | 'invalid_json' | 'invalid_frame' | 'unsupported_version' | 'unknown_type'>;
      /** One line naming the field and the problem (never the frame's values). */
      message: string;
      /** `type` of the refused frame, when it was a string of a known type. */
      type?: FrameType;
      /** `message_id` of the refused frame, when it was a UUID. */
      messageId?: string;
    };

const TYPES_FROM = { agent: new Set<string>(AGENT_FRAME_TYPES), hub: new Set<string>(HUB_FRAME_TYPES) };

/**
 * Decode one text frame sent by `from`. Never throws; refusals carry a stable
 * code and a message that names fields but never echoes values (a frame may
 * carry credentials).
 */
export function decodeFrame(data: string, from: 'agent'): DecodeResult<AgentFrame>;
export function decodeFrame(data: string, from: 'hub'): DecodeResult<HubFrame>;
export function decodeFrame(data: string, from: 'agent' | 'hub'): DecodeResult<Frame> {
  if (typeof data !== 'string') return { ok: false, code: 'invalid_frame', message: 'a frame must be JSON text' };
  // Cheap bound first: UTF-8 needs at most 3 bytes per UTF-16 unit.
  if (data.length > MAX_FRAME_BYTES || (data.length * 3 > MAX_FRAME_BYTES && Buffer.byteLength(data, 'utf8') > MAX_FRAME_BYTES)) {
    return { ok: false, code: 'frame_too_large', message: `a frame may be at most ${MAX_FRAME_BYTES} bytes` };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(data);
  } catch {
    return { ok: false, code: 'invalid_json', message: 'the frame is not valid JSON' };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, code: 'invalid_frame', message: 'a frame must be a JSON object' };
  const obj = raw as Record<string, unknown>;
  const messageId = typeof obj['message_id'] === 'string' && UUID_RE.test(obj['message_id']) ? obj['message_id'] : undefined;
  const type = typeof obj['type'] === 'string' && TYPES_FROM[from].has(obj['type']) ? (obj['type'] as FrameType) : undefined;
  const known = { ...(type ? { type } : {}), ...(messageId ? { messageId } : {}) };
  if (obj['v'] !== PROTOCOL_VERSION) {
    return { ok: false, code: 'unsupported_version', message: `v must be ${PROTOCOL_VERSION}`, ...known };
  }
  if (!type) {
    return { ok: false, code: 'unknown_type', message: `type must be one of ${[...TYPES_FROM[from]].join(', ')}`, ...known };
  }
  const parsed = frameSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue && issue.path.length > 0 ? issue.path.map(String).join('.') : 'frame';
    // zod's message describes the expectation, not the value received.
    return { ok: false, code: 'invalid_frame', message: `${type}: ${path}: ${(issue?.message ?? 'invalid').slice(0, 200)}`, ...known };
  }
  return { ok: true, frame: parsed.data };
}

/** The JSON text of a frame (adds `v`). */
export function encodeFrame(frame: OutgoingFrame): string {
  return JSON.stringify({ v: PROTOCOL_VERSION, ...frame });
}

/**
 * Counts invalid frames in a sliding window; {@link InvalidFrameBudget.spend}
 * answers false once more than `limit` fell within `windowMs` — the caller
 * closes the socket. Pure (the clock is passed in).
 */
export class InvalidFrameBudget {
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #times: number[] = [];
  /** Invalid frames seen in total (metrics, tests). */
  total = 0;

  constructor(limit: number = INVALID_FRAME_LIMIT, windowMs: number = INVALID_FRAME_WINDOW_MS) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError('limit must be a positive integer');
    if (!(windowMs > 0)) throw new RangeError('windowMs must be positive');
    this.#limit = limit;
    this.#windowMs = windowMs;
  }

  /** Record one invalid frame at `now`; false when the budget is exceeded. */
  spend(now: number): boolean {
    this.total++;
    while (this.#times.length > 0 && (this.#times[0] as number) <= now - this.#windowMs) this.#times.shift();
    this.#times.push(now);
    return this.#times.length <= this.#limit;
  }
}
