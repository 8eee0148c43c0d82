/**
 * Typed calls of the generic queue functions (bastion_private.task_*,
 * sql/migrations/0004) for one registered queue: what a worker does with a
 * task row. Every call is one statement (its own transaction), so a claim is
 * committed before the attempt starts and an outcome is durable when the call
 * returns.
 */
import type pg from 'pg';
import type { AttemptFields } from '../../core/task-attempt-error.ts';
import type { TaskErrorKind, TaskStatus } from '../../core/task-status.ts';

/** graphile-worker's withPgClient shape (also satisfied by a small wrapper around a pg.Pool). */
export type WithPgClient = <T>(fn: (client: pg.PoolClient) => Promise<T>) => Promise<T>;

/** A claimed task row (the generic task columns plus the queue's own). */
export interface ClaimedTask {
  run_id: string;
  job_id: string;
  node_id: string;
  executor_node_id: string;
  target_type: 'local_dir' | 'webdav';
  target_snapshot: unknown;
  /** Number of this attempt (attempts after the claim). */
  attempts: number;
  [column: string]: unknown;
}

/** One attempt's outcome, as bastion_private.task_finish takes it. */
export type AttemptResult =
  | { run_id: string; attempt: number; outcome: string; message: string; fields: AttemptFields }
  | { run_id: string; attempt: number; kind: TaskErrorKind; error: string; fields: AttemptFields; retry_after_secs?: number };

/** The worker-side operations of one queue. */
export class TaskQueueSql {
  readonly queue: string;
  readonly #withPgClient: WithPgClient;

  constructor(queue: string, withPgClient: WithPgClient) {
    this.queue = queue;
    this.#withPgClient = withPgClient;
  }

  /** Claim `runId` (when due) and up to `limit − 1` more due tasks of its node and target type. */
  async claim(runId: string, worker: string, limit: number): Promise<ClaimedTask[]> {
    const { rows } = await this.#withPgClient((c) => c.query<{ task: ClaimedTask }>('select t as task from bastion_private.task_claim($1, $2, $3, $4) t', [this.queue, runId, worker, limit]));
    return rows.map((r) => r.task);
  }

  /** Heartbeat; returns the run ids this worker still holds. */
  async heartbeat(worker: string, runIds: readonly string[]): Promise<Set<string>> {
    if (runIds.length === 0) return new Set();
    const { rows } = await this.#withPgClient((c) => c.query<{ ids: string[] }>('select bastion_private.task_heartbeat($1, $2, $3::uuid[]) as ids', [this.queue, worker, runIds]));
    return new Set(rows[0]?.ids ?? []);
  }

  /** Record outcomes; returns the tasks that changed (results of attempts this worker no longer holds are left out). */
  async finish(worker: string, results: readonly AttemptResult[]): Promise<Array<{ run_id: string; status: TaskStatus }>> {
    if (results.length === 0) return [];
    const { rows } = await this.#withPgClient((c) =>
      c.query<{ run_id: string; status: TaskStatus }>('select run_id, status from bastion_private.task_finish($1, $2, $3::jsonb)', [this.queue, worker, JSON.stringify(results)]),
    );
    return rows;
  }

  /** Give back claimed tasks that never started (the worker is stopping). */
  async release(worker: string, runIds: readonly string[]): Promise<number> {
    if (runIds.length === 0) return 0;
    const { rows } = await this.#withPgClient((c) => c.query<{ n: number }>('select bastion_private.task_release($1, $2, $3::uuid[]) as n', [this.queue, worker, runIds]));
    return rows[0]?.n ?? 0;
  }
}
