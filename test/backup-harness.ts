/**
 * Shared set-up of the run suites (test/backup-runs.test.ts,
 * test/run-lifecycle.test.ts, test/run-hostile.test.ts): a fresh database, a
 * data directory, a generated source tree, a worker task context whose log
 * lines are captured (so tests can search them for credentials), jobs created
 * through the real SQL functions, and runs driven through graphile-worker.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { Writable } from 'node:stream';
import { runOnce } from 'graphile-worker';
import { pino } from 'pino';
import type { Test } from 'tap';
import { parseJobInput } from '../core/job-input.ts';
import type { JobSpecInput } from '../core/job-spec.ts';
import { createJob, type JobRow } from '../db/queries/jobs.ts';
import { getRunDetail, requestRun, type RunEventRow, type RunRow } from '../db/queries/runs.ts';
import { makeSourceTree, type SourceTreeInfo } from '../engine/format/round-trip-kit.ts';
import { workerLogger } from '../worker/logger.ts';
import { taskList } from '../worker/runner.ts';
import { createTaskContext, type RunTiming, type TaskContext } from '../worker/task-context.ts';
import { testDatabase, type TestDatabase } from './db.ts';

/** 1 MiB: the smallest part size a spec allows. */
export const MiB = 1024 * 1024;

/** Everything a run test needs. */
export interface Harness {
  tdb: TestDatabase;
  dir: string;
  dataDir: string;
  src: string;
  base: string;
  info: SourceTreeInfo | null;
  /** BASTION_SECRET_KEY of this harness (base64). */
  secretKey: string;
  ctx: TaskContext;
  /** Every log line the task context and graphile-worker wrote. */
  logs: string[];
}

/** Build a harness in `t.testdir()`; `tree: false` skips the generated source tree (an empty src/ is made). */
export async function harness(
  t: Test,
  options: { tree?: boolean; bigBytes?: number; timing?: Partial<RunTiming> } = {},
): Promise<Harness> {
  const tdb = await testDatabase(t);
  const dir = t.testdir({ data: {}, base: {}, src: {} });
  const src = `${dir}/src`;
  const info = options.tree === false ? null : await makeSourceTree(src, { bigBytes: options.bigBytes ?? 3 * MiB + 12_345 });
  const logs: string[] = [];
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(chunk.toString('utf8'));
        cb();
      },
    }),
  );
  const secretKey = randomBytes(32).toString('base64');
  const ctx = createTaskContext({ pool: tdb.pool, logger, dataDir: `${dir}/data`, secretKey, timing: { heartbeatMs: 200, progressEventMs: 1000, ...options.timing } });
  return { tdb, dir, dataDir: `${dir}/data`, src, base: `${dir}/base`, info, secretKey, ctx, logs };
}

/** A spec backing up `h.src` (or `paths`). */
export function specFor(h: Harness, overrides: Partial<JobSpecInput> & { paths?: string[] } = {}): JobSpecInput {
  const { paths, ...rest } = overrides;
  return {
    source: { type: 'filesystem', paths: paths ?? [h.src] },
    target: { type: 'local_dir', base_dir: h.base },
    format: 'archive_v1',
    part_size_bytes: MiB,
    ...rest,
  };
}

/** Create a job through bastion.create_job (validated like the CLI does). */
export async function createTestJob(
  h: Harness,
  spec: JobSpecInput,
  fields: { name?: string; schedule?: string | null; schedule_timezone?: string; overlap_policy?: 'queue' | 'reject' } = {},
): Promise<JobRow> {
  return createJob(h.tdb.pool, parseJobInput({ name: fields.name ?? `job-${randomBytes(4).toString('hex')}`, spec, ...fields }));
}

/** Process every runnable graphile-worker job with this harness's tasks, then return. */
export async function drain(h: Harness): Promise<void> {
  // Completion through a flushed batcher, as startWorkers does: with the
  // default, runOnce returns before the finished job (and its named queue) is
  // unlocked, and the next drain would find the queue still held.
  await runOnce({
    pgPool: h.tdb.pool,
    taskList: taskList(h.ctx),
    logger: workerLogger(h.ctx.logger),
    preset: { worker: { completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
  });
}

/** Request a run of `job`, drain the queue, return the run with its events. */
export async function runJob(h: Harness, job: JobRow): Promise<{ run: RunRow; events: RunEventRow[] }> {
  const queued = await requestRun(h.tdb.pool, job.id);
  await drain(h);
  return getRunDetail(h.tdb.pool, queued.id);
}

/** Poll `fn` every 50 ms until it returns a truthy value (or throw after `ms`). */
export async function waitFor<T>(fn: () => Promise<T | null | undefined | false>, what: string, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Every text Bastion stored about runs and their queue, for credential
 * searches: runs, run events, the snapshot index, graphile-worker's jobs.
 */
export async function storedText(h: Harness): Promise<string> {
  const { rows } = await h.tdb.pool.query<{ t: string }>(`
    select coalesce((select string_agg(r::text, E'\\n') from bastion.runs r), '')
        || coalesce((select string_agg(e::text, E'\\n') from bastion.run_events e), '')
        || coalesce((select string_agg(a::text, E'\\n') from bastion.run_artifacts a), '')
        || coalesce((select string_agg(j::text, E'\\n') from graphile_worker.jobs j), '') as t`);
  return rows[0]?.t ?? '';
}

/** Does `path` exist? */
export async function exists(path: string): Promise<boolean> {
  return fs.access(path).then(
    () => true,
    () => false,
  );
}
