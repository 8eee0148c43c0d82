/**
 * `/healthz` (the process is alive and serving) and `/readyz` (it can do its
 * job: database reachable, schema at this build's migration, workers running
 * when this process runs workers). Load balancers and orchestrators poll these;
 * both answer JSON.
 */
import type pg from 'pg';
import { migrationStatus } from '../db/migrator.ts';
import { json, type Router } from './http-adapter.ts';

/** What readiness needs to know about this process. */
export interface ReadinessDeps {
  pool: pg.Pool;
  /** Present when this process runs graphile-worker: reports whether the runner is up. */
  workersRunning?: () => boolean;
  /** Version string reported by both endpoints. */
  version: string;
}

/** Result of one readiness check. */
interface Check {
  ok: boolean;
  detail?: unknown;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Run every readiness check (each bounded to 2 s). */
export async function checkReadiness(deps: ReadinessDeps): Promise<{ ready: boolean; checks: Record<string, Check> }> {
  const checks: Record<string, Check> = {};
  try {
    await withTimeout(deps.pool.query('select 1'), 2000, 'database query');
    checks.database = { ok: true };
    try {
      const m = await withTimeout(migrationStatus(deps.pool), 2000, 'migration check');
      checks.migrations = { ok: m.current === m.expected, detail: m };
    } catch (e) {
      checks.migrations = { ok: false, detail: (e as Error).message };
    }
  } catch (e) {
    checks.database = { ok: false, detail: (e as Error).message };
    checks.migrations = { ok: false, detail: 'database unreachable' };
  }
  if (deps.workersRunning) checks.workers = { ok: deps.workersRunning() };
  return { ready: Object.values(checks).every((c) => c.ok), checks };
}

/** Register /healthz and /readyz. */
export function addHealthRoutes(router: Router, deps: ReadinessDeps): void {
  const started = Date.now();
  router.get('/healthz', () => json(200, { status: 'ok', version: deps.version, uptime_s: Math.round((Date.now() - started) / 1000) }, { 'cache-control': 'no-store' }));
  router.get('/readyz', async () => {
    const r = await checkReadiness(deps);
    return json(r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not_ready', version: deps.version, checks: r.checks }, { 'cache-control': 'no-store' });
  });
}
