import { randomUUID } from 'node:crypto';
import t from 'tap';
import {
  AGENT_FRAME_TYPES,
  HUB_FRAME_TYPES,
  INVALID_FRAME_LIMIT,
  INVALID_FRAME_WINDOW_MS,
  InvalidFrameBudget,
  MAX_FRAME_BYTES,
  decodeFrame,
  encodeFrame,
  type DecodeResult,
  type Frame,
  type OutgoingFrame,
} from './agent-protocol.ts';

const id = () => randomUUID();

/** One valid example of every frame (the same ones docs/agent-protocol.md shows). */
export function exampleFrames(): { agent: OutgoingFrame[]; hub: OutgoingFrame[] } {
  const message_id = id();
  return {
    agent: [
      { type: 'hello', version: '0.1.0', capabilities: { kinds: ['backup_run', 'snapshot_delete', 'incomplete_cleanup'], targets: ['local_dir', 'webdav'], formats: ['archive_v1', 'raw_tree_v1'], os: 'linux', arch: 'x64' } },
      { type: 'ping', seq: 3 },
      { type: 'ack', message_id },
      { type: 'task_event', message_id, level: 'info', kind: 'start', message: 'deleting /srv/backups/j/r', fields: { path: '/srv/backups/j/r' } },
      { type: 'task_result', message_id, result: { outcome: 'deleted', message: 'deleted snapshot data', fields: { duration_ms: 12 } } },
      { type: 'task_result', message_id, result: { kind: 'io', error: 'local_dir: remove /x failed: EACCES', fields: { errno: 'EACCES' } } },
      {
        type: 'run_progress',
        message_id,
        progress: { stage: 'packaging', files_done: 1, dirs_done: 1, bytes_done: 10, files_total: 2, dirs_total: 1, bytes_total: 20, stored_files: 0, written_bytes: 0, updated_at: new Date().toISOString() },
        message: 'packaging: 1/2 files',
      },
      { type: 'run_event', message_id, level: 'info', kind: 'agent_resumed', message: 'resumed after a restart' },
      { type: 'run_result', message_id, result: { status: 'success', summary: { artifact_format: 'archive_v1', source_total: { files: 2, dirs: 1, bytes: 20 }, transfer_total_bytes: 900, entries_count: 3, parts: 1, location: 'local_dir:/srv/b/j/r' } } },
      { type: 'run_result', message_id, result: { status: 'failed', error_code: 'source_not_found', error: 'source path /srv/data does not exist' } },
      { type: 'protocol_error', code: 'invalid_frame', message: 'backup_run: spec: invalid' },
    ],
    hub: [
      { type: 'welcome', agent_id: id(), name: 'nas', hub_version: '0.1.0', ping_interval_ms: 10_000, max_frame_bytes: MAX_FRAME_BYTES },
      { type: 'pong', seq: 3 },
      { type: 'snapshot_delete', message_id, attempt: 1, run_id: id(), job_id: id(), target_snapshot: { node_id: id(), target: { type: 'local_dir', base_dir: '/srv/backups' } } },
      { type: 'incomplete_cleanup', message_id, attempt: 2, run_id: id(), job_id: id(), target_snapshot: { node_id: id(), target: { type: 'local_dir', base_dir: '/srv/backups' } } },
      {
        type: 'backup_run',
        message_id,
        run_id: id(),
        job_id: id(),
        started_at: new Date().toISOString(),
        spec: { v: 1, source: { type: 'filesystem', paths: ['/srv/data'], include: [], exclude: [], symlinks: 'keep' }, target: { type: 'webdav', base_url: 'https://dav.example/b/', secret_name: 'nas' }, format: 'archive_v1', encryption: { type: 'none' }, part_size_bytes: 1048576, retention: null },
        target_snapshot: { node_id: id(), target: { type: 'webdav', base_url: 'https://dav.example/b/', secret_name: 'nas' } },
        credentials: { username: 'u', password: 'p' },
      },
      { type: 'cancel', message_id, reason: 'run_not_running' },
      { type: 'protocol_error', code: 'hello_required', message: 'say hello first' },
    ],
  };
}

t.test('every example decodes in its direction and round-trips', async (t) => {
  const ex = exampleFrames();
  const seen = { agent: new Set<string>(), hub: new Set<string>() };
  for (const dir of ['agent', 'hub'] as const) {
    for (const f of ex[dir]) {
      const text = encodeFrame(f);
      const r = dir === 'agent' ? decodeFrame(text, 'agent') : decodeFrame(text, 'hub');
      t.ok(r.ok, `${dir} ${f.type} decodes${r.ok ? '' : `: ${r.code} ${r.message}`}`);
      if (r.ok) seen[dir].add(r.frame.type);
    }
  }
  t.same([...seen.agent].sort(), [...AGENT_FRAME_TYPES].sort(), 'an example of every agent frame');
  t.same([...seen.hub].sort(), [...HUB_FRAME_TYPES].sort(), 'an example of every hub frame');
});

