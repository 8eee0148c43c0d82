/**
 * Where a run executes. The run-backup task asks {@link selectExecutor} for
 * the executor of the run's node and hands it a validated spec; the executor
 * produces the snapshot and returns the summary. Only the hub executes here
 * (engine/backup/hub-executor.ts). Runs on agents never reach this function:
 * the run-backup task dispatches them through the agent outbox and returns
 * (a worker must not wait hours for an agent), and the agent runs the same
 * format engine (agent/handlers/backup-run.ts).
 */
import type pg from 'pg';
import { BastionError } from '../../core/errors.ts';
import { HUB_NODE_ID } from '../../core/ids.ts';
import type { JobSpec } from '../../core/job-spec.ts';
import type { BackupProgress, BackupSummary } from '../format/run-backup.ts';
import type { SecretKeyProvider } from '../secrets/secret-key.ts';
import { HubExecutor } from './hub-executor.ts';

/** One run to execute. */
export interface RunExecution {
  runId: string;
  jobId: string;
  /** The run's node (runs.node_id). */
  nodeId: string;
  /** runs.started_at (the manifest's started_at). */
  startedAt: Date;
  spec: JobSpec;
  /** Fires on worker shutdown or when the run was failed elsewhere (watchdog). */
  signal: AbortSignal;
  onProgress: (p: BackupProgress) => void;
}

/** What an executed run reports: the format summary plus where it was written (redacted). */
export interface RunResult extends BackupSummary {
  /** Redacted location of the run directory (`local_dir:/path` or the WebDAV URL without credentials). */
  location: string;
}

/** Executes runs on one node. */
export interface RunExecutor {
  /** Node the runs execute on. */
  readonly nodeId: string;
  /** Produce the snapshot; throws a BastionError, WebdavError or SecretError on failure. */
  execute(run: RunExecution): Promise<RunResult>;
  /**
   * Secrets this executor handled for the run (e.g. the WebDAV password), so
   * the caller can scrub them from any error text as a last line of defence.
   * Empty when none.
   */
  secretsOf(runId: string): readonly string[];
  /** Forget local state of a run that ended for good (staging files); not called when a run is requeued. */
  discard(runId: string): Promise<void>;
}

/** What executors need from the worker process. */
export interface ExecutorContext {
  pool: pg.Pool;
  /** The process's data directory (staging lives in `<data_dir>/staging/<run_id>`). */
  dataDir: string;
  secrets: SecretKeyProvider;
}

/** The executor for runs on `nodeId`; throws `node_not_supported` for any node but the hub (agent runs are dispatched, see worker/tasks/run-backup.ts). */
export function selectExecutor(nodeId: string, ctx: ExecutorContext): RunExecutor {
  if (nodeId === HUB_NODE_ID) return new HubExecutor(ctx);
  throw new BastionError('node_not_supported', `runs on node ${nodeId} cannot be executed yet: only the hub executes runs until agents are supported`, {
    details: { field: 'node_id', node_id: nodeId, reason: 'agents_not_supported' },
  });
}
