/**
 * The contract between the artifact format (engine/format) and the storage
 * targets (engine/targets/local-dir*.ts, engine/targets/webdav*.ts).
 *
 * A run's data lives in one directory per run: `<base>/<job_id>/<run_id>/`.
 * Files inside it are named by relative POSIX paths (`payload.part000001`,
 * `manifest.json`, `data/some/dir/file` for raw_tree_v1). Writers never see a
 * base directory or URL; they see a RunDirWriter. Readers (restore, verify,
 * tests) see a RunDirReader. Credentials, when a target needs them, are given
 * to the target's constructor, never to the format code.
 */
import type { Readable } from 'node:stream';

/** One stored file in a run directory. */
export interface StoredFile {
  /** Relative POSIX path inside the run directory. */
  name: string;
  size: number;
}

/**
 * Writes one run directory. Every put is atomic from a reader's point of view:
 * a file becomes visible under its final name only when complete (local_dir
 * writes `<name>.partial` and renames; WebDAV PUTs are atomic on the server).
 */
export interface RunDirWriter {
  /** Redacted, human-readable location for logs and events (never credentials). */
  readonly location: string;
  /** Size of a file already stored under `name`, or null when absent. Used to skip equal-size files on resume. */
  storedSize(name: string): Promise<number | null>;
  /** Store the content of a local file. */
  putFile(name: string, localPath: string, size: number): Promise<void>;
  /** Store a small in-memory file (manifest.json, complete.json). */
  putBytes(name: string, bytes: Uint8Array): Promise<void>;
  /**
   * Store a stream of unknown content directly, when the target can do so
   * without staging (local_dir). Returns null when the caller must stage to a
   * local file first and call putFile (WebDAV needs a replayable body for
   * retries). `commit()` makes the file visible; `abort()` removes the partial.
   */
  openStream(name: string): Promise<{ stream: NodeJS.WritableStream; commit(): Promise<void>; abort(): Promise<void> } | null>;
  /** Ensure a directory exists (raw_tree_v1 empty directories; parents are created by puts). */
  ensureDir(name: string): Promise<void>;
  /**
   * Optional: BLAKE3 (lower-case hex) of the file stored under `name`, or null
   * when absent. Offered by targets that read their own files cheaply
   * (local_dir), so that a resume never keeps a stale file that merely has the
   * right size. Without it, a resume trusts the local resume journal only
   * (engine/format/resume-journal.ts).
   */
  storedHash?(name: string): Promise<string | null>;
}

/** Reads one run directory. */
export interface RunDirReader {
  readonly location: string;
  /** Size of `name`, or null when it does not exist. */
  size(name: string): Promise<number | null>;
  /** Stream a file, optionally a byte range [start, end) . */
  open(name: string, range?: { start: number; end?: number }): Promise<Readable>;
  /** Every file below the run directory (recursive), names relative to it. */
  list(): Promise<StoredFile[]>;
}
