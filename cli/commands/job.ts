/**
 * `bastion job …`: the backup jobs from a terminal, straight on the database
 * (DATABASE_URL, or the embedded cluster of the data directory).
 *
 *   bastion job list [--archived] [--json]
 *   bastion job create --name NAME --spec-file FILE [--schedule CRON] [--timezone TZ] [--overlap queue|reject]
 *   bastion job run NAME|ID [--follow]
 *
 * `run --follow` shows a progress bar on a terminal (redrawn at most 10×/s)
 * and plain lines otherwise, and exits 0 when the run succeeded, 1 when it
 * failed, was rejected or canceled. The CLI acts as the database owner (like
 * `migrate`): it is an administrator's tool on the hub's machine.
 */
import fs from 'node:fs/promises';
import type { Logger } from 'pino';
import { nextSlots, parseSchedule } from '../../core/cron-schedule.ts';
import { formatBytes, formatDuration } from '../../core/human-units.ts';
import { parseJobInput } from '../../core/job-input.ts';
import { BastionError } from '../../core/errors.ts';
import { createJob, findJob, listJobs, type JobListItem } from '../../db/queries/jobs.ts';
import { getRun, isFinalRunStatus, listRunEvents, requestRun, type RunEventRow, type RunRow } from '../../db/queries/runs.ts';
import { UsageError, type CommandArgs, type Config } from '../config.ts';
import { RateMeter, renderBar, type BarState } from '../progress-bar.ts';
import { openToolDatabase } from '../tool-database.ts';

/** Flags of `bastion job` (every subcommand; each checks its own). */
export const JOB_FLAGS = {
  archived: { type: 'boolean' },
  json: { type: 'boolean' },
  follow: { type: 'boolean' },
  name: { type: 'string' },
  'spec-file': { type: 'string' },
  schedule: { type: 'string' },
  timezone: { type: 'string' },
  overlap: { type: 'string' },
  node: { type: 'string' },
} as const satisfies Record<string, { type: 'string' | 'boolean' }>;

/** `bastion job --help`. */
export const JOB_USAGE = [
  'usage:',
  '  bastion job list [--archived] [--json]',
  '  bastion job create --name NAME --spec-file FILE|- [--schedule CRON] [--timezone TZ] [--overlap queue|reject]',
  '  bastion job run NAME|ID [--follow]',
  '',
  'The spec file is the job spec as JSON (docs/jobs.md). Schedules are 5-field cron',
  'expressions (or @daily, @hourly, …) in the time zone (default UTC).',
  '`run --follow` waits for the run and exits 0 on success, 1 otherwise.',
  '',
  'Database: DATABASE_URL, or the embedded one of --data-dir / BASTION_DATA_DIR.',
].join('\n');

const SUBCOMMAND_FLAGS: Record<string, ReadonlyArray<keyof typeof JOB_FLAGS>> = {
  list: ['archived', 'json'],
  create: ['name', 'spec-file', 'schedule', 'timezone', 'overlap', 'node'],
  run: ['follow'],
};

/** Largest spec file read. */
const MAX_SPEC_FILE_BYTES = 1024 * 1024;

function checkArgs(sub: string, args: CommandArgs, positionals: number): void {
  const allowed = SUBCOMMAND_FLAGS[sub]!;
  for (const [k, v] of Object.entries(args.flags)) {
    if (v !== undefined && !allowed.includes(k as keyof typeof JOB_FLAGS)) throw new UsageError(`--${k} does not apply to "job ${sub}"; run "bastion job --help"`);
  }
  if (args.positionals.length - 1 !== positionals) {
    throw new UsageError(positionals === 0 ? `"job ${sub}" takes no arguments; run "bastion job --help"` : `"job ${sub}" needs ${positionals} argument; run "bastion job --help"`);
  }
}

const out = (line: string) => process.stdout.write(line + '\n');

/** Run `bastion job`. */
export async function jobCommand(config: Config, logger: Logger, _version: string, args: CommandArgs): Promise<number> {
  const sub = args.positionals[0];
  if (sub === undefined || !(sub in SUBCOMMAND_FLAGS)) {
    throw new UsageError(sub === undefined ? 'job: missing subcommand (list, create or run); run "bastion job --help"' : `job: unknown subcommand ${JSON.stringify(sub)} (list, create or run)`);
  }
  checkArgs(sub, args, sub === 'run' ? 1 : 0);
  // Human output goes to stdout: only warnings and errors are logged there.
  const quiet = logger.levelVal < 40 ? logger.child({}, { level: 'warn' }) : logger;
  if (sub === 'create') return createCommand(config, quiet, args);
  const db = await openToolDatabase(config, quiet, `bastion-job-${sub}`, { requireHub: sub === 'run' });
  try {
    if (sub === 'list') return await listCommand(db.pool, args.flags.archived === true, args.flags.json === true);
    return await runCommand(db.pool, args.positionals[1]!, args.flags.follow === true);
  } finally {
    await db.close();
  }
}

