/**
 * Agents at scale: 1,000 agents connected to one hub process (real `bastion
 * hub`: gateway and workers), each a real agent session in this process —
 * the agent's own AgentSession (WebSocket, hello, pings every 10 s) and
 * WorkRunner (results cache on disk, the hub's delete executor) — and rounds
 * in which 100 of them receive a snapshot delete at once.
 *
 * Measured:
 * - latency from enqueueing the deletes (one transaction) to each task being
 *   `done`, both taken from PostgreSQL's clock (the request's now() and the
 *   done event's ts), so polling adds nothing; p50 and p99 over all rounds;
 * - the hub process's RSS (VmRSS) before and after the 1,000 connections,
 *   per connection;
 * - anchor, in the same run: the same deletes of hub-held snapshots, executed
 *   by the hub's own workers, enqueued and measured the same way.
 *
 *   npm run bench -- agents [--agents 1000] [--batch 100] [--rounds 5] [--warmup 1] [--worker-concurrency 4] [--dir /tmp]
 *
 * Uses DATABASE_URL when set (a scratch database is created and dropped),
 * otherwise an embedded PostgreSQL in a temporary directory. Ends with:
 *   RESULT name=agents connections=… p50_ms=… p99_ms=… rss_per_conn_kib=… ratio=…
 * (ratio = agent p50 / hub p50 of the same deletes).
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { AGENT_WORK_KINDS } from '../core/agent-protocol.ts';
import { migrate } from '../db/migrator.ts';
import { createPool } from '../db/pool.ts';
import { ResultsCache } from '../agent/results-cache.ts';
import { AgentSession } from '../agent/session.ts';
import { WorkRunner } from '../agent/work-runner.ts';
import { runBackup } from '../engine/format/run-backup.ts';
import { openLocalRunDirWriter } from '../engine/targets/local-dir.ts';
import { benchDatabase } from './bench-database.ts';

// The simulated agents share this process and its libuv thread pool (4
// threads by default), where each real agent has its own: with 4, their file
// system work (the delete, the results cache's fsync) queues behind each other
// and is measured as hub latency. Set before the pool's first use.
process.env['UV_THREADPOOL_SIZE'] ??= '64';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const AGENTS = Number(arg('agents', '1000'));
const BATCH = Number(arg('batch', '100'));
const ROUNDS = Number(arg('rounds', '5'));
const MAIN = path.resolve(import.meta.dirname, '../cli/main.ts');

const work = await fs.mkdtemp(path.join(await fs.realpath(arg('dir', os.tmpdir())), 'bastion-bench-agents-'));
await fs.chmod(work, 0o711);
const cleanups: Array<() => Promise<unknown>> = [async () => fs.rm(work, { recursive: true, force: true })];
try {
  await main();
} finally {
  for (const c of cleanups.reverse()) await c().catch(() => {});
}

function database(): Promise<string> {
  return benchDatabase(work, cleanups, { max_connections: 200 });
}

async function rssKiB(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
}

async function startHubProcess(url: string): Promise<{ url: string; pid: number; logs(): string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [MAIN, 'hub'], {
    env: { PATH: process.env.PATH ?? '', DATABASE_URL: url, BASTION_LISTEN: '127.0.0.1:0', BASTION_SECRET_KEY: randomBytes(32).toString('base64'), BASTION_DATA_DIR: path.join(work, 'hub'), BASTION_LOG_LEVEL: 'warn', BASTION_GRAPHIQL: 'off', BASTION_WORKER_CONCURRENCY: arg('worker-concurrency', '4') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  // At warn level the ready line is not printed: find the port from /proc.
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (out += d));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`hub exited: ${out}`);
    const port = await listeningPort(child.pid!);
    if (port && (await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200, () => false))) {
      return {
        url: `http://127.0.0.1:${port}`,
        pid: child.pid!,
        logs: () => out.slice(-4000),
        stop: async () => {
          child.kill('SIGINT');
          await exited;
        },
      };
    }
    if (Date.now() > deadline) throw new Error(`hub not ready: ${out}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The TCP port a process listens on (from /proc/net/tcp and its fds). */
