/**
 * Retention apply: an operator runs retention for one job now, with the
 * saved policy or a proposed one (which is NOT saved). The selection is the
 * preview's (engine/retention/retention-preview.ts selectForJob); its delete
 * decisions go to bastion_private.retention_apply, which — under the job's
 * advisory lock, in the caller's transaction — recounts today's retention
 * enqueues, re-checks every candidate and enqueues through the delete queue
 * with reason `retention` and the policy's hash. An apply racing a tick (or
 * another apply) therefore cannot push the job past its limits.
 */
import type pg from 'pg';
import { BastionError } from '../../core/errors.ts';
import type { RetentionPolicy } from '../../core/retention-policy.ts';
import type { RetentionLimits } from '../../core/retention-select.ts';
import { callRetentionApply, type RetentionEnqueueResult } from '../../db/queries/retention.ts';
import type { PolicySource } from './policy-input.ts';
import { selectForJob } from './retention-preview.ts';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** What an apply did. */
export interface RetentionApplyResult {
  job_id: string;
  policy: RetentionPolicy;
  policy_hash: string;
  source: PolicySource;
  /** Snapshots put in the delete queue now (reason retention). */
  enqueued: string[];
  /** Candidates already being deleted. */
  already_queued: string[];
  /** Candidates held back by max_delete_per_tick / max_delete_per_day (the next tick or apply continues). */
  skipped_by_limits: number;
  /** Candidates the final re-check refused: pinned, leased, gone or the last snapshot meanwhile. */
  skipped: RetentionEnqueueResult['skipped'];
  /** The limits as the selection saw them, with today's count and the allowance as the database recounted them. */
  limits: RetentionLimits & { already_enqueued_today_at_enqueue: number; allowed_at_enqueue: number };
  scan: { snapshots: number; truncated: boolean };
}

/**
 * Apply retention to a job (operator). `retention_disabled` when the policy
 * is disabled; `job_archived` for an archived job; `retention_policy_changed`
 * when the saved policy changed while this ran.
 */
export async function applyRetention(db: Queryable, jobId: string, options: { policy?: unknown } = {}): Promise<RetentionApplyResult> {
  const s = await selectForJob(db, jobId, options.policy);
  if (!s.chosen.policy.enabled) {
    throw new BastionError('retention_disabled', undefined, { details: { field: options.policy === undefined ? 'retention' : 'policy.enabled', reason: 'disabled', source: s.chosen.source } });
  }
  const runIds = s.selection.decisions.filter((d) => d.decision === 'delete').map((d) => d.run_id);
  const r = await callRetentionApply(db, {
    jobId,
    policy: s.chosen.policy,
    policyHash: s.chosen.policy_hash,
    policySource: s.chosen.source,
    runIds,
    // The saved policy as read: the enqueue refuses if it changed meanwhile.
    expectedPolicy: s.chosen.source === 'proposed' ? null : s.job.effective_raw,
  });
  return {
    job_id: jobId,
    policy: s.chosen.policy,
    policy_hash: s.chosen.policy_hash,
    source: s.chosen.source,
    enqueued: r.enqueued,
    already_queued: r.already_queued,
    skipped_by_limits: s.selection.totals.skipped + r.skipped_by_limits.length,
    skipped: r.skipped,
    limits: { ...s.selection.limits, already_enqueued_today_at_enqueue: r.already_enqueued_today, allowed_at_enqueue: r.allowed },
    scan: { snapshots: s.selection.decisions.length, truncated: s.truncated },
  };
}
