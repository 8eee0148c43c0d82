/**
 * The retention tick: one pass ("round") over every job that is not
 * archived and whose effective policy is enabled, enqueuing what the
 * selection deletes within the limits. A round is a slot of
 * `settings.retention_schedule` (cron, UTC; hourly by default); the crontab
 * wakes the task every minute and the task does the round whose slot most
 * recently passed, for the jobs that round has not processed yet
 * (bastion.retention_job_state.round_at). So:
 *
 * - any number of worker processes may tick at once: each job is processed
 *   once per round (the SQL write re-checks the round under the job's
 *   advisory lock), and the per-tick and per-day limits hold together with
 *   operators' applies (bastion_private.retention_enqueue);
 * - a tick that dies half-way is finished by the next minute's tick;
 * - a job created (or whose policy becomes enabled) between rounds is
 *   processed at the next minute for the current round, not an hour later.
 *
 * Work is batched, never N+1: the candidate jobs come a page at a time (with
 * their present-snapshot counts, to size batches), then per batch one query
 * loads every present snapshot of its jobs, one counts today's enqueues, the
 * selection runs in memory per job, and one statement writes the batch
 * (locks in job id order; inside it, the delete queue's request function is
 * called once per policy and 1000 deletes, not once per job — see
 * bastion_private.retention_enqueue_jobs in sql/migrations/0005).
 */
import type pg from 'pg';
import { latestSlot, parseSchedule } from '../../core/cron-schedule.ts';
import { BastionError } from '../../core/errors.ts';
import { retentionDayStart, selectRetention } from '../../core/retention-select.ts';
import { sanitizeErrorText } from '../../core/redact.ts';
import {
  callTickJobs,
  countEnqueuedSince,
  getRetentionSettings,
  listTickJobs,
  loadPresentSnapshots,
  pruneRetentionLedger,
  RETENTION_SCAN_LIMIT,
  type RetentionEnqueueResult,
  type TickItem,
  type TickJob,
} from '../../db/queries/retention.ts';
import { resolveStoredPolicy, type ResolvedPolicy } from './policy-input.ts';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** The schedule used when settings.retention_schedule does not parse (edited by hand). */
export const DEFAULT_RETENTION_SCHEDULE = '0 * * * *';
/** Present snapshots loaded per batch (jobs are grouped until they reach it; a bigger job is a batch alone). */
export const DEFAULT_BATCH_ROWS = 50_000;
/** Candidate jobs read per page. */
export const JOBS_PER_PAGE = 1000;

/** Where the tick reports. */
export interface TickLogger {
  info(message: string): void;
  warn(message: string): void;
}

/** Options of {@link runRetentionTick}. */
export interface RetentionTickOptions {
  /** The selection's clock (default: the database's now). */
  now?: Date;
  /** The time the tick is for (default: `now`); the round is the latest schedule slot at or before it. */
  tickAt?: Date;
  /** Force a round (tests, benchmarks); default from the schedule. */
  roundAt?: Date;
  batchRows?: number;
  logger?: TickLogger;
  signal?: AbortSignal;
}

/** What one tick did. */
export interface RetentionTickSummary {
  /** The round processed (null: the schedule has no slot yet). */
  round_at: Date | null;
  /** Jobs this tick wrote a result for (done or error). */
  jobs: number;
  enqueued: number;
  already_queued: number;
  skipped_by_limits: number;
  skipped: number;
  /** Jobs whose policy or time zone is invalid, or whose write failed (see retention_job_state.error). */
  errors: number;
  /** Jobs another worker processed in this round first. */
  already_ticked: number;
  /** Jobs whose policy changed while this tick ran (the next tick uses the new one). */
  policy_changed: number;
  /** Jobs with more present snapshots than one selection reads. */
  truncated: number;
  /** Old ledger rows removed. */
  ledger_pruned: number;
  /** Statements of the batch writes (one per batch). */
  batches: number;
  /** Where the time went, in milliseconds: listing jobs, loading snapshots and counts, selecting, writing. */
  ms: { list: number; load: number; select: number; write: number };
}