t.test('refusals carry stable codes and never echo values', async (t) => {
  const mid = id();
  const cases: Array<[string, string, string]> = [
    ['not json', '{"v":1,', 'invalid_json'],
    ['array', '[1,2]', 'invalid_frame'],
    ['null', 'null', 'invalid_frame'],
    ['string', '"hello"', 'invalid_frame'],
    ['no version', JSON.stringify({ type: 'ping' }), 'unsupported_version'],
    ['version 2', JSON.stringify({ v: 2, type: 'ping' }), 'unsupported_version'],
    ['version as string', JSON.stringify({ v: '1', type: 'ping' }), 'unsupported_version'],
    ['unknown type', JSON.stringify({ v: 1, type: 'rm_rf' }), 'unknown_type'],
    ['hub frame from an agent', JSON.stringify({ v: 1, type: 'welcome', agent_id: mid, name: 'x', hub_version: '1', ping_interval_ms: 1000, max_frame_bytes: 2048 }), 'unknown_type'],
    ['type not a string', JSON.stringify({ v: 1, type: ['ping'] }), 'unknown_type'],
    ['bad message id', JSON.stringify({ v: 1, type: 'ack', message_id: '../../etc' }), 'invalid_frame'],
    ['bad level', JSON.stringify({ v: 1, type: 'task_event', message_id: mid, level: 'fatal', kind: 'start', message: '' }), 'invalid_frame'],
    ['lifecycle kind from agent', JSON.stringify({ v: 1, type: 'run_event', message_id: mid, level: 'info', kind: 'complete', message: '' }), 'invalid_frame'],
    ['bad error kind', JSON.stringify({ v: 1, type: 'task_result', message_id: mid, result: { kind: 'kaboom', error: 'x' } }), 'invalid_frame'],
    ['huge fields', JSON.stringify({ v: 1, type: 'task_event', message_id: mid, level: 'info', kind: 'start', message: '', fields: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, i])) }), 'invalid_frame'],
    ['nested field value', JSON.stringify({ v: 1, type: 'task_event', message_id: mid, level: 'info', kind: 'start', message: '', fields: { a: { b: 1 } } }), 'invalid_frame'],
    ['negative progress', JSON.stringify({ v: 1, type: 'run_progress', message_id: mid, progress: { stage: 'scan', files_done: -1 }, message: null }), 'invalid_frame'],
    ['error code with spaces', JSON.stringify({ v: 1, type: 'run_result', message_id: mid, result: { status: 'failed', error_code: 'drop table', error: 'x' } }), 'invalid_frame'],
  ];
  for (const [name, text, code] of cases) {
    const r = decodeFrame(text, 'agent');
    t.notOk(r.ok, `${name}: refused`);
    if (!r.ok) {
      t.equal(r.code, code, `${name}: ${code}`);
      t.notMatch(r.message, /etc|kaboom|drop table/, `${name}: the value is not echoed`);
    }
  }
  const r = decodeFrame(JSON.stringify({ v: 1, type: 'task_result', message_id: mid, result: { outcome: 'DELETED!' } }), 'agent');
  t.notOk(r.ok);
  if (!r.ok) {
    t.equal(r.messageId, mid, 'the message id of a malformed frame is still reported');
    t.equal(r.type, 'task_result');
  }
  const secret = decodeFrame(JSON.stringify({ v: 1, type: 'backup_run', message_id: mid, credentials: { username: 'admin', password: 'hunter2-secret' } }), 'hub');
  t.notOk(secret.ok);
  if (!secret.ok) t.notMatch(secret.message, /hunter2/, 'credentials are never echoed');
});

t.test('size limit: one byte over is refused, at the limit accepted', async (t) => {
  const mid = id();
  const frame = (n: number) => JSON.stringify({ v: 1, type: 'task_event', message_id: mid, level: 'info', kind: 'progress', message: 'x', fields: { pad: 'y'.repeat(n) } });
  const overhead = frame(0).length;
  // fields values are capped at 1000 characters, so the padding goes in an unknown key (dropped, but counted).
  const padded = (total: number) => {
    const head = JSON.stringify({ v: 1, type: 'ping' });
    const fill = total - head.length - ',"pad":""'.length;
    return head.slice(0, -1) + `,"pad":"${'z'.repeat(fill)}"}`;
  };
  t.ok(overhead > 0);
  t.equal(Buffer.byteLength(padded(MAX_FRAME_BYTES)), MAX_FRAME_BYTES);
  t.ok(decodeFrame(padded(MAX_FRAME_BYTES), 'agent').ok, 'exactly the limit decodes');
  const over = decodeFrame(padded(MAX_FRAME_BYTES + 1), 'agent');
  t.notOk(over.ok);
  if (!over.ok) t.equal(over.code, 'frame_too_large');
  // Multi-byte characters count in bytes, not in characters.
  const wide = JSON.stringify({ v: 1, type: 'ping', pad: '€'.repeat(Math.ceil(MAX_FRAME_BYTES / 3) + 10) });
  const w = decodeFrame(wide, 'agent');
  t.notOk(w.ok);
  if (!w.ok) t.equal(w.code, 'frame_too_large');
});

