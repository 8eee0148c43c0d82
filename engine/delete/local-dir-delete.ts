/**
 * Delete one local_dir snapshot, `<base_dir>/<job_id>/<run_id>/`, on the node
 * that holds it, with every safety rule of DESIGN §6. A delete that cannot
 * prove it is removing exactly a Bastion run directory touches nothing and
 * fails with kind `config` (the task goes `blocked`, an operator looks).
 *
 * The path checks (UUID ids, a real base_dir, no symlinked job or run
 * directory, realpath inside base_dir, the re-check with inode comparison
 * right before removal, rm that never follows links) are shared with the
 * incomplete-run cleanup and live in engine/targets/local-run-dir-removal.ts.
 * What is the delete's own: the run directory must look like Bastion data
 * (complete.json, manifest.json, entries.jsonl.zst, a payload.part* or a
 * *.partial entry); anything else is refused with reason `not_bastion_data`.
 * A missing job or run directory is `not_found` (the snapshot becomes
 * `missing`); a missing base_dir is an `io` failure.
 */
import { looksLikeBastionRunDir, removeLocalRunDir, runDirRefusal, type RunDirRemovalOptions } from '../targets/local-run-dir-removal.ts';

export { looksLikeBastionRunDir } from '../targets/local-run-dir-removal.ts';

/** What a local delete did. */
export interface LocalDeleteResult {
  outcome: 'deleted' | 'not_found';
  /** The run directory (deleted, or looked for). */
  path: string;
  durationMs: number;
}

/** Test seam: runs after the checks and before the re-check and removal (to simulate a swap in that window). */
export type LocalDeleteOptions = RunDirRemovalOptions;

/**
 * Delete the run directory of a local_dir snapshot. Resolves `deleted` or
 * `not_found`; throws TaskAttemptError (`config` for every safety refusal,
 * `io` for file system failures).
 */
export async function deleteLocalRunDir(baseDir: string, jobId: string, runId: string, options: LocalDeleteOptions = {}): Promise<LocalDeleteResult> {
  const r = await removeLocalRunDir(
    baseDir,
    jobId,
    runId,
    (names, runDir) => {
      if (!looksLikeBastionRunDir(names)) {
        throw runDirRefusal('not_bastion_data', `local_dir: ${runDir} does not look like Bastion data (no complete.json, manifest.json, entries.jsonl.zst, payload.part* or *.partial)`, runDir);
      }
      return { action: 'remove' };
    },
    options,
  );
  // decide never keeps, so the outcome is removed or not_found.
  return { outcome: r.outcome === 'removed' ? 'deleted' : 'not_found', path: r.path, durationMs: r.durationMs };
}
