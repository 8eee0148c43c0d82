/**
 * Clean up the local_dir run directory of a run that never completed,
 * `<base_dir>/<job_id>/<run_id>/`, on the node that holds it (seed 004,
 * DESIGN §6). The path safety rules are the snapshot delete's, shared in
 * engine/targets/local-run-dir-removal.ts (UUID ids, a real base_dir, no
 * symlinked job or run directory, realpath inside base_dir, a re-check with
 * inode comparison right before removal, rm that never follows links); a
 * refusal touches nothing and fails with kind `config`.
 *
 * What the cleanup decides from the run directory's entries:
 *
 *   no job or run directory             → skip_not_found (nothing to clean)
 *   complete.json present               → skip_complete: nothing is deleted. The
 *                                         run wrote all its data but did not end
 *                                         `success` (a failure or cancel after the
 *                                         upload, reference §11.11), so no snapshot
 *                                         indexes it: the data is orphaned and
 *                                         stays for an operator to look at.
 *   Bastion markers (manifest.json,     → deleted
 *   entries.jsonl.zst, payload.part*,
 *   *.partial)
 *   anything else                       → skip_not_found with reason
 *                                         not_bastion_data: never deleted (the
 *                                         reference treated it as not found too)
 *
 * The verdict is taken again right before removal, so a complete.json that
 * appears meanwhile keeps the directory.
 */
import { looksLikeBastionRunDir, removeLocalRunDir, type RunDirRemovalOptions, type RunDirVerdict } from '../targets/local-run-dir-removal.ts';

/** Outcome of a local cleanup (the values of incomplete_cleanup_tasks.outcome). */
export type CleanupOutcome = 'skip_complete' | 'skip_not_found' | 'deleted';

/** What a local cleanup did. */
export interface LocalCleanupResult {
  outcome: CleanupOutcome;
  /** Why a directory that exists was left alone (`complete`, `not_bastion_data`). */
  reason?: 'complete' | 'not_bastion_data';
  /** The run directory (cleaned, kept, or looked for). */
  path: string;
  durationMs: number;
}

/** The cleanup's verdict on a run directory's entries. */
export function cleanupVerdict(names: readonly string[]): RunDirVerdict {
  if (names.includes('complete.json')) {
    return { action: 'keep', reason: 'complete', message: 'complete.json is present: the run wrote all its data; nothing was deleted' };
  }
  if (looksLikeBastionRunDir(names)) return { action: 'remove' };
  return {
    action: 'keep',
    reason: 'not_bastion_data',
    message: 'the directory does not look like Bastion data (no manifest.json, entries.jsonl.zst, payload.part* or *.partial); nothing was deleted',
  };
}

/** Clean up the run directory of an incomplete local_dir run. Throws TaskAttemptError (`config` refusals, `io` failures). */
export async function cleanupLocalRunDir(baseDir: string, jobId: string, runId: string, options: RunDirRemovalOptions = {}): Promise<LocalCleanupResult> {
  const r = await removeLocalRunDir(baseDir, jobId, runId, cleanupVerdict, options);
  switch (r.outcome) {
    case 'removed':
      return { outcome: 'deleted', path: r.path, durationMs: r.durationMs };
    case 'not_found':
      return { outcome: 'skip_not_found', path: r.path, durationMs: r.durationMs };
    case 'kept':
      return r.kept?.reason === 'complete'
        ? { outcome: 'skip_complete', reason: 'complete', path: r.path, durationMs: r.durationMs }
        : { outcome: 'skip_not_found', reason: 'not_bastion_data', path: r.path, durationMs: r.durationMs };
  }
}