/** Deterministic generator so a failing fuzz case can be replayed. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = Math.imul(s ^ (s >>> 15), 1 | s);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('fuzz: random and mutated frames never throw and valid ones stay valid', async (t) => {
  const rnd = prng(20240807);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const alphabet = ['{', '}', '[', ']', '"', ':', ',', '\\', 'u', '0', 'v', '1', 'type', 'null', 'true', ' ', '\u0000', '\ud800', 'é', '__proto__', 'constructor'];
  const weird: unknown[] = [null, true, -1, 1e308, -0, '', 'x'.repeat(5000), [], {}, [[[]]], { __proto__: { polluted: 1 } }, '../../..', '\u0000', NaN, 2 ** 53 + 1];
  const ex = exampleFrames();
  let accepted = 0;
  let refused = 0;
  const mutate = (value: unknown, depth = 0): unknown => {
    if (value === null || typeof value !== 'object' || depth > 4) return rnd() < 0.5 ? pick(weird) : value;
    if (Array.isArray(value)) return rnd() < 0.3 ? pick(weird) : value.map((v) => (rnd() < 0.3 ? mutate(v, depth + 1) : v));
    const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
    const keys = Object.keys(out);
    const op = rnd();
    if (op < 0.25 && keys.length > 0) delete out[pick(keys)];
    else if (op < 0.5 && keys.length > 0) out[pick(keys)] = pick(weird);
    else if (op < 0.7) out[pick(['extra', '__proto__', 'constructor', 'v', 'type', 'message_id'])] = pick(weird);
    else if (keys.length > 0) {
      const k = pick(keys);
      out[k] = mutate(out[k], depth + 1);
    }
    return out;
  };
  for (let i = 0; i < 20_000; i++) {
    let text: string;
    const dir = rnd() < 0.5 ? 'agent' : 'hub';
    const mode = rnd();
    if (mode < 0.3) {
      text = Array.from({ length: Math.floor(rnd() * 40) }, () => pick(alphabet)).join('');
    } else if (mode < 0.4) {
      const bytes = Buffer.from(Array.from({ length: Math.floor(rnd() * 200) }, () => Math.floor(rnd() * 256)));
      text = bytes.toString('utf8');
    } else {
      const src = { v: 1, ...(pick(dir === 'agent' ? ex.agent : ex.hub) as object) };
      const mutated = mutate(src);
      text = JSON.stringify(mutated) ?? 'undefined';
      if (rnd() < 0.2 && text.length > 2) {
        const at = Math.floor(rnd() * text.length);
        text = text.slice(0, at) + pick(alphabet) + text.slice(at + 1);
      }
    }
    let r: DecodeResult<Frame>;
    try {
      r = dir === 'agent' ? decodeFrame(text, 'agent') : decodeFrame(text, 'hub');
    } catch (e) {
      t.fail(`decodeFrame threw on case ${i}: ${(e as Error).message}`);
      continue;
    }
    if (r.ok) {
      accepted++;
      // Whatever was accepted re-encodes to a frame that decodes to the same value.
      const again = dir === 'agent' ? decodeFrame(encodeFrame(r.frame), 'agent') : decodeFrame(encodeFrame(r.frame), 'hub');
      if (!again.ok || JSON.stringify(again.frame) !== JSON.stringify(r.frame)) t.fail(`case ${i}: accepted frame does not round-trip`);
      if (Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted')) t.fail(`case ${i}: prototype polluted`);
    } else {
      refused++;
      if (typeof r.message !== 'string' || r.message.length > 400) t.fail(`case ${i}: refusal message malformed`);
    }
  }
  t.ok(accepted > 100 && refused > 1000, `both outcomes exercised (accepted ${accepted}, refused ${refused})`);
});

t.test('invalid-frame budget: the 21st invalid frame within 10 s exceeds it; old ones age out', async (t) => {
  const b = new InvalidFrameBudget();
  for (let i = 0; i < INVALID_FRAME_LIMIT; i++) t.ok(b.spend(1000 + i), `frame ${i + 1} within budget`);
  t.notOk(b.spend(1000 + INVALID_FRAME_LIMIT), 'one more within the window exceeds it');
  const c = new InvalidFrameBudget();
  let always = true;
  for (let i = 0; i < 100; i++) always &&= c.spend(i * (INVALID_FRAME_WINDOW_MS / INVALID_FRAME_LIMIT + 1));
  t.ok(always, 'a steady trickle below the rate never exceeds it');
  t.equal(c.total, 100);
  t.throws(() => new InvalidFrameBudget(0));
});