type Pool = Awaited<ReturnType<typeof openToolDatabase>>['pool'];

function targetLabel(spec: unknown): string {
  const target = (spec as { target?: { type?: string; base_dir?: string; base_url?: string } } | null)?.target;
  if (target?.type === 'local_dir') return `local_dir ${target.base_dir ?? '?'}`;
  if (target?.type === 'webdav') return `webdav ${target.base_url ?? '?'}`;
  return '?';
}

function lastRunLabel(j: JobListItem): string {
  if (!j.last_run) return '-';
  const when = (j.last_run.ended_at ?? j.last_run.created_at).toISOString().replace(/\.\d+Z$/, 'Z');
  return `${j.last_run.status}${j.last_run.error_code ? ` (${j.last_run.error_code})` : ''} ${when}`;
}

async function listCommand(pool: Pool, archived: boolean, json: boolean): Promise<number> {
  const jobs = await listJobs(pool, { includeArchived: archived });
  if (json) {
    out(JSON.stringify(jobs.map((j) => ({ id: j.id, name: j.name, node_id: j.node_id, schedule: j.schedule, schedule_timezone: j.schedule_timezone, overlap_policy: j.overlap_policy, archived_at: j.archived_at, spec: j.spec, last_run: j.last_run })), null, 2));
    return 0;
  }
  if (jobs.length === 0) {
    out(archived ? 'no jobs' : 'no jobs (archived jobs are hidden; --archived shows them)');
    return 0;
  }
  const rows = jobs.map((j) => [
    j.name + (j.archived_at ? ' [archived]' : ''),
    j.node_id,
    j.schedule ? `${j.schedule} ${j.schedule_timezone}` : 'manual',
    j.overlap_policy,
    targetLabel(j.spec),
    lastRunLabel(j),
    j.id,
  ]);
  const head = ['NAME', 'NODE', 'SCHEDULE', 'OVERLAP', 'TARGET', 'LAST RUN', 'ID'];
  const widths = head.map((h, i) => Math.min(60, Math.max(h.length, ...rows.map((r) => r[i]!.length))));
  for (const r of [head, ...rows]) out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
  return 0;
}

async function readSpecFile(file: string): Promise<unknown> {
  let text: string;
  try {
    if (file === '-') {
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const c of process.stdin) {
        size += (c as Buffer).length;
        if (size > MAX_SPEC_FILE_BYTES) throw new UsageError(`--spec-file: more than ${MAX_SPEC_FILE_BYTES} bytes on stdin`);
        chunks.push(c as Buffer);
      }
      text = Buffer.concat(chunks).toString('utf8');
    } else {
      const st = await fs.stat(file);
      if (!st.isFile()) throw new UsageError(`--spec-file: ${file} is not a file`);
      if (st.size > MAX_SPEC_FILE_BYTES) throw new UsageError(`--spec-file: ${file} is larger than ${MAX_SPEC_FILE_BYTES} bytes`);
      text = await fs.readFile(file, 'utf8');
    }
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--spec-file: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new UsageError(`--spec-file: ${file} is not JSON: ${(e as Error).message}`);
  }
}

async function createCommand(config: Config, logger: Logger, args: CommandArgs): Promise<number> {
  const f = args.flags as Record<string, string | undefined>;
  if (!f['name']) throw new UsageError('job create: --name is required');
  if (!f['spec-file']) throw new UsageError('job create: --spec-file is required (the job spec as JSON; see docs/jobs.md)');
  const input = parseJobInput({
    name: f['name'],
    spec: await readSpecFile(f['spec-file']),
    ...(f['schedule'] !== undefined ? { schedule: f['schedule'] } : {}),
    ...(f['timezone'] !== undefined ? { schedule_timezone: f['timezone'] } : {}),
    ...(f['overlap'] !== undefined ? { overlap_policy: f['overlap'] } : {}),
    ...(f['node'] !== undefined ? { node_id: f['node'] } : {}),
  });
  const db = await openToolDatabase(config, logger, 'bastion-job-create');
  try {
    const job = await createJob(db.pool, input);
    out(`created job ${job.name} (${job.id}) on ${job.node_id}: ${targetLabel(job.spec)}, ${input.spec.format}${input.spec.encryption.type === 'age' ? ' + age' : ''}`);
    if (job.schedule) {
      const next = nextSlots(parseSchedule(job.schedule, job.schedule_timezone), new Date(), 3).map((d) => d.toISOString().replace(/\.\d+Z$/, 'Z'));
      out(`schedule ${job.schedule} (${job.schedule_timezone}); next runs: ${next.join(', ')}`);
    } else {
      out(`manual job: run it with "bastion job run ${job.name}"`);
    }
    return 0;
  } finally {
    await db.close();
  }
}

