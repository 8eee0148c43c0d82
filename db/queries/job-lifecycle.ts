/**
 * The end of a job's life (seed 002 milestone 5, seed 004): archive (with an
 * optional cascade that queues deletes of all its unpinned present
 * snapshots), unarchive, and delete — with its data first, or keeping the
 * data. Typed calls of the SQL functions of sql/migrations/0004; job
 * creation and editing are in db/queries/jobs.ts.
 */
import type pg from 'pg';
import { sqlCall } from '../../core/database-error.ts';
import { BastionError } from '../../core/errors.ts';
import { isUuid } from '../../core/ids.ts';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

function requireJobId(value: unknown): string {
  if (!isUuid(value)) throw new BastionError('invalid_input', 'job_id must be a lower-case UUID', { details: { field: 'job_id', reason: 'not_uuid' } });
  return value;
}

/** What archive_job did. */
export interface ArchiveResult {
  job_id: string;
  /** False when the job was already archived. */
  archived: boolean;
  /** Deletes queued by the cascade. */
  enqueued: number;
  /** Present snapshots the cascade left alone. */
  skipped_pinned: number;
  skipped_in_use: number;
}

/** Archive a job; with `cascadeSnapshots`, queue deletes of every present snapshot that is not pinned or in use. */
export async function archiveJob(db: Queryable, jobId: string, cascadeSnapshots = false): Promise<ArchiveResult> {
  if (typeof cascadeSnapshots !== 'boolean') throw new BastionError('invalid_input', 'cascade_snapshots must be a boolean', { details: { field: 'cascade_snapshots', reason: 'not_boolean' } });
  const { rows } = await sqlCall(db.query<{ r: ArchiveResult }>('select bastion.archive_job($1, $2) as r', [requireJobId(jobId), cascadeSnapshots]));
  return rows[0]!.r;
}

/** Unarchive a job (job_deleting, job_name_taken). */
export async function unarchiveJob(db: Queryable, jobId: string): Promise<void> {
  await sqlCall(db.query('select bastion.unarchive_job($1)', [requireJobId(jobId)]));
}

/** How to delete a job. */
export type JobDeleteMode = 'delete_data_first' | 'keep_data';

/** What delete_job did. */
export interface JobDeleteResult {
  job_id: string;
  mode: JobDeleteMode;
  /** True when the job row is gone already (keep_data, or nothing left to delete). */
  job_deleted: boolean;
  /** keep_data: snapshots whose data stays on the targets, no longer indexed. */
  snapshots_left_on_targets?: number;
  /** delete_data_first: live snapshots the job waits for, and the request outcomes. */
  snapshots_to_delete?: number;
  enqueued?: number;
  requeued?: number;
  already_queued?: number;
}

/** Delete a job (admin): with its data first, or keeping the data (explicitly). */
export async function deleteJob(db: Queryable, jobId: string, mode: JobDeleteMode, options: { force?: boolean } = {}): Promise<JobDeleteResult> {
  if (mode !== 'delete_data_first' && mode !== 'keep_data') throw new BastionError('invalid_input', 'mode must be delete_data_first or keep_data', { details: { field: 'mode', reason: 'unknown_mode' } });
  if (options.force !== undefined && typeof options.force !== 'boolean') throw new BastionError('invalid_input', 'force must be a boolean', { details: { field: 'force', reason: 'not_boolean' } });
  const { rows } = await sqlCall(db.query<{ r: JobDeleteResult }>('select bastion.delete_job($1, $2, $3) as r', [requireJobId(jobId), mode, options.force ?? false]));
  return rows[0]!.r;
}
