/**
 * GraphQL API throughput and latency on a large snapshot index: 1,000,000
 * snapshots over 20 jobs; a filtered page of 50 (one job's present
 * snapshots, newest first) requested over GraphQL by 32 concurrent
 * autocannon connections, authenticated with an API token, through the whole
 * gateway (uWS, grafserv, authentication lookup, role transaction, RLS).
 *
 * Anchor, measured in the same run on the same database: the equivalent SQL
 * (same filter, order and page) issued through a raw `pg` pool by 32
 * concurrent loops — what the page costs without any API.
 *
 *   npm run bench -- api [--snapshots 1000000] [--jobs 20] [--seconds 5] [--rounds 3] [--connections 32]
 *
 * The two sides alternate (raw, GraphQL, raw, GraphQL, …) for `rounds`
 * rounds of `seconds` each, and the medians are reported: on a machine
 * whose load changes (other work sharing the cores), measuring one side
 * entirely before the other made the ratio swing between 1.5 and 3.9.
 *
 * Uses DATABASE_URL when set (a scratch database is created and dropped),
 * otherwise an embedded PostgreSQL in a temporary directory. Ends with:
 *   RESULT name=api graphql_rps=… graphql_p99_ms=… raw_rps=… raw_p99_ms=… ratio=…
 * where ratio = the median over rounds of graphql p99 / raw p99 (the goal:
 * ≤ 3, and ≥ 1,000 req/s).
 */
import '../gateway/graphile-env.ts';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { pino } from 'pino';
import { migrate } from '../db/migrator.ts';
import { createPool } from '../db/pool.ts';
import { createGateway } from '../gateway/app.ts';
import { MetricsRegistry } from '../core/metrics.ts';
import { benchDatabase } from './bench-database.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const SNAPSHOTS = Number(arg('snapshots', '1000000'));
const JOBS = Number(arg('jobs', '20'));
const SECONDS = Number(arg('seconds', '5'));
const ROUNDS = Number(arg('rounds', '3'));
const CONNECTIONS = Number(arg('connections', '32'));
const PAGE = 50;
const AUTOCANNON = fileURLToPath(new URL('../node_modules/autocannon/autocannon.js', import.meta.url));
let rotation = 0;

const QUERY = `query Page($job: UUID!) {
  allRunArtifacts(first: ${PAGE}, condition: { jobId: $job, status: present }, orderBy: [ENDED_AT_DESC, RUN_ID_DESC]) {
    nodes { runId status endedAt sourceBytes transferBytes artifactFormat pinnedAt }
    pageInfo { hasNextPage endCursor }
  }
}`;
const RAW_SQL = `select run_id, status, ended_at, source_bytes, transfer_bytes, artifact_format, pinned_at
  from bastion.run_artifacts where job_id = $1 and status = 'present' order by ended_at desc, run_id desc limit ${PAGE + 1}`;

const work = await fs.mkdtemp(path.join(os.tmpdir(), 'bastion-bench-api-'));
await fs.chmod(work, 0o711);
const cleanups: Array<() => Promise<unknown>> = [async () => fs.rm(work, { recursive: true, force: true })];
try {
  await main();
} finally {
  for (const c of cleanups.reverse()) await c().catch(() => {});
}

function database(): Promise<string> {
  return benchDatabase(work, cleanups, { max_connections: 200, shared_buffers: '256MB' });
}

