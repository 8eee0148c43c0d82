/**
 * The local_dir target: a run directory `<base_dir>/<job_id>/<run_id>/` on
 * this node's filesystem, behind the RunDirWriter / RunDirReader contract.
 *
 * Safety rules (the same ones deletion applies, DESIGN §6):
 * - base_dir is absolute, exists, is a directory, is writable (for writing)
 *   and is its own real path: neither it nor any parent is a symlink, so the
 *   operator sees in the job spec exactly where data goes (point base_dir at
 *   the real path instead).
 * - job_id and run_id are canonical UUIDs; the job and run directories and
 *   every directory created below them must be real directories, never
 *   symlinks (checked with lstat after creation).
 * - Names inside the run directory are relative POSIX paths without `..`,
 *   `.`, empty segments or NUL (`invalid_path` otherwise).
 * - Files are written as `<name>.partial` (opened with O_NOFOLLOW, so a
 *   planted link is not followed), fsynced, then renamed into place; the
 *   directories that received renames are fsynced before `complete.json` is
 *   committed, so a visible complete.json implies everything before it is
 *   durable. Files are created 0600 and directories 0700: a backup holds
 *   whatever the source held.
 */
import fs from 'node:fs/promises';
import { constants as C } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { BastionError } from '../../core/errors.ts';
import { isUuid } from '../../core/ids.ts';
import { absolutePathSchema } from '../../core/target-snapshot.ts';
import { COMPLETE_NAME, PARTIAL_SUFFIX, isSafeRelativePath } from '../../core/artifact-format.ts';
import { hashFile } from '../format/hashing.ts';
import type { RunDirReader, RunDirWriter, StoredFile } from './target.ts';

/** Where a local run directory is. */
export interface LocalRunDirLocation {
  /** `target.base_dir` of the job spec / target snapshot. */
  baseDir: string;
  jobId: string;
  runId: string;
}

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
const READ_CHUNK = 1024 * 1024;
const STREAM_QUEUE_BYTES = 8 * 1024 * 1024;
const errno = (e: unknown): string => (e as NodeJS.ErrnoException)?.code ?? 'EIO';

/** A target-side I/O failure, classified: permissions → target_not_writable, the rest → target_io_error. */
function ioError(op: string, where: string, e: unknown): BastionError {
  const code = errno(e);
  if (e instanceof BastionError) return e;
  const writable = code === 'EACCES' || code === 'EPERM' || code === 'EROFS';
  return new BastionError(writable ? 'target_not_writable' : 'target_io_error', `local_dir: ${op} ${where}: ${code}`, { details: { path: where, reason: code }, cause: e });
}

/**
 * Validate base_dir: absolute, existing directory, its own real path, and
 * (when `writable`) writable by this process. Returns the normalised path.
 */
export async function checkBaseDir(baseDir: string, opts: { writable: boolean }): Promise<string> {
  const field = 'target.base_dir';
  const parsed = absolutePathSchema.safeParse(baseDir);
  if (!parsed.success) {
    const reason = parsed.error.issues[0]?.message ?? 'invalid';
    throw new BastionError('invalid_path', `${field}: ${reason}`, { details: { field, reason } });
  }
  const base = baseDir === '/' ? '/' : baseDir.replace(/\/{2,}/g, '/').replace(/\/+$/, '') || '/';
  let st;
  try {
    st = await fs.lstat(base);
  } catch (e) {
    if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') throw new BastionError('target_not_found', `${field}: ${base} does not exist`, { details: { field, path: base }, cause: e });
    throw ioError('stat', base, e);
  }
  if (st.isSymbolicLink()) {
    throw new BastionError('target_is_symlink', `${field}: ${base} is a symbolic link; use the real path`, { details: { field, path: base, reason: 'base_dir_is_symlink' } });
  }
  if (!st.isDirectory()) throw new BastionError('target_not_directory', `${field}: ${base} is not a directory`, { details: { field, path: base } });
  const real = await fs.realpath(base).catch((e) => {
    throw ioError('resolve', base, e);
  });
  if (real !== base) {
    throw new BastionError('target_is_symlink', `${field}: ${base} goes through a symbolic link (real path ${real}); use the real path`, {
      details: { field, path: base, real_path: real, reason: 'parent_is_symlink' },
    });
  }
  if (opts.writable) {
    try {
      await fs.access(base, C.W_OK | C.X_OK);
    } catch (e) {
      throw new BastionError('target_not_writable', `${field}: ${base} is not writable by this process (${errno(e)})`, { details: { field, path: base, reason: errno(e) }, cause: e });
    }
  }
  return base;
}

