/**
 * Snapshot deletes and incomplete cleanups on the agent: the hub's own
 * executors (engine/delete/snapshot-delete.ts, engine/cleanup/
 * incomplete-cleanup.ts) run here with `localNodeId` = this agent, so every
 * safety rule of DESIGN §6 applies unchanged — UUID job and run ids, a
 * base_dir that is a clean absolute real path, no symlinked components, the
 * realpath check, the Bastion-data check, the re-check before removal. A
 * message that asks for anything else (a `..` in an id, a base_dir through a
 * symlink, data of another node) is refused here with kind `config` and
 * nothing is touched, whatever the hub sent.
 *
 * Failures are classified as the hub's workers classify them
 * (worker/queue/classify-failure.ts) and reported as the task's result.
 */
import type { TaskFrame, TaskResult } from '../../core/agent-protocol.ts';
import { TaskAttemptError } from '../../core/task-attempt-error.ts';
import type { WebdavCredentials } from '../../core/webdav-path.ts';
import { executeIncompleteCleanup } from '../../engine/cleanup/incomplete-cleanup.ts';
import { executeSnapshotDelete } from '../../engine/delete/snapshot-delete.ts';
import type { RunDirRemovalOptions } from '../../engine/targets/local-run-dir-removal.ts';
import { classifyFailure } from '../../worker/queue/classify-failure.ts';
import { frameFields } from './frame-fields.ts';

/** What a maintenance task needs from the agent. */
export interface MaintenanceContext {
  agentId: string;
  /** Test seam: runs after the safety checks, right before the re-check and removal. */
  local?: RunDirRemovalOptions;
}

function noWebdav(): Promise<WebdavCredentials> {
  return Promise.reject(new TaskAttemptError('config', 'webdav_on_agent', 'agents do not delete or clean WebDAV data; the hub does, with the node-scoped secret'));
}

/** Execute a snapshot_delete or incomplete_cleanup message; never throws. */
export async function runMaintenanceTask(frame: TaskFrame, ctx: MaintenanceContext): Promise<TaskResult> {
  const task = { run_id: frame.run_id, job_id: frame.job_id, node_id: frame.target_snapshot.node_id, target_snapshot: frame.target_snapshot };
  try {
    if (frame.target_snapshot.node_id !== ctx.agentId) {
      throw new TaskAttemptError('config', 'wrong_node', `the data of this task is on node ${frame.target_snapshot.node_id.slice(0, 64)}, not on this agent; nothing was deleted`);
    }
    const deps = { localNodeId: ctx.agentId, resolveWebdavCredentials: noWebdav, ...(ctx.local ? { local: ctx.local } : {}) };
    const r = frame.type === 'snapshot_delete' ? await executeSnapshotDelete(task, deps) : await executeIncompleteCleanup(task, deps);
    return { outcome: r.outcome, message: r.message.slice(0, 1000), fields: frameFields(r.fields) };
  } catch (err) {
    const f = classifyFailure(err);
    return {
      kind: f.kind,
      error: f.error,
      fields: frameFields(f.fields),
      ...(f.retryAfterSeconds !== undefined ? { retry_after_secs: Math.min(86_400, Math.max(0, Math.round(f.retryAfterSeconds))) } : {}),
    };
  }
}