/** 1,000,000 success runs and their index rows, in SQL (≈ a minute): 85 % present, the rest deleted, deleting or missing. */
async function load(pool: pg.Pool): Promise<string[]> {
  const started = performance.now();
  const c = await pool.connect();
  try {
    const { rows } = await c.query<{ id: string }>(
      `insert into bastion.jobs (name, spec)
       select 'bench-' || i, '{"v":1,"source":{"type":"filesystem","paths":["/srv/data"]},"target":{"type":"local_dir","base_dir":"/var/backups/bastion"},"format":"archive_v1"}'::jsonb
         from generate_series(1, $1) i returning id`,
      [JOBS],
    );
    const jobs = rows.map((r) => r.id);
    // Bulk load without the change-notification triggers (a million NOTIFYs
    // nobody listens to); the index rows are what the benchmark reads.
    await c.query(`set session_replication_role = replica`);
    const per = Math.ceil(SNAPSHOTS / JOBS);
    const snapshot = `jsonb_build_object('node_id', 'hub', 'target', jsonb_build_object('type', 'local_dir', 'base_dir', '/var/backups/bastion'))`;
    for (const job of jobs) {
      await c.query(
        `with r as (
           insert into bastion.runs (job_id, node_id, status, trigger, created_at, started_at, ended_at, target_snapshot, summary)
           select $1, 'hub', 'success', 'schedule', t - interval '1 minute', t - interval '1 minute', t, ${snapshot}, '{"artifact_format":"archive_v1"}'
             from (select now() - make_interval(mins => i * 7) as t from generate_series(1, $2) i) s
           returning id, started_at, ended_at)
         insert into bastion.run_artifacts (run_id, job_id, node_id, target_type, target_snapshot, artifact_format, status, started_at, ended_at,
                                            source_files, source_dirs, source_bytes, transfer_bytes, deleted_at)
         select r.id, $1, 'hub', 'local_dir', ${snapshot}, 'archive_v1', st.s::bastion.snapshot_status, r.started_at, r.ended_at,
                1000, 100, 123456789, 98765432, case when st.s = 'deleted' then r.ended_at else null end
           from (select *, random() as p from r) r,
                lateral (select case when r.p < 0.85 then 'present' when r.p < 0.95 then 'deleted' when r.p < 0.98 then 'deleting' else 'missing' end as s) st`,
        [job, per],
      );
    }
    await c.query(`set session_replication_role = origin`);
    await c.query('analyze bastion.runs, bastion.run_artifacts');
    const { rows: n } = await c.query<{ n: number }>('select count(*)::int as n from bastion.run_artifacts');
    console.log(`loaded ${n[0]?.n} snapshots over ${JOBS} jobs in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return jobs;
  } finally {
    c.release();
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

async function raw(pool: pg.Pool, jobs: string[]): Promise<{ rps: number; p50: number; p99: number }> {
  const latencies: number[] = [];
  const until = performance.now() + SECONDS * 1000;
  let i = 0;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        await pool.query(RAW_SQL, [jobs[i++ % jobs.length]]);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { rps: latencies.length / SECONDS, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

/**
 * autocannon in its own process: in this process it would share the event
 * loop with the gateway under test (the first version did, and the profile
 * showed a third of the CPU in autocannon's socket writes). One job per
 * connection group is enough variety: the page is an index range scan.
 */
async function graphql(base: string, token: string, jobs: string[]): Promise<{ rps: number; p50: number; p99: number; errors: number }> {
  const body = JSON.stringify({ query: QUERY, variables: { job: jobs[rotation++ % jobs.length] } });
  const args = [AUTOCANNON, '--json', '-n', '-c', String(CONNECTIONS), '-d', String(SECONDS), '-m', 'POST', '-H', 'content-type=application/json', '-H', 'accept=application/graphql-response+json', '-H', `authorization=Bearer ${token}`, '-b', body, `${base}/graphql`];
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('exit', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`autocannon exited ${code}: ${stderr.slice(0, 500)}`))));
  });
  const result = JSON.parse(out) as { requests: { average: number }; latency: { p50: number; p99: number }; errors: number; non2xx: number };
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.non2xx };
}
async function main(): Promise<void> {
  const url = await database();
  const setup = createPool({ connectionString: url, max: 4 });
  cleanups.push(() => setup.end());
  await migrate(setup);
  const jobs = await load(setup);
  const { rows } = await setup.query<{ id: string }>(`insert into bastion.users (username, role) values ('bench', 'admin') returning id`);
  const { rows: tok } = await setup.query<{ token: string }>(`select token from bastion.create_api_token(name => 'bench', role => 'viewer', user_id => $1)`, [rows[0]?.id]);
  const token = tok[0]?.token as string;

  // One connection per concurrent request on both sides (the gateway's pool
  // also holds long-lived LISTEN clients: GraphQL subscriptions, the agent hub).
  const gatewayPool = createPool({ connectionString: url, max: CONNECTIONS + 4, applicationName: 'bench-gateway' });
  cleanups.push(() => gatewayPool.end());
  const gateway = createGateway({ pool: gatewayPool, logger: pino({ level: 'warn' }), version: 'bench', metrics: new MetricsRegistry() });
  cleanups.push(() => gateway.close());
  await gateway.ready();
  const port = await gateway.listen('127.0.0.1', 0);
  const base = `http://127.0.0.1:${port}`;

  // Check the answer once, and warm both paths.
  const check = await fetch(`${base}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query: QUERY, variables: { job: jobs[0] } }) });
  const body = (await check.json()) as { data?: { allRunArtifacts: { nodes: unknown[] } }; errors?: unknown };
  if (!body.data || body.data.allRunArtifacts.nodes.length !== PAGE) throw new Error(`unexpected answer: ${JSON.stringify(body).slice(0, 500)}`);
  const rawPool = createPool({ connectionString: url, max: CONNECTIONS, applicationName: 'bench-raw' });
  cleanups.push(() => rawPool.end());
  const { rows: plan } = await rawPool.query<{ 'QUERY PLAN': string }>(`explain ${RAW_SQL.replace('$1', `'${jobs[0]}'`)}`);
  console.log(`raw plan: ${plan.map((r) => r['QUERY PLAN'].trim()).join(' | ').slice(0, 300)}`);

  // Warm both paths: plans cached, pools connected.
  await raw(rawPool, jobs);
  await graphql(base, token, jobs);
  const rounds: Array<{ raw: Awaited<ReturnType<typeof raw>>; g: Awaited<ReturnType<typeof graphql>> }> = [];
  for (let i = 0; i < ROUNDS; i++) {
    const r = await raw(rawPool, jobs);
    const g = await graphql(base, token, jobs);
    rounds.push({ raw: r, g });
    console.log(
      `round ${i + 1}: raw ${r.rps.toFixed(0)} req/s p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} ms | GraphQL ${g.rps.toFixed(0)} req/s p50 ${g.p50} p99 ${g.p99} ms, errors ${g.errors} | ratio ${(g.p99 / r.p99).toFixed(2)}`,
    );
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const rawRps = median(rounds.map((x) => x.raw.rps));
  const rawP99 = median(rounds.map((x) => x.raw.p99));
  const gRps = median(rounds.map((x) => x.g.rps));
  const gP99 = median(rounds.map((x) => x.g.p99));
  const ratio = median(rounds.map((x) => x.g.p99 / x.raw.p99));
  console.log(`raw pg pool, ${CONNECTIONS} concurrent (median of ${ROUNDS}): ${rawRps.toFixed(0)} req/s, p99 ${rawP99.toFixed(2)} ms`);
  console.log(`GraphQL over HTTP, ${CONNECTIONS} connections (median of ${ROUNDS}): ${gRps.toFixed(0)} req/s, p99 ${gP99} ms`);
  console.log(`RESULT name=api graphql_rps=${gRps.toFixed(0)} graphql_p99_ms=${gP99} raw_rps=${rawRps.toFixed(0)} raw_p99_ms=${rawP99.toFixed(2)} ratio=${ratio.toFixed(2)}`);
}
