/**
 * `/metrics` in the Prometheus text format: the process-wide registry
 * (core/metrics.ts: HTTP and GraphQL latency, WebSocket connections, logins,
 * task attempt durations) plus queue depths read from the database at
 * scrape time:
 *
 * - `bastion_queue_jobs{task, state}`: graphile-worker jobs per task
 *   identifier, `running` (locked), `due` or `scheduled` (run_at later);
 * - `bastion_queue_tasks{table, status, kind}`: rows of every Bastion task
 *   table that exists in this database (artifact_delete_tasks,
 *   incomplete_cleanup_tasks, …) by status and last error kind;
 * - `bastion_runs{status}`: queued and running runs.
 *
 * The endpoint is unauthenticated (scrapers rarely carry credentials) and
 * shows only counts; put it behind the proxy's access rules if that matters.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import type { MetricsRegistry } from '../core/metrics.ts';
import type { Router } from './http-adapter.ts';

/** Task tables the depth gauge looks for (each counted when it exists). */
export const TASK_TABLES = ['artifact_delete_tasks', 'incomplete_cleanup_tasks'] as const;

/** Register the database-backed gauges on `registry` (refreshed on each scrape). */
export function addQueueDepthCollector(registry: MetricsRegistry, pool: pg.Pool, logger: Logger): () => void {
  const jobs = registry.gauge('bastion_queue_jobs', 'graphile-worker jobs by task identifier and state (running, due, scheduled).', ['task', 'state']);
  const tasks = registry.gauge('bastion_queue_tasks', 'Rows of Bastion task tables by table, status and last error kind.', ['table', 'status', 'kind']);
  const runs = registry.gauge('bastion_runs', 'Runs waiting or executing, by status.', ['status']);
  const up = registry.gauge('bastion_metrics_database_up', '1 when the last scrape could read the database.');
  return registry.addCollector(async () => {
    try {
      const client = await pool.connect();
      try {
        const j = await client.query<{ task: string; state: string; n: number }>(`
          select task_identifier as task,
                 case when locked_at is not null then 'running' when run_at <= now() then 'due' else 'scheduled' end as state,
                 count(*)::int as n
            from graphile_worker.jobs group by 1, 2`);
        jobs.reset();
        for (const r of j.rows) jobs.set({ task: r.task, state: r.state }, r.n);
        const existing = await client.query<{ t: string }>(`select t from unnest($1::text[]) t where to_regclass('bastion.' || t) is not null`, [TASK_TABLES]);
        tasks.reset();
        for (const { t } of existing.rows) {
          // t comes from TASK_TABLES (a constant list), checked to exist above.
          const r = await client.query<{ status: string; kind: string; n: number }>(`select status::text, coalesce(last_error_kind::text, '') as kind, count(*)::int as n from bastion.${t} group by 1, 2`);
          for (const row of r.rows) tasks.set({ table: t, status: row.status, kind: row.kind }, row.n);
        }
        const r = await client.query<{ status: string; n: number }>(`select status::text, count(*)::int as n from bastion.runs where status in ('queued', 'running') group by 1`);
        runs.reset();
        runs.set({ status: 'queued' }, 0);
        runs.set({ status: 'running' }, 0);
        for (const row of r.rows) runs.set({ status: row.status }, row.n);
        up.set({}, 1);
      } finally {
        client.release();
      }
    } catch (err) {
      up.set({}, 0);
      logger.warn({ err: (err as Error).message }, 'metrics: cannot read queue depths');
    }
  });
}

/** Register GET /metrics. */
export function addMetricsRoute(router: Router, registry: MetricsRegistry): void {
  router.get('/metrics', async () => ({
    status: 200,
    headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' },
    body: await registry.render(),
  }));
}