async function listeningPort(pid: number): Promise<number | null> {
  const inodes = new Set<string>();
  for (const fd of await fs.readdir(`/proc/${pid}/fd`).catch(() => [])) {
    const link = await fs.readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) inodes.add(m[1]!);
  }
  const table = await fs.readFile('/proc/net/tcp', 'utf8');
  for (const line of table.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[3] === '0A' && inodes.has(f[9] ?? '') && f[1]?.startsWith('0100007F:')) return parseInt(f[1].split(':')[1]!, 16);
  }
  return null;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}

async function main(): Promise<void> {
  const url = await database();
  const pool = createPool({ connectionString: url, max: 8 });
  cleanups.push(() => pool.end());
  await migrate(pool);

  // One real run directory, copied for every snapshot (like bench/delete.ts).
  const template = path.join(work, 'template');
  const src = path.join(work, 'src');
  await fs.mkdir(path.join(src, 'd'), { recursive: true });
  await fs.writeFile(path.join(src, 'a.txt'), 'alpha\n');
  await fs.writeFile(path.join(src, 'd', 'b.txt'), 'bravo\n');
  const tJob = randomUUID();
  const tRun = randomUUID();
  await runBackup({
    jobId: tJob,
    runId: tRun,
    startedAt: new Date(),
    source: { paths: [src], include: [], exclude: [], symlinks: 'keep' },
    format: 'archive_v1',
    encryption: { type: 'none' },
    partSizeBytes: 1024 * 1024,
    writer: await openLocalRunDirWriter({ baseDir: await fs.mkdir(template, { recursive: true }).then(() => template), jobId: tJob, runId: tRun }),
    stagingDir: path.join(work, 'staging'),
    xattrs: false,
    concurrency: 1,
  });
  const runTemplate = path.join(template, tJob, tRun);

  const hub = await startHubProcess(url);
  cleanups.push(() => hub.stop());
  await new Promise((r) => setTimeout(r, 2000));
  const rssBefore = await rssKiB(hub.pid);

  // Enroll through the real function, in one transaction.
  const token = (await pool.query<{ token: string }>('select token from bastion.create_enrollment_token(ttl_seconds => 3600, uses => $1)', [AGENTS])).rows[0]!.token;
  const { rows: agents } = await pool.query<{ agent_id: string; agent_key: string }>(
    `select e.* from generate_series(1, $2::int) i, lateral bastion_private.enroll_agent(sha256(convert_to($1, 'UTF8')), 'bench-' || i) e`,
    [token, AGENTS],
  );
  const base = path.join(work, 'base');
  await fs.mkdir(base);
  const silent = pino({ level: 'silent' });
  const sessions: AgentSession[] = [];
  const runners: WorkRunner[] = [];
  let connected = 0;
  const t0 = performance.now();
  for (let i = 0; i < agents.length; i += 50) {
    await Promise.all(
      agents.slice(i, i + 50).map(async (a) => {
        const dataDir = path.join(work, 'agents', a.agent_id);
        await fs.mkdir(dataDir, { recursive: true });
        const cache = await ResultsCache.open(dataDir);
        const session = new AgentSession({
          hubUrl: hub.url,
          key: a.agent_key,
          hello: { type: 'hello', version: 'bench', capabilities: { kinds: [...AGENT_WORK_KINDS], targets: ['local_dir'], formats: ['archive_v1'] } },
        });
        const runner = new WorkRunner({ agentId: a.agent_id, dataDir, cache, send: (f) => session.send(f), out: () => {}, logger: silent });
        session.on('frame', (f: { type: string }) => {
          if (f.type === 'snapshot_delete' || f.type === 'incomplete_cleanup') runner.accept(f as never);
        });
        const ready = new Promise<void>((resolve) => session.once('welcome', () => resolve()));
        session.start();
        await ready;
        connected++;
        sessions.push(session);
        runners.push(runner);
      }),
    );
  }
  cleanups.push(async () => Promise.all(sessions.map((s) => s.stop())));
  const connectMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 3000));
  const rssAfter = await rssKiB(hub.pid);
  const online = (await pool.query<{ n: number }>('select count(*)::int as n from bastion.agents a where bastion.agents_online(a)')).rows[0]!.n;
  console.log(`connected ${connected} agents in ${Math.round(connectMs)} ms (${online} online per the database); hub RSS ${rssBefore} → ${rssAfter} KiB`);

  // Jobs and snapshots: one job per agent (its node), one hub job for the anchor.
  const jobOf = new Map<string, string>();
  for (const a of agents) {
    const { rows } = await pool.query<{ id: string }>(
      `insert into bastion.jobs (name, node_id, spec) values ($1, $2, $3) returning id`,
      [`bench-${a.agent_id}`, a.agent_id, JSON.stringify({ v: 1, source: { type: 'filesystem', paths: ['/srv'] }, target: { type: 'local_dir', base_dir: base } })],
    );
    jobOf.set(a.agent_id, rows[0]!.id);
  }
  const hubJob = (
    await pool.query<{ id: string }>(`insert into bastion.jobs (name, node_id, spec) values ('bench-hub', 'hub', $1) returning id`, [
      JSON.stringify({ v: 1, source: { type: 'filesystem', paths: ['/srv'] }, target: { type: 'local_dir', base_dir: base } }),
    ])
  ).rows[0]!.id;

  async function snapshots(pairs: Array<{ job: string; node: string }>): Promise<Array<{ job: string; run: string }>> {
    const out: Array<{ job: string; run: string }> = [];
    for (const p of pairs) {
      const run = randomUUID();
      await fs.cp(runTemplate, path.join(base, p.job, run), { recursive: true });
      out.push({ job: p.job, run });
    }
    const snap = (n: string) => JSON.stringify({ node_id: n, target: { type: 'local_dir', base_dir: base } });
    await pool.query(
      `with r as (
         insert into bastion.runs (id, job_id, node_id, status, trigger, started_at, ended_at, target_snapshot, summary)
         select x.run, x.job, x.node, 'success', 'manual', now() - interval '1 minute', now(), x.snap::jsonb, '{"artifact_format":"archive_v1"}'
           from jsonb_to_recordset($1::jsonb) as x(run uuid, job uuid, node text, snap text)
         returning id, job_id, node_id, target_snapshot, started_at, ended_at)
       insert into bastion.run_artifacts (run_id, job_id, node_id, target_type, target_snapshot, artifact_format, started_at, ended_at)
       select id, job_id, node_id, 'local_dir', target_snapshot, 'archive_v1', started_at, ended_at from r`,
      [JSON.stringify(out.map((o, i) => ({ run: o.run, job: o.job, node: pairs[i]!.node, snap: snap(pairs[i]!.node) })))],
    );
    return out;
  }

  /** Enqueue all at once; latency per task = done event ts − the request's now(), in ms. */
  /** Per phase, the median milliseconds since the enqueue commit (from the task events). */
  const phases: Record<string, number[]> = {};
  async function round(label: string, items: Array<{ job: string; run: string }>): Promise<number[]> {
    // t0 = the moment the enqueue transaction is about to commit (its requests done).
    const c = await pool.connect();
    let t0: Date;
    try {
      await c.query('begin');
      await c.query(`select count(bastion.request_snapshot_delete(x.job, x.run)) from jsonb_to_recordset($1::jsonb) as x(job uuid, run uuid)`, [JSON.stringify(items)]);
      t0 = (await c.query<{ t0: Date }>('select clock_timestamp() as t0')).rows[0]!.t0;
      await c.query('commit');
    } finally {
      c.release();
    }
    const rows = [{ t0 }];
    const runIds = items.map((i) => i.run);
    const deadline = Date.now() + Number(arg('timeout', '120')) * 1000;
    for (;;) {
      const n = (await pool.query<{ n: number }>(`select count(*)::int as n from bastion.artifact_delete_tasks where run_id = any($1::uuid[]) and status = 'done'`, [runIds])).rows[0]!.n;
      if (n === items.length) break;
      if (Date.now() > deadline) {
        const st = await pool.query(`select status, last_error, count(*)::int from bastion.artifact_delete_tasks where run_id = any($1::uuid[]) group by 1, 2`, [runIds]);
        const jobs = await pool.query(
          `select task_identifier, count(*)::int as n, count(locked_at)::int as locked, max(attempts) as attempts, min(run_at) as first_run_at, max(last_error) as last_error
             from graphile_worker.jobs group by 1`,
        );
        throw new Error(`only ${n} of ${items.length} deletes done after 120 s: ${JSON.stringify(st.rows)}; graphile jobs ${JSON.stringify(jobs.rows)}; hub log tail:\n${hub.logs()}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const { rows: lat } = await pool.query<{ ms: number }>(
      `select extract(epoch from (e.ts - $2::timestamptz)) * 1000 as ms from bastion.artifact_delete_events e
        where e.run_id = any($1::uuid[]) and e.kind = 'deleted'`,
      [runIds, rows[0]!.t0],
    );
    const { rows: ph } = await pool.query<{ kind: string; ms: number }>(
      `select e.kind, percentile_cont(0.5) within group (order by extract(epoch from (e.ts - $2::timestamptz)) * 1000) as ms
         from bastion.artifact_delete_events e where e.run_id = any($1::uuid[]) and e.kind in ('attempt', 'dispatched', 'start', 'deleted') group by e.kind`,
      [runIds, rows[0]!.t0],
    );
    for (const p of ph) (phases[`${label}:${p.kind}`] ??= []).push(Number(p.ms));
    const { rows: om } = await pool.query<{ delivered: number; acked: number }>(
      `select percentile_cont(0.5) within group (order by extract(epoch from (m.delivered_at - $2::timestamptz)) * 1000) as delivered,
              percentile_cont(0.5) within group (order by extract(epoch from (m.acked_at - $2::timestamptz)) * 1000) as acked
         from bastion.agent_outbox m where m.run_id = any($1::uuid[])`,
      [runIds, rows[0]!.t0],
    );
    if (om[0]?.delivered !== null && om[0]?.delivered !== undefined) {
      (phases[`${label}:delivered`] ??= []).push(Number(om[0].delivered));
      (phases[`${label}:acked`] ??= []).push(Number(om[0].acked));
    }
    return lat.map((r) => Number(r.ms));
  }

  const agentLat: number[] = [];
  const hubLat: number[] = [];
  // Warm-up rounds (JIT, plans of the dynamic statements on each pooled
  // connection) are printed but not counted.
  const WARMUP = Number(arg('warmup', '1'));
  for (let r = 0; r < ROUNDS + WARMUP; r++) {
    const chosen = agents.slice((r * BATCH) % agents.length, ((r * BATCH) % agents.length) + BATCH);
    const items = await snapshots(chosen.map((a) => ({ job: jobOf.get(a.agent_id)!, node: a.agent_id })));
    const lat = await round('agent', items);
    if (r >= WARMUP) agentLat.push(...lat);
    const hubItems = await snapshots(Array.from({ length: BATCH }, () => ({ job: hubJob, node: 'hub' })));
    const hl = await round('hub', hubItems);
    if (r >= WARMUP) hubLat.push(...hl);
    const s = [...lat].sort((a, b) => a - b);
    const h = [...hl].sort((a, b) => a - b);
    const order = ['attempt', 'dispatched', 'delivered', 'acked', 'start', 'deleted'];
    for (const who of ['agent', 'hub']) {
      const parts = order.filter((k) => phases[`${who}:${k}`]).map((k) => `${k} ${phases[`${who}:${k}`]!.at(-1)!.toFixed(0)}`);
      console.log(`  ${who}: median ms since the enqueue commit: ${parts.join(', ')}`);
    }
    console.log(`${r < WARMUP ? 'warm-up' : 'round'} ${r + 1}: ${BATCH} agents at once: p50 ${percentile(s, 50).toFixed(0)} ms, p99 ${percentile(s, 99).toFixed(0)} ms | hub anchor p50 ${percentile(h, 50).toFixed(0)} ms, p99 ${percentile(h, 99).toFixed(0)} ms`);
  }
  agentLat.sort((a, b) => a - b);
  hubLat.sort((a, b) => a - b);
  const p50 = percentile(agentLat, 50);
  const p99 = percentile(agentLat, 99);
  const hubP50 = percentile(hubLat, 50);
  const executed = runners.reduce((n, r) => n + r.executions, 0);
  const perConn = (rssAfter - rssBefore) / connected;
  console.log(`agents executed ${executed} deletes; hub anchor p50 ${hubP50.toFixed(1)} ms p99 ${percentile(hubLat, 99).toFixed(1)} ms over ${hubLat.length}`);
  console.log(
    `RESULT name=agents connections=${connected} p50_ms=${p50.toFixed(1)} p99_ms=${p99.toFixed(1)} rss_per_conn_kib=${perConn.toFixed(1)} ratio=${(p50 / hubP50).toFixed(2)}`,
  );
}
