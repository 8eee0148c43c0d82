/**
 * The one entry point for producing a snapshot: back up a filesystem source
 * into a run directory through any RunDirWriter, in the requested format.
 * Used by the hub's backup task and by agents alike.
 */
import { writeArchiveV1 } from './archive-v1-writer.ts';
import type { BackupRequest, BackupSummary } from './backup-context.ts';
import { writeRawTreeV1 } from './raw-tree-v1-writer.ts';

export type { BackupProgress, BackupRequest, BackupSummary, Units } from './backup-context.ts';

/**
 * Run a whole backup: walk the source, store the payload (archive_v1) or the
 * data files (raw_tree_v1), then the entries index, manifest.json and, last,
 * complete.json. Re-running the same run into the same directory resumes:
 * files already stored and verified are not written again.
 */
export function runBackup(req: BackupRequest): Promise<BackupSummary> {
  return req.format === 'raw_tree_v1' ? writeRawTreeV1(req) : writeArchiveV1(req);
}
