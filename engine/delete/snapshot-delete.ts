/**
 * The executor of the artifact delete queue: delete the data of one snapshot
 * from where its target snapshot says it is (never from the job's current
 * spec), on the node that can reach it (DESIGN §6).
 *
 * - local_dir on the hub → engine/delete/local-dir-delete.ts (safety rules).
 * - local_dir on an agent → the worker hands the attempt to that agent right
 *   after the claim (worker/queue/attempt-runner.ts, sql/migrations/0007),
 *   and the agent runs this same function with `localNodeId` = its id. Only
 *   attempts for an agent that is not connected reach this branch here: they
 *   fail with kind `offline`, naming the agent, and wait in `retrying` with
 *   the offline backoff (30 s doubling to 10 min) — or run at once when the
 *   agent says hello again.
 * - webdav → the WebDAV engineer's deleteRunDir (trailing slash, 404 = gone,
 *   PROPFIND walk when recursive DELETE is refused, error kinds, Retry-After),
 *   with the WebDAV secret of the snapshot's node scope.
 */
import { HUB_NODE_ID } from '../../core/ids.ts';
import { requireLocalNode, taskTargetSnapshot, type AttemptFields } from '../../core/task-attempt-error.ts';
import type { WebdavCredentials } from '../../core/webdav-path.ts';
import { deleteRunDir, type WebdavTargetClientOptions } from '../targets/webdav-target.ts';
import { deleteLocalRunDir, type LocalDeleteOptions } from './local-dir-delete.ts';

/** The task fields the executor reads (a claimed artifact_delete_tasks row). */
export interface SnapshotDeleteTask {
  run_id: string;
  job_id: string;
  node_id: string;
  target_snapshot: unknown;
}

/** What the executor needs from its host process. */
export interface SnapshotDeleteDeps {
  /** The WebDAV login stored as secret `secretName` in node scope `nodeId` (engine/secrets resolveWebdavCredentials). */
  resolveWebdavCredentials(nodeId: string, secretName: string): Promise<WebdavCredentials>;
  /** WebDAV client tuning (timeouts, in-request retries). */
  webdavClient?: WebdavTargetClientOptions;
  /** Test seam of the local delete (see LocalDeleteOptions). */
  local?: LocalDeleteOptions;
  /** Node this process is: local_dir data of that node is deleted here (default the hub; an agent passes its id). */
  localNodeId?: string;
}

/** A successful delete: the outcome the task records, and its event. */
export interface SnapshotDeleteOutcome {
  outcome: 'deleted' | 'not_found';
  message: string;
  fields: AttemptFields;
}

/** Delete the snapshot's data. Throws TaskAttemptError, WebdavError or SecretError on failure. */
export async function executeSnapshotDelete(task: SnapshotDeleteTask, deps: SnapshotDeleteDeps): Promise<SnapshotDeleteOutcome> {
  const snapshot = taskTargetSnapshot(task.target_snapshot);
  const target = snapshot.target;
  if (target.type === 'local_dir') {
    requireLocalNode(snapshot, deps.localNodeId ?? HUB_NODE_ID, 'the snapshot is', 'delete');
    const r = await deleteLocalRunDir(target.base_dir, task.job_id, task.run_id, deps.local);
    return r.outcome === 'deleted'
      ? { outcome: 'deleted', message: 'deleted snapshot data', fields: { duration_ms: r.durationMs, path: r.path } }
      : { outcome: 'not_found', message: 'local snapshot dir missing; nothing to delete', fields: { duration_ms: r.durationMs, path: r.path } };
  }
  const credentials = await deps.resolveWebdavCredentials(snapshot.node_id, target.secret_name);
  const r = await deleteRunDir(target.base_url, credentials, task.job_id, task.run_id, deps.webdavClient);
  const fields: AttemptFields = { duration_ms: r.durationMs, url: r.url };
  if (r.outcome === 'not_found') return { outcome: 'not_found', message: 'remote snapshot dir missing; nothing to delete', fields };
  return { outcome: 'deleted', message: 'deleted snapshot data', fields: { ...fields, strategy: r.strategy, deleted_entries: r.deletedEntries } };
}
