/**
 * The location of a run that never recorded one (seed 004 "backwards
 * compatibility"): built from its job's current spec, validated with the same
 * zod schema every other spec reader uses (core/job-spec.ts), and shaped like
 * the snapshot a run records at start (core/target-snapshot.ts: WebDAV URL
 * redacted, with a trailing slash). Best effort by nature — the job may point
 * somewhere else today than when the run wrote — so the cleanup task records
 * `target_snapshot_source = 'job_spec'` and the reconcile log says so.
 *
 * Pure: no I/O. A spec that does not validate yields a reason and a message
 * naming the field and zod's complaint, never the value (a hand-edited spec
 * may hold a URL with credentials).
 */
import { jobSpecSchema } from '../../core/job-spec.ts';
import { isNodeId } from '../../core/ids.ts';
import { makeTargetSnapshot, targetSnapshotSchema, type TargetSnapshot } from '../../core/target-snapshot.ts';

/** A built snapshot, or why there is none. */
export type FallbackSnapshot = { ok: true; snapshot: TargetSnapshot } | { ok: false; reason: 'invalid_job_spec' | 'invalid_node_id' | 'invalid_target_snapshot'; message: string };

function issueText(issue: { path: PropertyKey[]; message: string } | undefined): string {
  if (!issue) return 'invalid';
  const field = issue.path.length > 0 ? issue.path.map(String).join('.') : 'spec';
  return `${field}: ${issue.message}`;
}

/** The target snapshot of a run on `nodeId` from its job's `spec` (as stored: any JSON). */
export function fallbackTargetSnapshot(spec: unknown, nodeId: string): FallbackSnapshot {
  if (!isNodeId(nodeId)) return { ok: false, reason: 'invalid_node_id', message: "the run's node id is not 'hub' or an agent UUID" };
  const parsed = jobSpecSchema.safeParse(spec);
  if (!parsed.success) return { ok: false, reason: 'invalid_job_spec', message: `the job's spec is invalid: ${issueText(parsed.error.issues[0])}` };
  const snapshot = makeTargetSnapshot(nodeId, parsed.data.target);
  // makeTargetSnapshot only reshapes; check the result against the stored form too.
  const check = targetSnapshotSchema.safeParse(snapshot);
  if (!check.success) return { ok: false, reason: 'invalid_target_snapshot', message: `the target built from the job's spec is invalid: ${issueText(check.error.issues[0])}` };
  return { ok: true, snapshot: check.data };
}
