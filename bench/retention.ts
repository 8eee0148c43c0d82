/**
 * Retention at scale (issue 5): a full tick over 1,000,000 present
 * snapshots in 10,000 jobs whose policies delete about 5 %, against an
 * anchor measured in the same run — one plain SELECT of those 1,000,000
 * rows (the columns the selection needs, read with node-pg's defaults) —
 * and preview latency for one job with 10,000 snapshots. Goals: tick ≤ 5×
 * the read, preview p99 < 150 ms. Prints figures; asserts nothing.
 *
 *   npm run bench -- retention [--jobs 10000] [--per-job 100] [--previews 200]
 *
 * The jobs: 40 % keep_last 95, 30 % keep_daily 95 in four time zones
 * (calendar buckets), 30 % inherit a hub default of keep_days 95; each has
 * `per-job` daily snapshots, 1 % pinned, a few leased. The tick measured is
 * the first of a round (it enqueues every deletion through the real delete
 * queue: tasks, events, graphile-worker jobs, ledger rows); a second round
 * with nothing left to delete shows the steady state.
 */
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { createPool } from '../db/pool.ts';
import { withScratchDatabase } from '../db/scratch-database.ts';
import { previewRetention } from '../engine/retention/retention-preview.ts';
import { runRetentionTick } from '../engine/retention/retention-tick.ts';

const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '10000' },
    'per-job': { type: 'string', default: '100' },
    previews: { type: 'string', default: '200' },
  },
});
const JOBS = Number(args.jobs);
const PER_JOB = Number(args['per-job']);
const PREVIEWS = Number(args.previews);
const DAY_S = 86_400;

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

function roundMs(ms: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, Math.round(v)]));
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

async function populate(pool: pg.Pool): Promise<string> {
  const spec = (retention: string) => `jsonb_build_object('v', 1, 'source', jsonb_build_object('type', 'filesystem', 'paths', jsonb_build_array('/srv/data')),
      'target', jsonb_build_object('type', 'local_dir', 'base_dir', '/var/backups/bastion'), 'format', 'archive_v1', 'retention', ${retention})`;
  await pool.query(`select bastion.set_default_retention('{"enabled": true, "keep_days": 95}')`);
  await pool.query(
    `insert into bastion.jobs (name, schedule_timezone, spec)
     select 'bench-' || i,
            (array['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Tokyo'])[1 + i % 4],
            case when i % 10 < 4 then ${spec(`'{"enabled": true, "keep_last": 95}'::jsonb`)}
                 when i % 10 < 7 then ${spec(`'{"enabled": true, "keep_daily": 95}'::jsonb`)}
                 else ${spec(`'null'::jsonb`)} end
       from generate_series(1, $1) i`,
    [JOBS],
  );
  // Runs and index rows: one a day per job, the newest an hour ago (set-based; ~1 min for 1 M).
  await pool.query(
    `insert into bastion.runs (id, job_id, node_id, status, trigger, created_at, started_at, ended_at, target_snapshot, summary)
     select gen_random_uuid(), j.id, 'hub', 'success', 'schedule', e - interval '1 minute', e - interval '1 minute', e,
            '{"node_id": "hub", "target": {"type": "local_dir", "base_dir": "/var/backups/bastion"}}',
            '{"artifact_format": "archive_v1", "transfer_total_bytes": 600}'
       from bastion.jobs j
      cross join lateral (select now() - interval '1 hour' - make_interval(secs => d * ${DAY_S} + (hashtext(j.id::text) & 1023)) as e
                            from generate_series(0, $1 - 1) d) g`,
    [PER_JOB],
  );
  await pool.query(
    `insert into bastion.run_artifacts (run_id, job_id, node_id, target_type, target_snapshot, artifact_format, status, started_at, ended_at,
                                        source_files, source_dirs, source_bytes, transfer_bytes, pinned_at)
     select r.id, r.job_id, 'hub', 'local_dir', r.target_snapshot, 'archive_v1', 'present', r.started_at, r.ended_at, 10, 2, 1000, 600,
            case when hashtext(r.id::text) % 100 = 0 then now() end
       from bastion.runs r`,
  );
  await pool.query(
    `insert into bastion.snapshot_leases (run_id, holder_kind, operation_id, expires_at)
     select run_id, 'restore', gen_random_uuid(), now() + interval '1 day' from bastion.run_artifacts where hashtext(run_id::text) % 5000 = 1`,
  );
  // One job with 10,000 hourly snapshots for the preview (a GFS policy).
  const { rows } = await pool.query<{ id: string }>(
    `insert into bastion.jobs (name, schedule_timezone, spec) values ('bench-preview', 'Europe/Berlin',
       ${spec(`'{"enabled": true, "keep_last": 24, "keep_hourly": 48, "keep_daily": 30, "keep_weekly": 12, "keep_monthly": 12, "keep_yearly": 5, "min_keep": 10}'::jsonb`)})
     returning id`,
  );
  const previewJob = rows[0]!.id;
  await pool.query(
    `with r as (
       insert into bastion.runs (job_id, node_id, status, trigger, created_at, started_at, ended_at, target_snapshot)
       select $1, 'hub', 'success', 'schedule', e - interval '1 minute', e - interval '1 minute', e,
              '{"node_id": "hub", "target": {"type": "local_dir", "base_dir": "/var/backups/bastion"}}'
         from (select now() - make_interval(hours => h) as e from generate_series(0, 9999) h) g
       returning id, job_id, started_at, ended_at, target_snapshot
     )
     insert into bastion.run_artifacts (run_id, job_id, node_id, target_type, target_snapshot, artifact_format, status, started_at, ended_at, transfer_bytes)
     select id, job_id, 'hub', 'local_dir', target_snapshot, 'archive_v1', 'present', started_at, ended_at, 600 from r`,
    [previewJob],
  );
  await pool.query('vacuum analyze');
  return previewJob;
}

