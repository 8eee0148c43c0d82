/**
 * Reconcile: give every run that never completed, and is older than the
 * cutoff, its incomplete-cleanup task (seed 004 "Creation / Upsert", issue 6).
 * The eligibility rule and the inserts are SQL
 * (bastion_private.incomplete_cleanup_reconcile, sql/migrations/0006); this
 * loop drives it in bounded batches and handles the runs SQL cannot place:
 *
 * - A run with a usable stored target snapshot gets its task inside the SQL
 *   batch (the common case: one statement per batch of {@link DEFAULT_BATCH}).
 * - A run without one (older runs, or a snapshot that fails the shape check)
 *   falls back to its job's current spec: built and validated here with
 *   core/job-spec + core/target-snapshot (fallback-target-snapshot.ts), then
 *   bastion_private.incomplete_cleanup_enqueue validates it again, saves it
 *   onto the run when the run had none, and creates the task.
 * - A run whose job spec is invalid is skipped with a log line and a row in
 *   bastion_private.incomplete_cleanup_skips, so the next tick does not meet
 *   it again — until its job is edited.
 *
 * Existing tasks are never touched (a done, ignored or abandoned task stays).
 * Safe with several workers: each tick takes a session advisory lock and a
 * worker that does not get it does nothing (the other one is reconciling);
 * every SQL step is also idempotent on its own (insert … on conflict do
 * nothing), so a DBA calling the functions by hand meanwhile changes nothing.
 */
import type pg from 'pg';
import { bastionErrorFromSql } from '../../core/database-error.ts';
import { fallbackTargetSnapshot } from './fallback-target-snapshot.ts';

/** Runs examined per SQL batch (the reference's RECONCILE_BATCH_LIMIT). */
export const DEFAULT_BATCH = 200;
/** Batches per tick: 25 × 200 = 5,000 new tasks per tick at most; the next tick continues. */
export const DEFAULT_MAX_BATCHES = 25;
/** Key of the session advisory lock one reconciler holds (hashtextextended of the name). */
export const RECONCILE_LOCK_NAME = 'bastion:incomplete_cleanup_reconcile';

/** What one tick did. */
export interface ReconcileSummary {
  /** False when another worker held the reconcile lock (this tick did nothing). */
  ran: boolean;
  /** False when settings.incomplete_cleanup_days is 0. */
  enabled: boolean;
  batches: number;
  /** Tasks created (from the run's snapshot and from the job's spec). */
  enqueued: number;
  /** Of those, tasks whose location came from the job's spec. */
  fromJobSpec: number;
  /** Runs skipped because no location could be built. */
  skipped: number;
  /** True when the tick stopped at its batch limit (or was aborted) with candidates possibly left. */
  more: boolean;
}

/** Options of {@link reconcileIncompleteCleanup}. */
export interface ReconcileOptions {
  batchSize?: number;
  maxBatches?: number;
  logger: { info(message: string): void; warn(message: string): void };
  signal?: AbortSignal | undefined;
}

interface CandidateRow {
  run_id: string;
  job_id: string;
  node_id: string;
  outcome: 'enqueued' | 'needs_snapshot';
  job_spec: unknown;
  stored_snapshot_invalid: boolean;
}

/**
 * One reconcile tick on `client` (a dedicated connection in autocommit: each
 * SQL call is its own transaction, and the advisory lock is held by the
 * session until the tick ends).
 */
export async function reconcileIncompleteCleanup(client: pg.PoolClient, options: ReconcileOptions): Promise<ReconcileSummary> {
  const batchSize = options.batchSize ?? DEFAULT_BATCH;
  const maxBatches = options.maxBatches ?? DEFAULT_MAX_BATCHES;
  const summary: ReconcileSummary = { ran: false, enabled: true, batches: 0, enqueued: 0, fromJobSpec: 0, skipped: 0, more: false };
  const { rows: settings } = await client.query<{ days: number }>('select incomplete_cleanup_days as days from bastion.settings');
  if ((settings[0]?.days ?? 0) === 0) {
    summary.enabled = false;
    return summary;
  }
  const { rows: lock } = await client.query<{ ok: boolean }>('select pg_try_advisory_lock(hashtextextended($1, 0)) as ok', [RECONCILE_LOCK_NAME]);
  if (!lock[0]?.ok) return summary;
  summary.ran = true;
  try {
    for (;;) {
      if (summary.batches >= maxBatches || options.signal?.aborted) {
        summary.more = true;
        break;
      }
      const { rows } = await client.query<CandidateRow>('select * from bastion_private.incomplete_cleanup_reconcile($1)', [batchSize]);
      summary.batches += 1;
      for (const row of rows) {
        if (row.outcome === 'enqueued') summary.enqueued += 1;
        else await placeFromJobSpec(client, row, summary, options.logger);
      }
      if (rows.length < batchSize) break;
    }
  } finally {
    await client.query('select pg_advisory_unlock(hashtextextended($1, 0))', [RECONCILE_LOCK_NAME]);
  }
  return summary;
}

async function placeFromJobSpec(client: pg.PoolClient, row: CandidateRow, summary: ReconcileSummary, logger: ReconcileOptions['logger']): Promise<void> {
  const why = row.stored_snapshot_invalid ? 'its stored target snapshot is unusable' : 'it recorded no target snapshot';
  const built = fallbackTargetSnapshot(row.job_spec, row.node_id);
  if (!built.ok) {
    await skip(client, row, built.reason, `${why}, and ${built.message}`, logger);
    summary.skipped += 1;
    return;
  }
  let outcome: string;
  try {
    const { rows } = await client.query<{ outcome: string }>('select bastion_private.incomplete_cleanup_enqueue($1, $2::jsonb) as outcome', [row.run_id, JSON.stringify(built.snapshot)]);
    outcome = rows[0]?.outcome ?? 'not_eligible';
  } catch (err) {
    const domain = bastionErrorFromSql(err);
    if (domain?.code !== 'invalid_input') throw err;
    // The SQL shape check refused what zod accepted: record it like an invalid spec.
    await skip(client, row, 'invalid_target_snapshot', `${why}, and the location built from the job's spec was refused: ${domain.message}`, logger);
    summary.skipped += 1;
    return;
  }
  if (outcome === 'enqueued') {
    summary.enqueued += 1;
    summary.fromJobSpec += 1;
    logger.info(`incomplete cleanup: run ${row.run_id} (job ${row.job_id}): ${why}; cleaning the location of the job's current spec (${built.snapshot.target.type})`);
  }
}

async function skip(client: pg.PoolClient, row: CandidateRow, reason: string, message: string, logger: ReconcileOptions['logger']): Promise<void> {
  await client.query('select bastion_private.incomplete_cleanup_skip($1, $2, $3)', [row.run_id, reason, message]);
  logger.warn(`incomplete cleanup: run ${row.run_id} (job ${row.job_id}) skipped (${reason}): ${message}; it is tried again once the job is edited`);
}