function checkIds(loc: LocalRunDirLocation): void {
  if (!isUuid(loc.jobId)) throw new BastionError('invalid_path', 'job_id must be a lower-case UUID', { details: { field: 'job_id', reason: 'not_uuid' } });
  if (!isUuid(loc.runId)) throw new BastionError('invalid_path', 'run_id must be a lower-case UUID', { details: { field: 'run_id', reason: 'not_uuid' } });
}

function checkName(name: string): void {
  if (typeof name !== 'string' || !isSafeRelativePath(name)) {
    throw new BastionError('invalid_path', `file name inside the run directory is not a safe relative path: ${JSON.stringify(String(name).slice(0, 200))}`, {
      details: { field: 'name', reason: 'unsafe_relative_path' },
    });
  }
}

/** Create `dir` if missing; either way it must now be a real directory (not a symlink). */
async function ensureRealDir(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, { mode: DIR_MODE });
  } catch (e) {
    if (errno(e) !== 'EEXIST') throw ioError('create directory', dir, e);
  }
  const st = await fs.lstat(dir).catch((e) => {
    throw ioError('stat', dir, e);
  });
  if (st.isSymbolicLink()) throw new BastionError('target_is_symlink', `local_dir: ${dir} is a symbolic link`, { details: { path: dir, reason: 'symlink_in_run_dir' } });
  if (!st.isDirectory()) throw new BastionError('target_not_directory', `local_dir: ${dir} is not a directory`, { details: { path: dir } });
}

