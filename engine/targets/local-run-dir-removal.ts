/**
 * Removing a local_dir run directory, `<base_dir>/<job_id>/<run_id>/`, with
 * every safety rule of DESIGN §6 — the one implementation behind both the
 * snapshot delete (engine/delete/local-dir-delete.ts) and the incomplete-run
 * cleanup (engine/cleanup/local-dir-cleanup.ts). Those two differ only in
 * what they do with the directory once it is proven to be exactly the run
 * directory (the `decide` callback: remove it, keep it with a reason, or
 * refuse); everything that proves it lives here, once.
 *
 * Rules, in order:
 * 1. job_id and run_id are canonical UUIDs (so they are single, plain path
 *    components: no `..`, no `/`).
 * 2. base_dir is an absolute path that exists, is a directory, and is its own
 *    real path: neither it nor any parent is a symlink. (The writer refuses such
 *    a base_dir too, so Bastion data never lives behind one; a base_dir swapped
 *    for a symlink afterwards is refused, not followed.) A missing base_dir is an
 *    `io` failure, not "missing data": an unmounted disk must not turn every run
 *    on it into "nothing there".
 * 3. The job and run directories are real directories (lstat, not stat): a
 *    symlink in either component is refused. Either one absent → `not_found`.
 * 4. realpath(run dir) is exactly base_dir/job_id/run_id.
 * 5. `decide(names)` looks at the run directory's entries: remove, keep (with a
 *    reason), or throw a refusal.
 * 6. Right before removing, base_dir, the job and the run directory are checked
 *    again, the run and job directories must be the same inodes as in the first
 *    check (narrows the window for a swap between check and removal), and the
 *    entries are listed and decided again (a complete.json written meanwhile
 *    by a writer we thought dead keeps the directory).
 * 7. Removal is `fs.rm` recursive, which unlinks symlinks inside the run
 *    directory without following them (tested: a link to a file or directory
 *    outside leaves its target untouched). The job directory stays, even when
 *    empty: a backup of the same job may be creating a run in it right now.
 *
 * Every refusal is a TaskAttemptError of kind `config` whose message ends
 * "nothing was deleted"; file system failures are kind `io`.
 */
import fs from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { isUuid } from '../../core/ids.ts';
import { TaskAttemptError } from '../../core/task-attempt-error.ts';
import { absolutePathSchema } from '../../core/target-snapshot.ts';

/** Names whose presence marks a directory as Bastion run data (reference §6). */
const MARKER_FILES = new Set(['complete.json', 'manifest.json', 'entries.jsonl.zst']);

/** True when a directory listing marks Bastion run data: complete.json, manifest.json, entries.jsonl.zst, payload.part* or *.partial. */
export function looksLikeBastionRunDir(names: readonly string[]): boolean {
  return names.some((n) => MARKER_FILES.has(n) || n.startsWith('payload.part') || n.endsWith('.partial'));
}

/** What to do with a run directory that passed the path checks, decided from its entry names. */
export type RunDirVerdict = { action: 'remove' } | { action: 'keep'; reason: string; message: string };

/** What {@link removeLocalRunDir} did. */
export interface RunDirRemoval {
  /** removed: the directory is gone; kept: decide said keep (see `kept`); not_found: no job or run directory. */
  outcome: 'removed' | 'kept' | 'not_found';
  /** The run directory (removed, kept, or looked for). */
  path: string;
  durationMs: number;
  /** Why the directory was kept. */
  kept?: { reason: string; message: string };
}

/** Test seam: runs after the checks and before the re-check and removal (to simulate a swap in that window). */
export interface RunDirRemovalOptions {
  beforeRemove?: () => Promise<void>;
}

const errno = (e: unknown): string => (e as NodeJS.ErrnoException)?.code ?? 'EIO';

/** A safety refusal: kind config, nothing touched. */
export function runDirRefusal(reason: string, message: string, path?: string): TaskAttemptError {
  return new TaskAttemptError('config', reason, `${message}; nothing was deleted`, path === undefined ? {} : { fields: { path } });
}

function io(op: string, path: string, e: unknown): TaskAttemptError {
  const code = errno(e);
  return new TaskAttemptError('io', `fs_${code.toLowerCase()}`, `local_dir: ${op} ${path} failed: ${code}`, { fields: { path, errno: code }, cause: e });
}

/** lstat that maps ENOENT/ENOTDIR to null. */
async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await fs.lstat(p);
  } catch (e) {
    if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') return null;
    throw io('stat', p, e);
  }
}