function eventLine(e: RunEventRow): string {
  const time = e.ts.toISOString().slice(11, 19);
  return `${time} ${e.level.padEnd(5)} ${e.kind.padEnd(8)} ${e.message}`;
}

function outcomeLine(run: RunRow): string {
  const s = run.summary as { source_total?: { files: number; bytes: number }; transfer_total_bytes?: number } | null;
  const took = run.started_at && run.ended_at ? ` in ${formatDuration((run.ended_at.getTime() - run.started_at.getTime()) / 1000)}` : '';
  if (run.status === 'success' && s?.source_total) {
    return `run ${run.id} succeeded${took}: ${s.source_total.files} files, ${formatBytes(s.source_total.bytes)}, ${formatBytes(s.transfer_total_bytes ?? 0)} written`;
  }
  return `run ${run.id} ${run.status}${took}${run.error_code ? `: ${run.error_code}: ${run.error ?? ''}` : ''}`;
}

async function runCommand(pool: Pool, idOrName: string, follow: boolean): Promise<number> {
  const job = await findJob(pool, idOrName);
  const run = await requestRun(pool, job.id);
  if (run.status === 'rejected') {
    process.stderr.write(`bastion: ${run.error_code}: ${run.error}\n`);
    return 1;
  }
  out(`run ${run.id} of job ${job.name} queued`);
  if (!follow) return 0;
  return followRun(pool, run.id);
}

/** How long a run may stay queued before the follower explains why it waits. */
const QUEUED_HINT_MS = 15_000;

/** Follow a run to its end; exit code 0 on success. */
export async function followRun(pool: Pool, runId: string): Promise<number> {
  const tty = process.stdout.isTTY === true;
  const meter = new RateMeter();
  let seq = 0;
  let bar: BarState | null = null;
  let drawn = false;
  let hinted = false;
  const started = Date.now();
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
  };
  process.once('SIGINT', onSigint);
  const clearBar = () => {
    if (drawn) process.stdout.write('\r\x1b[K');
    drawn = false;
  };
  const draw = () => {
    if (!tty || !bar) return;
    process.stdout.write(`\r${renderBar(bar, meter.rate(), process.stdout.columns || 100)}\x1b[K`);
    drawn = true;
  };
  try {
    for (;;) {
      const events = await listRunEvents(pool, runId, { afterSeq: seq });
      for (const e of events) {
        seq = e.seq;
        if (e.kind === 'progress' && tty) continue; // the bar shows it
        clearBar();
        out(eventLine(e));
      }
      const run = await getRun(pool, runId);
      if (!run) throw new BastionError('run_not_found', `run ${runId} disappeared (pruned or its job deleted)`);
      const p = run.progress as (BarState & { updated_at?: string }) | null;
      if (p && run.status === 'running') {
        bar = p;
        meter.add(p.updated_at ? Date.parse(p.updated_at) : Date.now(), p.bytes_done);
      }
      if (isFinalRunStatus(run.status)) {
        clearBar();
        out(outcomeLine(run));
        return run.status === 'success' ? 0 : 1;
      }
      if (run.status === 'queued' && !hinted && Date.now() - started > QUEUED_HINT_MS) {
        hinted = true;
        clearBar();
        out('still queued: waiting for earlier runs of this job, or for a worker (is "bastion hub" or "bastion worker" running?)');
      }
      if (interrupted) {
        clearBar();
        out(`stopped following; run ${runId} goes on (bastion job list shows how it ended)`);
        return 130;
      }
      // Redraw at most 10 times a second; poll the database every 200 ms.
      draw();
      await new Promise((r) => setTimeout(r, 100));
      draw();
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
}