/** Existing real directory, or artifact_missing / target_is_symlink. */
async function requireRealDir(dir: string): Promise<void> {
  let st;
  try {
    st = await fs.lstat(dir);
  } catch (e) {
    if (errno(e) === 'ENOENT') throw new BastionError('artifact_missing', `local_dir: ${dir} does not exist`, { details: { path: dir } });
    throw ioError('stat', dir, e);
  }
  if (st.isSymbolicLink()) throw new BastionError('target_is_symlink', `local_dir: ${dir} is a symbolic link`, { details: { path: dir, reason: 'symlink_in_run_dir' } });
  if (!st.isDirectory()) throw new BastionError('target_not_directory', `local_dir: ${dir} is not a directory`, { details: { path: dir } });
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, C.O_RDONLY | C.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Open (creating the job and run directories) a run directory for writing. */
export async function openLocalRunDirWriter(loc: LocalRunDirLocation): Promise<LocalRunDirWriter> {
  checkIds(loc);
  const base = await checkBaseDir(loc.baseDir, { writable: true });
  const jobDir = path.posix.join(base, loc.jobId);
  const runDir = path.posix.join(jobDir, loc.runId);
  await ensureRealDir(jobDir);
  await ensureRealDir(runDir);
  return new LocalRunDirWriter(runDir);
}

/** Open an existing run directory for reading (`artifact_missing` when it is not there). */
export async function openLocalRunDirReader(loc: LocalRunDirLocation): Promise<LocalRunDirReader> {
  checkIds(loc);
  const base = await checkBaseDir(loc.baseDir, { writable: false });
  const jobDir = path.posix.join(base, loc.jobId);
  const runDir = path.posix.join(jobDir, loc.runId);
  await requireRealDir(jobDir);
  await requireRealDir(runDir);
  return new LocalRunDirReader(runDir);
}

/** RunDirWriter on a local run directory. */
export class LocalRunDirWriter implements RunDirWriter {
  readonly location: string;
  readonly runDir: string;
  /** Directories (relative, '' = run dir) checked to be real, so each is lstat-ed once. */
  private readonly verified = new Set<string>(['']);
  /** Directories that received a rename since the last directory fsync. */
  private readonly dirty = new Set<string>();

  constructor(runDir: string) {
    this.runDir = runDir;
    this.location = `local_dir:${runDir}`;
  }

  private abs(name: string): string {
    return `${this.runDir}/${name}`;
  }

  /** Create and verify every directory above `name` (relative). */
  private async ensureParents(name: string): Promise<void> {
    const parts = name.split('/');
    let rel = '';
    for (let i = 0; i < parts.length - 1; i++) {
      rel = rel === '' ? parts[i]! : `${rel}/${parts[i]}`;
      if (this.verified.has(rel)) continue;
      await ensureRealDir(this.abs(rel));
      this.verified.add(rel);
    }
  }

  private parentOf(name: string): string {
    const i = name.lastIndexOf('/');
    return i < 0 ? '' : name.slice(0, i);
  }

  /** Rename the partial into place; before complete.json, make every earlier rename durable. */
  private async commitRename(name: string): Promise<void> {
    const final = this.abs(name);
    await fs.rename(final + PARTIAL_SUFFIX, final).catch((e) => {
      throw ioError('rename', final, e);
    });
    this.dirty.add(this.parentOf(name));
    if (name === COMPLETE_NAME) await this.syncDirs();
  }

  /** fsync every directory that received a rename (also called for complete.json). */
  async syncDirs(): Promise<void> {
    for (const rel of [...this.dirty].sort((a, b) => b.length - a.length)) {
      await fsyncDir(rel === '' ? this.runDir : this.abs(rel)).catch((e) => {
        throw ioError('fsync', this.abs(rel), e);
      });
      this.dirty.delete(rel);
    }
  }

  private async openPartial(name: string): Promise<fs.FileHandle> {
    checkName(name);
    await this.ensureParents(name);
    const partial = this.abs(name) + PARTIAL_SUFFIX;
    try {
      return await fs.open(partial, C.O_WRONLY | C.O_CREAT | C.O_TRUNC | C.O_NOFOLLOW, FILE_MODE);
    } catch (e) {
      if (errno(e) === 'ELOOP') throw new BastionError('target_is_symlink', `local_dir: ${partial} is a symbolic link`, { details: { path: partial, reason: 'symlink_in_run_dir' } });
      throw ioError('create', partial, e);
    }
  }

  async storedSize(name: string): Promise<number | null> {
    checkName(name);
    let st;
    try {
      st = await fs.lstat(this.abs(name));
    } catch (e) {
      if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') return null;
      throw ioError('stat', this.abs(name), e);
    }
    if (st.isSymbolicLink()) throw new BastionError('target_is_symlink', `local_dir: ${this.abs(name)} is a symbolic link`, { details: { path: this.abs(name), reason: 'symlink_in_run_dir' } });
    if (!st.isFile()) throw new BastionError('target_io_error', `local_dir: ${this.abs(name)} is not a regular file`, { details: { path: this.abs(name), reason: 'not_a_file' } });
    return st.size;
  }

  async storedHash(name: string): Promise<string | null> {
    if ((await this.storedSize(name)) === null) return null;
    return hashFile(this.abs(name), { noFollow: true }).catch((e) => {
      throw ioError('read', this.abs(name), e);
    });
  }

  async putFile(name: string, localPath: string, size: number): Promise<void> {
    const fh = await this.openPartial(name);
    let written = 0;
    try {
      const src = await fs.open(localPath, 'r');
      try {
        const buf = Buffer.allocUnsafe(READ_CHUNK);
        for (;;) {
          const { bytesRead } = await src.read(buf, 0, buf.length, null);
          if (bytesRead === 0) break;
          await writeAll(fh, buf.subarray(0, bytesRead));
          written += bytesRead;
        }
      } finally {
        await src.close();
      }
      if (written !== size) {
        throw new BastionError('target_io_error', `local_dir: ${localPath} has ${written} bytes, expected ${size}`, { details: { path: localPath, reason: 'size_mismatch' } });
      }
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => {});
      await fs.unlink(this.abs(name) + PARTIAL_SUFFIX).catch(() => {});
      throw ioError('write', this.abs(name), e);
    }
    await fh.close();
    await this.commitRename(name);
  }

  async putBytes(name: string, bytes: Uint8Array): Promise<void> {
    const fh = await this.openPartial(name);
    try {
      await writeAll(fh, bytes);
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => {});
      await fs.unlink(this.abs(name) + PARTIAL_SUFFIX).catch(() => {});
      throw ioError('write', this.abs(name), e);
    }
    await fh.close();
    await this.commitRename(name);
  }

  async openStream(name: string): Promise<{ stream: NodeJS.WritableStream; commit(): Promise<void>; abort(): Promise<void> }> {
    const fh = await this.openPartial(name);
    // flush: the stream fsyncs before it closes the descriptor (a FileHandle
    // cannot be closed while a stream holds it, so no separate sync + close).
    // 8 MiB of queue: a 4 MiB payload frame is accepted without waiting for the
    // previous write to finish, so the producer never idles on the disk.
    const stream = fh.createWriteStream({ highWaterMark: STREAM_QUEUE_BYTES, flush: true });
    let settled = false;
    const closed = new Promise<void>((resolve, reject) => {
      stream.once('close', resolve);
      stream.once('error', reject);
    });
    closed.catch(() => {});
    const partial = this.abs(name) + PARTIAL_SUFFIX;
    return {
      stream,
      commit: async () => {
        if (settled) throw new Error('stream already committed or aborted');
        settled = true;
        try {
          stream.end();
          await closed;
        } catch (e) {
          stream.destroy();
          await fs.unlink(partial).catch(() => {});
          throw ioError('write', this.abs(name), e);
        }
        await this.commitRename(name);
      },
      abort: async () => {
        if (settled) return;
        settled = true;
        stream.destroy();
        await closed.catch(() => {});
        await fs.unlink(partial).catch(() => {});
      },
    };
  }

  async ensureDir(name: string): Promise<void> {
    checkName(name);
    await this.ensureParents(`${name}/x`);
  }
}

