/**
 * Retention preview: what the saved policy (or a proposed one) would do to a
 * job right now, snapshot by snapshot, with every reason — the same
 * selection the tick and apply run (core/retention-select.ts), over the same
 * inputs (present snapshots, unexpired pins and leases, today's retention
 * enqueues), so what an operator previews is what the next tick does, limits
 * included. Read-only: it never writes.
 *
 * Totals cover every present snapshot the selection read (up to
 * RETENTION_SCAN_LIMIT, newest first; `scan.truncated` says when older ones
 * exist); the decisions themselves come a page at a time, newest first, with
 * an opaque cursor. For a proposed policy the result also carries the
 * difference against the saved one (newly deleted, newly kept).
 */
import type pg from 'pg';
import { BastionError } from '../../core/errors.ts';
import { isUuid } from '../../core/ids.ts';
import type { RetentionPolicy } from '../../core/retention-policy.ts';
import { diffSelections, retentionDayStart, selectRetention, type RetentionDecision, type RetentionDecisionKind, type RetentionLimits, type RetentionReason, type RetentionSelection, type RetentionTotals } from '../../core/retention-select.ts';
import { countEnqueuedSince, loadPresentSnapshots, loadRetentionJob, RETENTION_SCAN_LIMIT, type RetentionJobState } from '../../db/queries/retention.ts';
import { resolveProposedPolicy, resolveStoredPolicy, type PolicySource } from './policy-input.ts';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** Which decisions a preview page lists. */
export const PREVIEW_FILTERS = ['all', 'keep', 'delete', 'skipped_by_limit', 'candidates', 'newly_deleted', 'newly_kept'] as const;
/** A preview page filter: `candidates` = delete + skipped_by_limit; `newly_*` need a proposed policy. */
export type PreviewFilter = (typeof PREVIEW_FILTERS)[number];

/** Default and largest preview page. */
export const DEFAULT_PREVIEW_PAGE = 100;
export const MAX_PREVIEW_PAGE = 1000;
/** Entries of each diff list shown inline (page the rest with filter newly_deleted / newly_kept). */
export const DIFF_SAMPLE = 50;

/** What to preview. */
export interface PreviewOptions {
  /** A proposed policy (not saved); omitted = the job's effective saved policy. */
  policy?: unknown;
  filter?: PreviewFilter;
  limit?: number;
  cursor?: string;
}

/** One snapshot's decision as the API shows it. */
export interface PreviewItem {
  run_id: string;
  ended_at: Date;
  pinned: boolean;
  leased: boolean;
  source_bytes: number | null;
  transfer_bytes: number | null;
  decision: RetentionDecisionKind;
  reasons: readonly RetentionReason[];
  /** With a proposed policy: the saved policy's decision for the same snapshot. */
  saved?: { decision: RetentionDecisionKind; reasons: readonly RetentionReason[] };
}

/** A policy with its hash and origin. */
export interface PreviewPolicy {
  policy: RetentionPolicy;
  policy_hash: string;
  source: PolicySource;
}

/** The preview. */
export interface RetentionPreview {
  job_id: string;
  job_name: string;
  archived: boolean;
  time_zone: string;
  /** The instant the selection ran for (database time). */
  now: Date;
  /** The policy previewed (the proposed one when given). */
  policy: RetentionPolicy;
  policy_hash: string;
  source: PolicySource;
  /** With a proposed policy: the saved effective policy it is compared with. */
  saved: PreviewPolicy | null;
  age_reference_at: Date | null;
  keep_days_cutoff: Date | null;
  totals: RetentionTotals;
  limits: RetentionLimits;
  /** How many present snapshots were read, and whether older ones were left out. */
  scan: { snapshots: number; truncated: boolean; limit: number };
  diff: null | {
    totals: { newly_deleted: number; newly_kept: number; newly_deleted_bytes: number; newly_kept_bytes: number };
    newly_deleted: PreviewItem[];
    newly_kept: PreviewItem[];
  };
  /** What the last tick did for this job. */
  last_tick: RetentionJobState | null;
  filter: PreviewFilter;
  /** Decisions of this page that match `filter`, newest first. */
  items: PreviewItem[];
  /** Matching decisions in total (over every page). */
  matching: number;
  next_cursor: string | null;
}

/** A selection with everything preview and apply need about the job. */
export interface JobSelection {
  job: Awaited<ReturnType<typeof loadRetentionJob>>;
  chosen: PreviewPolicy;
  saved: PreviewPolicy;
  selection: RetentionSelection;
  /** The saved policy's selection when a proposed one was given. */
  savedSelection: RetentionSelection | null;
  truncated: boolean;
}

/**
 * Load a job's inputs and run the selection for the saved policy, or for a
 * proposed one (and then also for the saved one, to compare). Shared by
 * preview and apply so both see exactly the same thing.
 */