await withScratchDatabase(async (url) => {
  const pool = createPool({ connectionString: url, max: 4 });
  try {
    console.log(`populating ${JOBS.toLocaleString('en')} jobs × ${PER_JOB} snapshots …`);
    const setup = await timed(() => populate(pool));
    const { rows: counts } = await pool.query<{ n: number }>(`select count(*)::int as n from bastion.run_artifacts where status = 'present'`);
    console.log(`  ${counts[0]!.n.toLocaleString('en')} present snapshots in ${(setup.ms / 1000).toFixed(1)} s`);
    const previewJob = setup.value;

    // Anchor: one plain SELECT of every present snapshot (excluding the preview job), node-pg defaults. Median of 3.
    const anchorRuns: number[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await timed(() =>
        pool.query(
          `select run_id, job_id, ended_at, pinned_at, pin_expires_at, source_bytes, transfer_bytes
             from bastion.run_artifacts where status = 'present' and job_id <> $1`,
          [previewJob],
        ),
      );
      anchorRuns.push(r.ms);
      if (i === 0) console.log(`  anchor read ${r.value.rows.length.toLocaleString('en')} rows`);
    }
    const selectS = quantile(anchorRuns, 0.5) / 1000;

    // Keep the preview job out of the tick's way: the tick covers the 10,000 jobs.
    await pool.query(`update bastion.jobs set archived_at = now() where id = $1`, [previewJob]);
    const round = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000);
    // Count time per SQL function during the first tick (a fresh pool picks the setting up).
    await pool.query(`select set_config('track_functions', 'pl', false), pg_stat_reset()`);
    await pool.query(`do $$ begin execute format('alter database %I set track_functions = pl', current_database()); end $$`);
    const tickPool = createPool({ connectionString: url, max: 2 });
    const tick = await timed(() => runRetentionTick(tickPool, { roundAt: round }));
    await tickPool.end(); // a backend flushes its statistics when it exits
    await new Promise((r) => setTimeout(r, 500));
    const { rows: fns } = await pool.query<{ f: string; calls: number; total: number; self: number }>(
      `select funcname as f, calls::int, total_time as total, self_time as self from pg_stat_user_functions
        where funcname in ('enqueue_snapshot_deletes', 'retention_enqueue_jobs', 'add_jobs', 'artifact_delete_sync', 'task_schedule')`,
    );
    const fn = (name: string) => fns.find((r) => r.f === name);
    const generic = fn('enqueue_snapshot_deletes');
    const s = tick.value;
    console.log(
      `  tick: ${s.jobs} jobs, ${s.enqueued.toLocaleString('en')} deletes queued, ${s.skipped_by_limits} held back by limits, ${s.skipped} refused, ${s.errors} errors, ${s.batches} batch writes, ${(tick.ms / 1000).toFixed(2)} s`,
    );
    const steady = await timed(() => runRetentionTick(pool, { roundAt: new Date(round.getTime() + 3_600_000) }));
    console.log(`    ms ${JSON.stringify(roundMs(s.ms))}`);
    if (generic) {
      console.log(
        `    of the write, the delete queue's request function (bastion_private.enqueue_snapshot_deletes: task rows, events, graphile-worker jobs, snapshot status) took ${(generic.total / 1000).toFixed(2)} s over ${generic.calls} calls (${(generic.total / generic.calls).toFixed(2)} ms per call; graphile_worker.add_jobs ${((fn('add_jobs')?.total ?? 0) / 1000).toFixed(2)} s of it); retention's own SQL ${(((fn('retention_enqueue_jobs')?.total ?? 0) - generic.total) / 1000).toFixed(2)} s`,
      );
    }
    console.log(`  steady-state tick (nothing left to delete): ${steady.value.jobs} jobs, ${steady.value.enqueued} queued, ${(steady.ms / 1000).toFixed(2)} s`);
    console.log(`    ms ${JSON.stringify(roundMs(steady.value.ms))}`);
    const idle = await timed(() => runRetentionTick(pool, { roundAt: new Date(round.getTime() + 3_600_000) }));
    console.log(`  a minute's tick once the round is done: ${idle.ms.toFixed(1)} ms`);

    // Preview of the 10,000-snapshot job, first page (100 decisions) serialised as the API would.
    await pool.query(`update bastion.jobs set archived_at = null where id = $1`, [previewJob]);
    for (let i = 0; i < 10; i++) JSON.stringify(await previewRetention(pool, previewJob));
    const lat: number[] = [];
    let totals;
    for (let i = 0; i < PREVIEWS; i++) {
      const r = await timed(async () => JSON.stringify(await previewRetention(pool, previewJob)));
      lat.push(r.ms);
      if (i === 0) totals = (JSON.parse(r.value) as { totals: unknown }).totals;
    }
    console.log(`  preview totals: ${JSON.stringify(totals)}`);
    const tickS = tick.ms / 1000;
    console.log(
      `RESULT name=retention tick_s=${tickS.toFixed(2)} select_s=${selectS.toFixed(2)} ratio=${(tickS / selectS).toFixed(2)} preview_p50_ms=${quantile(lat, 0.5).toFixed(1)} preview_p99_ms=${quantile(lat, 0.99).toFixed(1)}`,
    );
  } finally {
    await pool.end();
  }
});