/** The round a tick at `now` processes under `schedule` (UTC), falling back to hourly if it does not parse. */
export function retentionRound(schedule: string, now: Date, logger?: TickLogger): Date | null {
  let cron;
  try {
    cron = parseSchedule(schedule, 'UTC', now);
  } catch (err) {
    logger?.warn(`retention-tick: settings.retention_schedule ${JSON.stringify(schedule.slice(0, 80))} is invalid (${(err as Error).message}); using ${DEFAULT_RETENTION_SCHEDULE}`);
    cron = parseSchedule(DEFAULT_RETENTION_SCHEDULE, 'UTC', now);
  }
  return latestSlot(cron, now);
}

function errorItem(job: TickJob, err: unknown, extra: { snapshots?: number; truncated?: boolean } = {}): TickItem {
  const code = err instanceof BastionError ? err.code : 'internal_error';
  return { job_id: job.id, error_code: code, error: sanitizeErrorText(err instanceof Error ? err.message : String(err)), ...extra };
}

/**
 * Run one tick (see the file comment) on `db`, statement by statement in
 * autocommit: a pool, or one client outside any transaction (each batch write
 * is then its own transaction).
 */
export async function runRetentionTick(pool: Queryable, options: RetentionTickOptions = {}): Promise<RetentionTickSummary> {
  const settings = await getRetentionSettings(pool);
  const now = options.now ?? settings.now;
  const roundAt = options.roundAt ?? retentionRound(settings.retention_schedule, options.tickAt ?? now, options.logger);
  const summary: RetentionTickSummary = {
    round_at: roundAt,
    jobs: 0,
    enqueued: 0,
    already_queued: 0,
    skipped_by_limits: 0,
    skipped: 0,
    errors: 0,
    already_ticked: 0,
    policy_changed: 0,
    truncated: 0,
    ledger_pruned: 0,
    batches: 0,
    ms: { list: 0, load: 0, select: 0, write: 0 },
  };
  if (roundAt === null) return summary;
  const batchRows = Math.max(1, options.batchRows ?? DEFAULT_BATCH_ROWS);
  const dayStart = retentionDayStart(now);
  const cache: PolicyCache = new Map();

  // Batches one after the other. Writing two at once was measured (2 cores,
  // bench/retention.ts with 3,000 jobs): the first tick took as long (8.7 s
  // either way) because the delete queue's inserts contend, and the
  // steady-state tick got slower (0.8 → 1.4 s).
  let afterId: string | null = null;
  for (;;) {
    if (options.signal?.aborted) break;
    const t0 = performance.now();
    const page = await listTickJobs(pool, roundAt, afterId, JOBS_PER_PAGE);
    summary.ms.list += performance.now() - t0;
    if (page.length === 0) break;
    afterId = page[page.length - 1]!.id;
    let batch: TickJob[] = [];
    let rows = 0;
    for (const job of page) {
      const n = Math.min(job.present, RETENTION_SCAN_LIMIT + 1);
      if (batch.length > 0 && rows + n > batchRows) {
        await runBatch(pool, batch, roundAt, now, dayStart, summary, options.logger, cache);
        batch = [];
        rows = 0;
        if (options.signal?.aborted) break;
      }
      batch.push(job);
      rows += n;
    }
    if (batch.length > 0 && !options.signal?.aborted) await runBatch(pool, batch, roundAt, now, dayStart, summary, options.logger, cache);
    if (page.length < JOBS_PER_PAGE) break;
  }
  if (!options.signal?.aborted) summary.ledger_pruned = await pruneRetentionLedger(pool);
  return summary;
}

/** Policies resolved during one tick, by their stored JSON (most jobs share a few policies). */
type PolicyCache = Map<string, ResolvedPolicy | { error: unknown }>;

function resolveCached(cache: PolicyCache, job: TickJob): ResolvedPolicy {
  const own = job.spec_retention === null || job.spec_retention === undefined;
  const key = own ? `d:${JSON.stringify(job.hub_default)}` : `j:${JSON.stringify(job.spec_retention)}`;
  let r = cache.get(key);
  if (r === undefined) {
    try {
      r = resolveStoredPolicy(job.spec_retention, job.hub_default);
    } catch (error) {
      r = { error };
    }
    cache.set(key, r);
  }
  if ('error' in r) throw r.error;
  return r;
}

