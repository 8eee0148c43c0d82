/**
 * The executor of the incomplete-cleanup queue: remove the partial data of
 * one run that never completed, from where the task's target snapshot says it
 * is, on the node that can reach it (seed 004, DESIGN §6).
 *
 * - local_dir on the hub → engine/cleanup/local-dir-cleanup.ts (the shared
 *   safety rules; complete.json keeps the directory; non-Bastion directories
 *   are never deleted).
 * - local_dir on an agent → the worker hands the attempt to that agent right
 *   after the claim (worker/queue/attempt-runner.ts, sql/migrations/0007),
 *   and the agent runs this same function with `localNodeId` = its id. Only
 *   attempts for an agent that is not connected reach this branch here: they
 *   fail with kind `offline`, naming the agent, and wait in `retrying` with
 *   the offline backoff (30 s doubling to 10 min) — or run at once when the
 *   agent says hello again. (The reference cleaned the hub's own file system
 *   at the agent's path, reference §11.6 — the wrong machine.)
 * - webdav → the WebDAV engineer's cleanupIncompleteRunDir (HEAD complete.json
 *   → skip_complete; DELETE with a trailing slash, PROPFIND walk when the
 *   server refuses a recursive DELETE; 404 → skip_not_found), executed by the
 *   hub with the WebDAV secret of the snapshot's node scope.
 *
 * A run that uploaded complete data but ended failed or canceled (reference
 * §11.11) is never indexed as a snapshot; its cleanup finds complete.json and
 * stops (skip_complete, nothing deleted), and the event says the data is
 * orphaned so an operator can decide.
 */
import { HUB_NODE_ID } from '../../core/ids.ts';
import { requireLocalNode, taskTargetSnapshot, type AttemptFields } from '../../core/task-attempt-error.ts';
import type { WebdavCredentials } from '../../core/webdav-path.ts';
import type { RunDirRemovalOptions } from '../targets/local-run-dir-removal.ts';
import { cleanupIncompleteRunDir, type WebdavTargetClientOptions } from '../targets/webdav-target.ts';
import { cleanupLocalRunDir, type CleanupOutcome } from './local-dir-cleanup.ts';

/** The task fields the executor reads (a claimed incomplete_cleanup_tasks row). */
export interface CleanupTask {
  run_id: string;
  job_id: string;
  node_id: string;
  target_snapshot: unknown;
}

/** What the executor needs from its host process. */
export interface IncompleteCleanupDeps {
  /** The WebDAV login stored as secret `secretName` in node scope `nodeId` (engine/secrets resolveWebdavCredentials). */
  resolveWebdavCredentials(nodeId: string, secretName: string): Promise<WebdavCredentials>;
  /** WebDAV client tuning (timeouts, in-request retries). */
  webdavClient?: WebdavTargetClientOptions;
  /** Test seam of the local removal (see RunDirRemovalOptions). */
  local?: RunDirRemovalOptions;
  /** Node this process is: local_dir data of that node is cleaned here (default the hub; an agent passes its id). */
  localNodeId?: string;
}

/** A finished cleanup: the outcome the task records, and its event. */
export interface CleanupAttemptOutcome {
  outcome: CleanupOutcome;
  message: string;
  fields: AttemptFields;
}

const ORPHAN_NOTE =
  'complete.json is present: the run wrote all its data but did not succeed, so no snapshot indexes it; the data is orphaned and was left in place (delete it by hand if it is not wanted)';

/** Clean up the run's partial data. Throws TaskAttemptError, WebdavError or SecretError on failure. */
export async function executeIncompleteCleanup(task: CleanupTask, deps: IncompleteCleanupDeps): Promise<CleanupAttemptOutcome> {
  const snapshot = taskTargetSnapshot(task.target_snapshot);
  const target = snapshot.target;
  if (target.type === 'local_dir') {
    requireLocalNode(snapshot, deps.localNodeId ?? HUB_NODE_ID, "the run's data is", 'cleanup');
    const r = await cleanupLocalRunDir(target.base_dir, task.job_id, task.run_id, deps.local);
    const fields: AttemptFields = { duration_ms: r.durationMs, path: r.path };
    switch (r.outcome) {
      case 'deleted':
        return { outcome: 'deleted', message: 'deleted the incomplete run directory', fields };
      case 'skip_complete':
        return { outcome: 'skip_complete', message: ORPHAN_NOTE, fields: { ...fields, reason: 'complete', orphaned: true } };
      case 'skip_not_found':
        return r.reason === 'not_bastion_data'
          ? {
              outcome: 'skip_not_found',
              message: 'the run directory does not look like Bastion data (no manifest.json, entries.jsonl.zst, payload.part* or *.partial); left untouched',
              fields: { ...fields, reason: 'not_bastion_data' },
            }
          : { outcome: 'skip_not_found', message: 'local run dir missing; nothing to clean up', fields };
    }
  }
  const credentials = await deps.resolveWebdavCredentials(snapshot.node_id, target.secret_name);
  const r = await cleanupIncompleteRunDir(target.base_url, credentials, task.job_id, task.run_id, deps.webdavClient);
  const fields: AttemptFields = { duration_ms: r.durationMs, url: r.url };
  switch (r.outcome) {
    case 'deleted':
      return { outcome: 'deleted', message: 'deleted the incomplete run collection', fields };
    case 'skip_complete':
      return { outcome: 'skip_complete', message: ORPHAN_NOTE, fields: { ...fields, reason: 'complete', orphaned: true } };
    case 'skip_not_found':
      return { outcome: 'skip_not_found', message: 'remote run dir missing; nothing to clean up', fields };
  }
}