/** base_dir must be an existing real directory that is its own real path; returns the normalised path. */
async function checkBase(baseDir: string): Promise<string> {
  const parsed = absolutePathSchema.safeParse(baseDir);
  if (!parsed.success) {
    throw new TaskAttemptError('config', 'invalid_base_dir', `target.base_dir is not acceptable: ${parsed.error.issues[0]?.message ?? 'invalid'}; nothing was deleted`);
  }
  const base = baseDir.replace(/\/{2,}/g, '/').replace(/(.)\/+$/, '$1');
  const st = await lstatOrNull(base);
  if (st === null) {
    throw new TaskAttemptError('io', 'base_dir_missing', `local_dir: base_dir ${base} does not exist (is the disk mounted?)`, { fields: { path: base } });
  }
  if (st.isSymbolicLink()) throw runDirRefusal('base_dir_is_symlink', `local_dir: base_dir ${base} is a symbolic link`, base);
  if (!st.isDirectory()) throw runDirRefusal('base_dir_not_directory', `local_dir: base_dir ${base} is not a directory`, base);
  let real: string;
  try {
    real = await fs.realpath(base);
  } catch (e) {
    throw io('resolve', base, e);
  }
  if (real !== base) throw runDirRefusal('base_dir_through_symlink', `local_dir: base_dir ${base} goes through a symbolic link`, base);
  return base;
}

/** A component directory: null when absent, else it must be a real directory. */
async function checkComponent(p: string, what: 'job' | 'run'): Promise<Stats | null> {
  const st = await lstatOrNull(p);
  if (st === null) return null;
  if (st.isSymbolicLink()) throw runDirRefusal(`${what}_dir_is_symlink`, `local_dir: the ${what} directory ${p} is a symbolic link`, p);
  if (!st.isDirectory()) throw runDirRefusal(`${what}_dir_not_directory`, `local_dir: the ${what} directory ${p} is not a directory`, p);
  return st;
}

/** Entry names of the run directory, or null when it vanished. */
async function listOrNull(runDir: string): Promise<string[] | null> {
  try {
    return await fs.readdir(runDir);
  } catch (e) {
    if (errno(e) === 'ENOENT') return null;
    throw io('list', runDir, e);
  }
}

const sameInode = (a: Stats, b: Stats): boolean => a.dev === b.dev && a.ino === b.ino;

/**
 * Prove that `<baseDir>/<jobId>/<runId>` is a real run directory under a real
 * base_dir, ask `decide` what to do with it, and remove it when told to.
 * Throws TaskAttemptError: `config` for every safety refusal (and whatever
 * `decide` throws), `io` for file system failures.
 */
export async function removeLocalRunDir(
  baseDir: string,
  jobId: string,
  runId: string,
  decide: (names: readonly string[], runDir: string) => RunDirVerdict,
  options: RunDirRemovalOptions = {},
): Promise<RunDirRemoval> {
  const started = performance.now();
  const result = (outcome: RunDirRemoval['outcome'], path: string, kept?: RunDirRemoval['kept']): RunDirRemoval => ({
    outcome,
    path,
    durationMs: Math.round(performance.now() - started),
    ...(kept ? { kept } : {}),
  });
  if (!isUuid(jobId)) throw new TaskAttemptError('config', 'invalid_job_id', 'local_dir: job_id is not a lower-case UUID; nothing was deleted');
  if (!isUuid(runId)) throw new TaskAttemptError('config', 'invalid_run_id', 'local_dir: run_id is not a lower-case UUID; nothing was deleted');

  const base = await checkBase(baseDir);
  const jobDir = base === '/' ? `/${jobId}` : `${base}/${jobId}`;
  const runDir = `${jobDir}/${runId}`;
  const jobSt = await checkComponent(jobDir, 'job');
  if (jobSt === null) return result('not_found', runDir);
  const runSt = await checkComponent(runDir, 'run');
  if (runSt === null) return result('not_found', runDir);
  let real: string;
  try {
    real = await fs.realpath(runDir);
  } catch (e) {
    if (errno(e) === 'ENOENT') return result('not_found', runDir);
    throw io('resolve', runDir, e);
  }
  if (real !== runDir) throw runDirRefusal('run_dir_outside_base', `local_dir: ${runDir} resolves to ${real}, outside its place under base_dir`, runDir);

  const names = await listOrNull(runDir);
  if (names === null) return result('not_found', runDir);
  const verdict = decide(names, runDir);
  if (verdict.action === 'keep') return result('kept', runDir, { reason: verdict.reason, message: verdict.message });

  await options.beforeRemove?.();

  // Re-check right before removing: same base, same real directories, same verdict.
  await checkBase(base);
  const jobSt2 = await checkComponent(jobDir, 'job');
  const runSt2 = jobSt2 === null ? null : await checkComponent(runDir, 'run');
  if (jobSt2 === null || runSt2 === null) return result('not_found', runDir);
  if (!sameInode(jobSt, jobSt2) || !sameInode(runSt, runSt2)) {
    throw runDirRefusal('replaced_during_delete', `local_dir: ${runDir} was replaced while it was being checked`, runDir);
  }
  const names2 = await listOrNull(runDir);
  if (names2 === null) return result('not_found', runDir);
  const verdict2 = decide(names2, runDir);
  if (verdict2.action === 'keep') return result('kept', runDir, { reason: verdict2.reason, message: verdict2.message });
  try {
    await fs.rm(runDir, { recursive: true, force: false, maxRetries: 2 });
  } catch (e) {
    if (errno(e) === 'ENOENT') return result('not_found', runDir);
    throw io('remove', runDir, e);
  }
  return result('removed', runDir);
}