export async function selectForJob(db: Queryable, jobId: string, proposed: unknown): Promise<JobSelection> {
  if (!isUuid(jobId)) throw new BastionError('invalid_input', 'job_id must be a lower-case UUID', { details: { field: 'job_id', reason: 'not_uuid' } });
  const chosenProposed = proposed === undefined ? null : resolveProposedPolicy(proposed, 'policy');
  const job = await loadRetentionJob(db, jobId);
  const saved = resolveStoredPolicy(job.spec_retention, job.hub_default);
  const present = (await loadPresentSnapshots(db, [jobId])).get(jobId)!;
  const already = (await countEnqueuedSince(db, [jobId], retentionDayStart(job.now))).get(jobId) ?? 0;
  const run = (policy: RetentionPolicy) => selectRetention({ policy, snapshots: present.snapshots, now: job.now, timeZone: job.schedule_timezone, already_enqueued_today: already });
  const selection = run((chosenProposed ?? saved).policy);
  return {
    job,
    chosen: chosenProposed ?? saved,
    saved,
    selection,
    savedSelection: chosenProposed ? run(saved.policy) : null,
    truncated: present.truncated,
  };
}

interface Cursor {
  t: number;
  r: string;
}

function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c), 'utf8').toString('base64url');
}

function decodeCursor(text: string): Cursor {
  const bad = (reason: 'invalid_encoding' | 'invalid_payload') => new BastionError('invalid_cursor', undefined, { details: { field: 'cursor', reason } });
  if (!/^[A-Za-z0-9_-]{1,512}$/.test(text)) throw bad('invalid_encoding');
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw bad('invalid_encoding');
  }
  const c = v as Partial<Cursor> | null;
  if (typeof c !== 'object' || c === null || typeof c.t !== 'number' || !Number.isSafeInteger(c.t) || typeof c.r !== 'string' || !isUuid(c.r)) throw bad('invalid_payload');
  return { t: c.t, r: c.r };
}

/** True when decision `d` comes after the cursor in newest-first order. */
function after(d: RetentionDecision, c: Cursor): boolean {
  const t = d.ended_at.getTime();
  return t < c.t || (t === c.t && d.run_id < c.r);
}

function item(d: RetentionDecision, saved?: RetentionDecision): PreviewItem {
  return {
    run_id: d.run_id,
    ended_at: d.ended_at,
    pinned: d.pinned,
    leased: d.leased,
    source_bytes: d.source_bytes,
    transfer_bytes: d.transfer_bytes,
    decision: d.decision,
    reasons: d.reasons,
    ...(saved ? { saved: { decision: saved.decision, reasons: saved.reasons } } : {}),
  };
}

/** Preview retention for a job (every role may; nothing is written). */
export async function previewRetention(db: Queryable, jobId: string, options: PreviewOptions = {}): Promise<RetentionPreview> {
  const filter = options.filter ?? 'all';
  const limit = Math.min(Math.max(Math.trunc(options.limit ?? DEFAULT_PREVIEW_PAGE), 1), MAX_PREVIEW_PAGE);
  const cursor = options.cursor === undefined ? null : decodeCursor(options.cursor);
  if ((filter === 'newly_deleted' || filter === 'newly_kept') && options.policy === undefined) {
    throw new BastionError('invalid_input', `filter ${filter} compares a proposed policy with the saved one; send a policy`, { details: { field: 'filter', reason: 'needs_policy' } });
  }
  const s = await selectForJob(db, jobId, options.policy);
  const sel = s.selection;
  const savedByRun = new Map<string, RetentionDecision>();
  if (s.savedSelection) for (const d of s.savedSelection.decisions) savedByRun.set(d.run_id, d);

  let diff: RetentionPreview['diff'] = null;
  let changed: Set<string> | null = null;
  if (s.savedSelection) {
    const d = diffSelections(s.savedSelection, sel);
    diff = {
      totals: d.totals,
      newly_deleted: d.newly_deleted.slice(0, DIFF_SAMPLE).map((e) => item(e.proposed, e.saved)),
      newly_kept: d.newly_kept.slice(0, DIFF_SAMPLE).map((e) => item(e.proposed, e.saved)),
    };
    changed = new Set((filter === 'newly_deleted' ? d.newly_deleted : d.newly_kept).map((e) => e.run_id));
  }

  const matches = (d: RetentionDecision): boolean => {
    switch (filter) {
      case 'all':
        return true;
      case 'candidates':
        return d.decision !== 'keep';
      case 'newly_deleted':
      case 'newly_kept':
        return changed!.has(d.run_id);
      default:
        return d.decision === filter;
    }
  };
  const items: PreviewItem[] = [];
  let matching = 0;
  let more = false;
  for (const d of sel.decisions) {
    if (!matches(d)) continue;
    matching++;
    if (cursor !== null && !after(d, cursor)) continue;
    if (items.length < limit) items.push(item(d, savedByRun.get(d.run_id)));
    else more = true;
  }
  const last = items[items.length - 1];
  return {
    job_id: s.job.id,
    job_name: s.job.name,
    archived: s.job.archived_at !== null,
    time_zone: sel.time_zone,
    now: s.job.now,
    policy: s.chosen.policy,
    policy_hash: s.chosen.policy_hash,
    source: s.chosen.source,
    saved: s.savedSelection ? s.saved : null,
    age_reference_at: sel.age_reference_at,
    keep_days_cutoff: sel.keep_days_cutoff,
    totals: sel.totals,
    limits: sel.limits,
    scan: { snapshots: sel.decisions.length, truncated: s.truncated, limit: RETENTION_SCAN_LIMIT },
    diff,
    last_tick: s.job.state,
    filter,
    items,
    matching,
    next_cursor: more && last ? encodeCursor({ t: last.ended_at.getTime(), r: last.run_id }) : null,
  };
}
