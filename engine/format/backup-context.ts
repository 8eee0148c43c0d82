/**
 * What both format writers share: the request and summary types, request
 * validation, the totals scan, progress reporting and the final steps
 * (entries index, manifest, complete.json — in that order, complete.json last,
 * always).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { BastionError } from '../../core/errors.ts';
import { isUuid } from '../../core/ids.ts';
import {
  COMPLETE_BYTES,
  COMPLETE_NAME,
  ENTRIES_INDEX_NAME,
  FORMAT_VERSION,
  MANIFEST_NAME,
  manifestSchema,
  serializeManifest,
  type ArtifactPart,
  type Manifest,
} from '../../core/artifact-format.ts';
import { MAX_PART_SIZE_BYTES, MIN_PART_SIZE_BYTES, type ArtifactFormat, type Encryption, type FilesystemSource } from '../../core/job-spec.ts';
import type { RunDirWriter } from '../targets/target.ts';
import { prepareSource, walkSource, type PreparedSource } from '../source/walk.ts';
import { Warnings, type WarningsSummary } from '../source/warnings.ts';
import { openFileSink, trustedStoredCopy } from './file-sink.ts';
import { hashFile } from './hashing.ts';
import type { ResumeJournal } from './resume-journal.ts';

/** Counts of source entries (the reference's ProgressUnitsV1). */
export interface Units {
  files: number;
  dirs: number;
  bytes: number;
}

/** A progress report; called often (per entry and per chunk): the caller throttles. */
export interface BackupProgress {
  stage: 'scan' | 'packaging' | 'finalize';
  done: Units;
  /** From the scan; null during the scan itself. */
  total: Units | null;
  /** Payload parts (archive_v1) or data files (raw_tree_v1) stored or found stored so far. */
  stored_files: number;
  /** Bytes written to the target so far (skipped files not counted). */
  written_bytes: number;
}

/** Everything a backup run needs. */
export interface BackupRequest {
  jobId: string;
  runId: string;
  /** Start of the run (manifest started_at). */
  startedAt: Date;
  source: Pick<FilesystemSource, 'paths' | 'include' | 'exclude' | 'symlinks'>;
  format: ArtifactFormat;
  encryption: Encryption;
  /** archive_v1 part size (ignored by raw_tree_v1). */
  partSizeBytes: number;
  writer: RunDirWriter;
  /**
   * Absolute local directory of this run only (e.g. `<data>/runs/<run_id>/staging`):
   * the entries index, the resume journal and at most one staged upload. Keep
   * it across attempts of the same run: that is what makes resume cheap.
   */
  stagingDir: string;
  onProgress?: (p: BackupProgress) => void;
  signal?: AbortSignal;
  /** Parallel zstd frames (default: CPU count). */
  concurrency?: number;
  /** Read extended attributes (default true; needs getfattr). */
  xattrs?: boolean;
  /**
   * Smallest part size accepted. Only tests lower it, to exercise many parts
   * with little data; jobs are validated against the spec minimum (1 MiB).
   */
  minPartSizeBytes?: number;
}

/** What a successful run reports (stored in runs.summary; the snapshot index reads source_total and transfer_total_bytes). */
export interface BackupSummary {
  artifact_format: ArtifactFormat;
  source_total: Units;
  /** Every byte of the snapshot on the target: parts or data files + entries index + manifest + complete.json. */
  transfer_total_bytes: number;
  entries_count: number;
  /** Number of payload parts (0 for raw_tree_v1). */
  parts: number;
  warnings: WarningsSummary;
  /** Whether extended attributes were read (false: getfattr missing, none recorded). */
  xattrs_recorded: boolean;
  /** Files already on the target from an earlier attempt, verified and not rewritten. */
  resumed: { skipped_files: number; skipped_bytes: number };
}

/** Validated request pieces. */
export interface Prepared {
  source: PreparedSource;
  stagingDir: string;
  totals: Units;
}

function invalid(field: string, reason: string, code: 'invalid_input' | 'invalid_path' = 'invalid_input'): BastionError {
  return new BastionError(code, `${field}: ${reason}`, { details: { field, reason } });
}

