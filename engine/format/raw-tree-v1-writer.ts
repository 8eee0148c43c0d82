/**
 * raw_tree_v1: every file stored as itself under `data/<path>`, no tar, no
 * compression, no encryption; the entries index carries the metadata
 * (mtime, full st_mode, uid, gid, xattrs, symlink target, hard-link group),
 * as the reference does. Directories are created (so empty ones survive);
 * symlinks exist only as records. Every member of a hard-link group is stored
 * as a full copy and carries the same `hardlink_group` ("dev:ino"), so a
 * restore can link them again.
 *
 * Files are streamed in 1 MiB chunks through BLAKE3 to the target (directly,
 * or through one staged file for targets that need a replayable body).
 * Resume: a file already on the target is skipped when its stored size and
 * hash (journal or target) equal the source's, which costs one extra read of
 * that source file.
 *
 * Before complete.json, a target whose writer can list its run directory
 * (WebDAV) is listed back and every file must be there under its own name
 * with its size (engine/format/stored-tree-check.ts): a server that accepted
 * a name it cannot serve fails the run instead of ending it `success`.
 */
import fs from 'node:fs/promises';
import { rawTreeDataName, RAW_TREE_DATA_DIR, type EntryRecord } from '../../core/artifact-format.ts';
import { BastionError } from '../../core/errors.ts';
import { walkSource, unreadable, type WalkEntry } from '../source/walk.ts';
import { Warnings } from '../source/warnings.ts';
import { checkAbort, finalizeRun, prepareBackup, ProgressTracker, type BackupRequest, type BackupSummary } from './backup-context.ts';
import { EntriesIndexWriter } from './entries-index.ts';
import { openFileSink, trustedStoredCopy } from './file-sink.ts';
import { createHasher, type Hasher } from './hashing.ts';
import { ResumeJournal } from './resume-journal.ts';
import { listingWriter, verifyStoredTree } from './stored-tree-check.ts';

const ENTRIES_FILE = 'entries.jsonl.zst';
const CHUNK = 1024 * 1024;

/** Back up `req.source` as raw_tree_v1 into `req.writer`. */
export async function writeRawTreeV1(req: BackupRequest): Promise<BackupSummary> {
  if (req.format !== 'raw_tree_v1') throw new BastionError('invalid_input', 'format: writeRawTreeV1 writes raw_tree_v1 only', { details: { field: 'format' } });
  const prepared = await prepareBackup(req);
  const journal = await ResumeJournal.open(prepared.stagingDir, {
    v: 1,
    job_id: req.jobId,
    run_id: req.runId,
    format: 'raw_tree_v1',
    split_bytes: 0,
    encryption: 'none',
  });
  const warnings = new Warnings();
  const progress = new ProgressTracker(req.onProgress, prepared.totals);
  const entriesPath = `${prepared.stagingDir}/${ENTRIES_FILE}`;
  const entries = await EntriesIndexWriter.create(entriesPath);
  let xattrsRecorded = req.xattrs !== false;
  let dataBytes = 0;
  let skippedFiles = 0;
  let skippedBytes = 0;
  try {
    const hasher = await createHasher('blake3');
    await req.writer.ensureDir(RAW_TREE_DATA_DIR);
    const walk = walkSource(prepared.source, {
      warnings,
      signal: req.signal,
      xattrs: req.xattrs !== false,
      onXattrs: (available) => {
        if (!available) xattrsRecorded = false;
      },
    });
    for await (const entry of walk) {
      checkAbort(req.signal);
      const meta = metadata(entry);
      if (entry.kind === 'dir') {
        await req.writer.ensureDir(rawTreeDataName(entry.path));
        progress.done.dirs++;
        await entries.add({ path: entry.path, kind: 'dir', size: 0, hash_alg: null, hash: null, ...meta });
      } else if (entry.kind === 'symlink') {
        progress.done.files++;
        await entries.add({ path: entry.path, kind: 'symlink', size: 0, hash_alg: null, hash: null, ...meta, symlink_target: entry.target });
      } else {
        const stored = await storeFile(req, journal, entry, hasher, warnings, progress);
        if (stored === null) continue;
        progress.done.files++;
        dataBytes += stored.size;
        if (stored.skipped) {
          skippedFiles++;
          skippedBytes += stored.size;
        }
        const record: EntryRecord = { path: entry.path, kind: 'file', size: stored.size, hash_alg: 'blake3', hash: stored.hash, ...meta };
        if (entry.hardlinkGroup) record.hardlink_group = entry.hardlinkGroup;
        await entries.add(record);
      }
      progress.report();
    }
    if (!xattrsRecorded && req.xattrs !== false) warnings.add('xattrs_unavailable', 'getfattr is not installed: extended attributes were not recorded');
    await entries.close();
    const lister = listingWriter(req.writer);
    progress.stage = 'finalize';
    progress.report();
    const fin = await finalizeRun({
      req,
      journal,
      entriesPath,
      entriesCount: entries.count,
      artifacts: [],
      pipeline: { format: 'raw_tree_v1', tar: 'none', compression: 'none', encryption: 'none', split_bytes: 0 },
      ...(lister ? { verifyStored: (size: number) => verifyStoredTree(lister, entriesPath, size, req.signal) } : {}),
    });
    await fs.rm(entriesPath, { force: true });
    await journal.discard();
    return {
      artifact_format: 'raw_tree_v1',
      source_total: { ...progress.done },
      transfer_total_bytes: dataBytes + fin.bytes,
      entries_count: entries.count,
      parts: 0,
      warnings: warnings.summary(),
      xattrs_recorded: xattrsRecorded,
      resumed: { skipped_files: skippedFiles + (fin.entriesSkipped ? 1 : 0), skipped_bytes: skippedBytes + (fin.entriesSkipped ? fin.entriesSize : 0) },
    };
  } catch (e) {
    entries.destroy();
    throw e;
  } finally {
    await journal.close();
  }
}

