/**
 * Jobs: list, look up, create and replace. Writes go through
 * bastion.create_job / bastion.update_job (their SQL checks hold whoever
 * calls); callers validate the input first with core/job-input.ts so errors
 * name the field precisely. Runs as the caller's connection: the owner for
 * the CLI and workers, a role-switched transaction for the API.
 */
import type pg from 'pg';
import { sqlCall } from '../../core/database-error.ts';
import { BastionError } from '../../core/errors.ts';
import { isUuid } from '../../core/ids.ts';
import type { JobInput } from '../../core/job-input.ts';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** A job row. `spec` is the stored JSON (validate it with core/job-spec.ts before use). */
export interface JobRow {
  id: string;
  name: string;
  node_id: string;
  schedule: string | null;
  schedule_timezone: string;
  overlap_policy: 'queue' | 'reject';
  spec: unknown;
  schedule_cursor: Date;
  created_at: Date;
  updated_at: Date;
  created_by: string | null;
  archived_at: Date | null;
  archived_by: string | null;
}

/** A job with its latest run, for lists. */
export interface JobListItem extends JobRow {
  last_run: { id: string; status: string; created_at: Date; ended_at: Date | null; error_code: string | null } | null;
}

const JOB_COLUMNS = 'j.id, j.name, j.node_id, j.schedule, j.schedule_timezone, j.overlap_policy, j.spec, j.schedule_cursor, j.created_at, j.updated_at, j.created_by, j.archived_at, j.archived_by';

/** Jobs by name; archived ones only when asked (seed 004: hidden by default). */
export async function listJobs(db: Queryable, options: { includeArchived?: boolean } = {}): Promise<JobListItem[]> {
  const { rows } = await db.query<JobRow & { last_run: JobListItem['last_run'] }>(
    `select ${JOB_COLUMNS},
            (select json_build_object('id', r.id, 'status', r.status, 'created_at', r.created_at, 'ended_at', r.ended_at, 'error_code', r.error_code)
               from bastion.runs r where r.job_id = j.id order by r.created_at desc, r.id desc limit 1) as last_run
       from bastion.jobs j
      where $1 or j.archived_at is null
      order by lower(j.name), j.archived_at nulls first, j.id`,
    [options.includeArchived === true],
  );
  return rows.map((r) => ({
    ...r,
    last_run: r.last_run ? { ...r.last_run, created_at: new Date(r.last_run.created_at), ended_at: r.last_run.ended_at ? new Date(r.last_run.ended_at) : null } : null,
  }));
}

/** A job by id. */
export async function getJobById(db: Queryable, id: string): Promise<JobRow | undefined> {
  if (!isUuid(id)) return undefined;
  const { rows } = await db.query<JobRow>(`select ${JOB_COLUMNS} from bastion.jobs j where j.id = $1`, [id]);
  return rows[0];
}

/**
 * A job by id or by name (case-insensitive). A name means the job that is
 * not archived; only when none is does an archived one answer (the most
 * recently archived). Throws `job_not_found`.
 */
export async function findJob(db: Queryable, idOrName: string): Promise<JobRow> {
  const byId = await getJobById(db, idOrName);
  if (byId) return byId;
  const { rows } = await db.query<JobRow>(
    `select ${JOB_COLUMNS} from bastion.jobs j where lower(j.name) = lower($1) order by j.archived_at desc nulls first limit 1`,
    [idOrName],
  );
  if (!rows[0]) throw new BastionError('job_not_found', `no job has the id or name ${JSON.stringify(idOrName.slice(0, 200))}`, { details: { field: 'job' } });
  return rows[0];
}

/** Create a job from a validated input (bastion.create_job; admin). */
export async function createJob(db: Queryable, input: JobInput): Promise<JobRow> {
  const { rows } = await sqlCall(
    db.query<JobRow>(
      `select ${JOB_COLUMNS} from bastion.create_job($1, $2, $3, $4, $5::bastion.overlap_policy, $6::jsonb) j`,
      [input.name, input.node_id, input.schedule, input.schedule_timezone, input.overlap_policy, JSON.stringify(input.spec)],
    ),
  );
  return rows[0]!;
}

/** Replace a job's fields (bastion.update_job; admin). `expectedUpdatedAt` null skips the concurrency check. */
export async function updateJob(db: Queryable, jobId: string, expectedUpdatedAt: Date | null, input: JobInput): Promise<JobRow> {
  const { rows } = await sqlCall(
    db.query<JobRow>(
      `select ${JOB_COLUMNS} from bastion.update_job($1, $2, $3, $4, $5, $6, $7::bastion.overlap_policy, $8::jsonb) j`,
      [jobId, expectedUpdatedAt, input.name, input.node_id, input.schedule, input.schedule_timezone, input.overlap_policy, JSON.stringify(input.spec)],
    ),
  );
  return rows[0]!;
}

/** Jobs the scheduler looks at: not archived, with a schedule. */
export async function listScheduledJobs(db: Queryable): Promise<Array<Pick<JobRow, 'id' | 'name' | 'schedule' | 'schedule_timezone' | 'schedule_cursor'> & { schedule: string }>> {
  const { rows } = await db.query<Pick<JobRow, 'id' | 'name' | 'schedule_timezone' | 'schedule_cursor'> & { schedule: string }>(
    'select j.id, j.name, j.schedule, j.schedule_timezone, j.schedule_cursor from bastion.jobs j where j.archived_at is null and j.schedule is not null order by j.id',
  );
  return rows;
}