/** Check the request, then count the source (stage `scan`). */
export async function prepareBackup(req: BackupRequest): Promise<Prepared> {
  if (!isUuid(req.jobId)) throw invalid('job_id', 'must be a lower-case UUID');
  if (!isUuid(req.runId)) throw invalid('run_id', 'must be a lower-case UUID');
  if (!(req.startedAt instanceof Date) || Number.isNaN(req.startedAt.getTime())) throw invalid('started_at', 'must be a valid date');
  if (req.format !== 'archive_v1' && req.format !== 'raw_tree_v1') throw invalid('format', 'must be archive_v1 or raw_tree_v1');
  if (req.format === 'raw_tree_v1' && req.encryption.type !== 'none') throw invalid('encryption', 'raw_tree_v1 stores plain files and cannot be encrypted');
  if (req.format === 'archive_v1') {
    const min = req.minPartSizeBytes ?? MIN_PART_SIZE_BYTES;
    if (!Number.isSafeInteger(req.partSizeBytes) || req.partSizeBytes < min || req.partSizeBytes > MAX_PART_SIZE_BYTES) {
      throw invalid('part_size_bytes', `must be an integer in ${min}..${MAX_PART_SIZE_BYTES}`);
    }
  }
  if (typeof req.stagingDir !== 'string' || !path.isAbsolute(req.stagingDir) || req.stagingDir.includes('\0')) {
    throw invalid('staging_dir', 'must be an absolute path', 'invalid_path');
  }
  const source = prepareSource(req.source);
  await fs.mkdir(req.stagingDir, { recursive: true, mode: 0o700 });
  const totals: Units = { files: 0, dirs: 0, bytes: 0 };
  const report = () => req.onProgress?.({ stage: 'scan', done: { ...totals }, total: null, stored_files: 0, written_bytes: 0 });
  report();
  // The scan walks without xattrs and with its own warnings: the real walk reports them.
  for await (const e of walkSource(source, { warnings: new Warnings(), signal: req.signal })) {
    if (e.kind === 'dir') totals.dirs++;
    else {
      totals.files++;
      totals.bytes += e.kind === 'file' ? e.stat.size : 0;
    }
    report();
  }
  return { source, stagingDir: req.stagingDir, totals };
}

/** Throw `backup_aborted` when the signal fired. */
export function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new BastionError('backup_aborted', undefined, { cause: signal.reason });
}

/** Progress state of one attempt. */
export class ProgressTracker {
  readonly done: Units = { files: 0, dirs: 0, bytes: 0 };
  storedFiles = 0;
  writtenBytes = 0;
  stage: BackupProgress['stage'] = 'packaging';
  private readonly cb: BackupRequest['onProgress'];
  private readonly total: Units;

  constructor(cb: BackupRequest['onProgress'], total: Units) {
    this.cb = cb;
    this.total = total;
  }

  report(): void {
    this.cb?.({ stage: this.stage, done: { ...this.done }, total: { ...this.total }, stored_files: this.storedFiles, written_bytes: this.writtenBytes });
  }
}

/** The last steps of a run, after the payload or data files are stored. */
export interface FinalizeInput {
  req: BackupRequest;
  journal: ResumeJournal;
  /** Local entries index file. */
  entriesPath: string;
  entriesCount: number;
  artifacts: ArtifactPart[];
  pipeline: Manifest['pipeline'];
  /**
   * Called once the entries index is stored, before manifest.json and
   * complete.json: a check of what the target really holds (raw_tree_v1 on
   * WebDAV, engine/format/stored-tree-check.ts). Throwing fails the run
   * without a complete.json.
   */
  verifyStored?: (entriesIndexSize: number) => Promise<void>;
}

/** Store the entries index (resumable), the manifest, then complete.json. Returns the bytes of those three. */
export async function finalizeRun(f: FinalizeInput): Promise<{ bytes: number; entriesSkipped: boolean; entriesSize: number }> {
  const { req, journal } = f;
  const st = await fs.stat(f.entriesPath);
  const hash = await hashFile(f.entriesPath);
  const stored = await trustedStoredCopy(req.writer, journal, ENTRIES_INDEX_NAME);
  const skip = stored !== null && stored.size === st.size && stored.hash === hash;
  if (!skip) {
    const sink = await openFileSink(req.writer, ENTRIES_INDEX_NAME, req.stagingDir);
    try {
      const fh = await fs.open(f.entriesPath, 'r');
      try {
        const buf = Buffer.allocUnsafe(1024 * 1024);
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, null);
          if (bytesRead === 0) break;
          await sink.write(Buffer.from(buf.subarray(0, bytesRead)));
        }
      } finally {
        await fh.close();
      }
      await sink.commit();
    } catch (e) {
      await sink.abort();
      throw e;
    }
  }
  await journal.record(ENTRIES_INDEX_NAME, st.size, hash);
  checkAbort(req.signal);
  if (f.verifyStored) {
    await f.verifyStored(st.size);
    checkAbort(req.signal);
  }

  const manifest: Manifest = manifestSchema.parse({
    format_version: FORMAT_VERSION,
    job_id: req.jobId,
    run_id: req.runId,
    started_at: req.startedAt.toISOString(),
    ended_at: new Date().toISOString(),
    pipeline: f.pipeline,
    artifacts: f.artifacts,
    entry_index: { name: ENTRIES_INDEX_NAME, count: f.entriesCount },
  });
  const manifestBytes = serializeManifest(manifest);
  // manifest.json and complete.json are always rewritten: the manifest's ended_at differs on every attempt.
  await req.writer.putBytes(MANIFEST_NAME, manifestBytes);
  checkAbort(req.signal);
  await req.writer.putBytes(COMPLETE_NAME, COMPLETE_BYTES);
  return { bytes: st.size + manifestBytes.length + COMPLETE_BYTES.length, entriesSkipped: skip, entriesSize: st.size };
}