/** mtime (seconds; omitted before 1970 as the reference's u64 cannot hold it), full st_mode, ids, xattrs. */
function metadata(entry: WalkEntry): Pick<EntryRecord, 'mtime' | 'mode' | 'uid' | 'gid' | 'xattrs'> {
  const m: Pick<EntryRecord, 'mtime' | 'mode' | 'uid' | 'gid' | 'xattrs'> = { mode: entry.stat.mode, uid: entry.stat.uid, gid: entry.stat.gid };
  if (entry.stat.mtime >= 0) m.mtime = entry.stat.mtime;
  if (entry.xattrs && Object.keys(entry.xattrs).length > 0) m.xattrs = entry.xattrs;
  return m;
}

/** Hash (and optionally write) a source file; null when it vanished. */
async function readThrough(absPath: string, hasher: Hasher, write: ((b: Buffer) => Promise<void>) | null, signal: AbortSignal | undefined): Promise<{ size: number; hash: string; statSize: number; changed: boolean } | null> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(absPath, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw unreadable(absPath, e);
  }
  try {
    const before = await fh.stat();
    let size = 0;
    for (;;) {
      checkAbort(signal);
      const buf = Buffer.allocUnsafe(Math.max(1, Math.min(CHUNK, before.size - size + 1)));
      let n: number;
      try {
        n = (await fh.read(buf, 0, buf.length, null)).bytesRead;
      } catch (e) {
        throw unreadable(absPath, e);
      }
      if (n === 0) break;
      const piece = n === buf.length ? buf : buf.subarray(0, n);
      hasher.update(piece);
      if (write) await write(piece);
      size += n;
    }
    const after = await fh.stat();
    return { size, hash: hasher.digestHex(), statSize: before.size, changed: size !== before.size || after.mtimeMs !== before.mtimeMs };
  } finally {
    await fh.close();
  }
}

async function storeFile(
  req: BackupRequest,
  journal: ResumeJournal,
  entry: Extract<WalkEntry, { kind: 'file' }>,
  hasher: Hasher,
  warnings: Warnings,
  progress: ProgressTracker,
): Promise<{ size: number; hash: string; skipped: boolean } | null> {
  const name = rawTreeDataName(entry.path);
  const existing = await trustedStoredCopy(req.writer, journal, name);
  if (existing) {
    const probe = await readThrough(entry.absPath, hasher, null, req.signal);
    if (probe === null) {
      warnings.add('vanished', `${entry.absPath} disappeared during the backup`);
      return null;
    }
    if (probe.size === existing.size && probe.hash === existing.hash) {
      await journal.record(name, probe.size, probe.hash);
      progress.done.bytes += probe.size;
      progress.storedFiles++;
      return { size: probe.size, hash: probe.hash, skipped: true };
    }
  }
  const sink = await openFileSink(req.writer, name, req.stagingDir);
  let result;
  try {
    result = await readThrough(
      entry.absPath,
      hasher,
      async (b) => {
        await sink.write(b);
        progress.done.bytes += b.length;
        progress.writtenBytes += b.length;
        progress.report();
      },
      req.signal,
    );
    if (result === null) {
      await sink.abort();
      warnings.add('vanished', `${entry.absPath} disappeared during the backup`);
      return null;
    }
    await sink.commit();
  } catch (e) {
    await sink.abort();
    throw e;
  }
  if (result.changed) warnings.add('changed_during_read', `${entry.absPath} changed while it was read; stored ${result.size} bytes`);
  await journal.record(name, result.size, result.hash);
  progress.storedFiles++;
  return { size: result.size, hash: result.hash, skipped: false };
}