async function writeAll(fh: fs.FileHandle, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, off, bytes.length - off, null);
    off += bytesWritten;
  }
}

/** RunDirReader on a local run directory. */
export class LocalRunDirReader implements RunDirReader {
  readonly location: string;
  readonly runDir: string;

  constructor(runDir: string) {
    this.runDir = runDir;
    this.location = `local_dir:${runDir}`;
  }

  async size(name: string): Promise<number | null> {
    checkName(name);
    const p = `${this.runDir}/${name}`;
    let st;
    try {
      st = await fs.lstat(p);
    } catch (e) {
      if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') return null;
      throw ioError('stat', p, e);
    }
    if (st.isSymbolicLink()) throw new BastionError('target_is_symlink', `local_dir: ${p} is a symbolic link`, { details: { path: p, reason: 'symlink_in_run_dir' } });
    return st.isFile() ? st.size : null;
  }

  async open(name: string, range?: { start: number; end?: number }): Promise<Readable> {
    checkName(name);
    const p = `${this.runDir}/${name}`;
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(p, C.O_RDONLY | C.O_NOFOLLOW);
    } catch (e) {
      if (errno(e) === 'ENOENT') throw new BastionError('artifact_missing', `local_dir: ${p} does not exist`, { details: { path: p, name } });
      if (errno(e) === 'ELOOP') throw new BastionError('target_is_symlink', `local_dir: ${p} is a symbolic link`, { details: { path: p, reason: 'symlink_in_run_dir' } });
      throw ioError('open', p, e);
    }
    const start = range?.start ?? 0;
    const opts: { start: number; end?: number; highWaterMark: number } = { start, highWaterMark: READ_CHUNK };
    if (range?.end !== undefined) {
      if (range.end <= start) {
        await fh.close();
        return Readable.from([]);
      }
      opts.end = range.end - 1; // createReadStream's end is inclusive
    }
    return fh.createReadStream(opts);
  }

  async list(): Promise<StoredFile[]> {
    const out: StoredFile[] = [];
    const walk = async (rel: string): Promise<void> => {
      const dir = rel === '' ? this.runDir : `${this.runDir}/${rel}`;
      const ents = await fs.readdir(dir, { withFileTypes: true }).catch((e) => {
        throw ioError('list', dir, e);
      });
      ents.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
      for (const ent of ents) {
        const name = rel === '' ? ent.name : `${rel}/${ent.name}`;
        if (ent.isDirectory()) await walk(name);
        else if (ent.isFile()) {
          const st = await fs.lstat(`${this.runDir}/${name}`).catch((e) => {
            throw ioError('stat', name, e);
          });
          out.push({ name, size: st.size });
        }
      }
    };
    await walk('');
    return out;
  }
}