async function runBatch(pool: Queryable, jobs: TickJob[], roundAt: Date, now: Date, dayStart: Date, summary: RetentionTickSummary, logger: TickLogger | undefined, cache: PolicyCache): Promise<void> {
  const ids = jobs.map((j) => j.id);
  let t0 = performance.now();
  const present = await loadPresentSnapshots(pool, ids);
  const already = await countEnqueuedSince(pool, ids, dayStart);
  summary.ms.load += performance.now() - t0;
  t0 = performance.now();
  const items: TickItem[] = [];
  for (const job of jobs) {
    const p = present.get(job.id)!;
    if (p.truncated) summary.truncated++;
    let resolved;
    try {
      resolved = resolveCached(cache, job);
    } catch (err) {
      items.push(errorItem(job, err, { snapshots: p.snapshots.length, truncated: p.truncated }));
      continue;
    }
    if (!resolved.policy.enabled) continue; // the stored JSON said enabled; zod agrees, so this does not happen
    let selection;
    try {
      selection = selectRetention({ policy: resolved.policy, snapshots: p.snapshots, now, timeZone: job.schedule_timezone, already_enqueued_today: already.get(job.id) ?? 0 });
    } catch (err) {
      items.push(errorItem(job, err, { snapshots: p.snapshots.length, truncated: p.truncated }));
      continue;
    }
    const runIds: string[] = [];
    for (const d of selection.decisions) if (d.decision === 'delete') runIds.push(d.run_id);
    items.push({
      job_id: job.id,
      policy: resolved.policy,
      policy_hash: resolved.policy_hash,
      policy_source: resolved.source === 'job' ? 'job' : 'hub_default',
      expected_policy: job.effective_raw,
      run_ids: runIds,
      snapshots: p.snapshots.length,
      truncated: p.truncated,
      skipped_by_limits: selection.totals.skipped,
    });
  }
  summary.ms.select += performance.now() - t0;
  t0 = performance.now();
  const results = await writeBatch(pool, roundAt, items);
  summary.ms.write += performance.now() - t0;
  summary.batches++;
  const selectionSkips = new Map(items.map((i) => [i.job_id, 'skipped_by_limits' in i ? i.skipped_by_limits : 0]));
  for (const r of results) {
    switch (r.status) {
      case 'done':
        summary.jobs++;
        summary.enqueued += r.enqueued.length;
        summary.already_queued += r.already_queued.length;
        summary.skipped_by_limits += r.skipped_by_limits.length + (selectionSkips.get(r.job_id) ?? 0);
        summary.skipped += r.skipped.length;
        break;
      case 'error':
        summary.jobs++;
        summary.errors++;
        logger?.warn(`retention-tick: job ${r.job_id} skipped in round ${roundAt.toISOString()}: ${r.error_code ?? 'error'}${r.error ? ` (${r.error})` : ''}`);
        break;
      case 'already_ticked':
        summary.already_ticked++;
        break;
      case 'policy_changed':
        summary.policy_changed++;
        break;
      case 'archived':
        break;
    }
  }
}

/**
 * Write a batch in one transaction; if it fails (one job's enqueue hit an
 * error), write its jobs one by one so only the failing job is recorded as an
 * error and the others proceed. No subtransaction per job in the fast path:
 * more than 64 in one transaction overflow PostgreSQL's subtransaction cache
 * and slow every concurrent reader.
 */
async function writeBatch(pool: Queryable, roundAt: Date, items: TickItem[]): Promise<RetentionEnqueueResult[]> {
  try {
    return await callTickJobs(pool, roundAt, items);
  } catch (err) {
    if (items.length === 1) {
      const item = items[0]!;
      return callTickJobs(pool, roundAt, [
        { job_id: item.job_id, error_code: err instanceof BastionError ? err.code : 'internal_error', error: sanitizeErrorText(err instanceof Error ? err.message : String(err)) },
      ]);
    }
    const out: RetentionEnqueueResult[] = [];
    for (const item of items) out.push(...(await writeBatch(pool, roundAt, [item])));
    return out;
  }
}
