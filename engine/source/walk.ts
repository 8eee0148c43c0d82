/**
 * The filesystem walk of a backup source: which entries a run stores, in which
 * order, with which metadata.
 *
 * - Source paths must be absolute. Each is stored under its path without the
 *   leading `/` (`/srv/app` → `srv/app/...`, as the reference does), so several
 *   source paths never collide. Paths are sorted by bytes and de-duplicated; a
 *   path inside an earlier directory path is dropped with a warning.
 * - Order is deterministic: depth first, the entries of a directory sorted by
 *   the bytes of their names, a directory before its contents. The same tree
 *   gives the same entries in the same order, so archives are reproducible
 *   (resume relies on it).
 * - A source path that is itself a symlink is followed (the operator named it).
 *   Links found inside follow the policy: `keep` stores the link, `skip` leaves
 *   it out (warning), `follow` stores what it points to and walks linked
 *   directories; a link to a directory that is already on the current path
 *   (a loop) is skipped with a warning, a dangling link is stored as a link.
 * - Hard links: a regular file (not reached through a symlink) with more than
 *   one link carries `hardlinkGroup = "dev:ino"`.
 * - Fifos, sockets and devices are skipped with a warning; so are names that
 *   are not valid UTF-8 (entry paths are JSON strings).
 * - An entry that disappears between listing and stat is skipped with a
 *   warning (live systems); anything unreadable fails the run with
 *   `source_unreadable`, a missing source path with `source_not_found`.
 *
 * Memory is bounded by the directory depth times the largest directory
 * listing, not by the tree size.
 */
import fs from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { BastionError } from '../../core/errors.ts';
import { absolutePathSchema } from '../../core/target-snapshot.ts';
import type { FilesystemSource } from '../../core/job-spec.ts';
import { GlobSet } from './glob.ts';
import type { Warnings } from './warnings.ts';
import { scanXattrs, type XattrMap } from './xattrs.ts';

/** Metadata of one entry, from lstat (or stat for followed links). */
export interface SourceStat {
  /** Full st_mode, file type bits included. */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes (0 for directories and links). */
  size: number;
  /** Modification time in whole seconds since the epoch (floor). */
  mtime: number;
  dev: bigint;
  ino: bigint;
  nlink: number;
}

interface EntryBase {
  /** Path inside the archive: relative, `/`-separated, no trailing slash. */
  path: string;
  /** Absolute path on this machine (through the link for followed links). */
  absPath: string;
  stat: SourceStat;
  /** Extended attributes, when they were read and the entry has some. */
  xattrs?: XattrMap;
}

/** One entry to store. */
export type WalkEntry =
  | (EntryBase & { kind: 'dir' })
  | (EntryBase & { kind: 'file'; hardlinkGroup?: string })
  | (EntryBase & { kind: 'symlink'; target: string });

/** A validated source: sorted roots and compiled patterns. */
export interface PreparedSource {
  /** Sorted by bytes, without duplicates; `field` names the spec entry for errors. */
  roots: Array<{ path: string; field: string }>;
  include: GlobSet;
  exclude: GlobSet;
  symlinks: FilesystemSource['symlinks'];
}

/** Options of a walk. */
export interface WalkOptions {
  warnings: Warnings;
  signal?: AbortSignal | undefined;
  /** Read extended attributes with getfattr (one process per source path). */
  xattrs?: boolean;
  /** Called once per root when xattrs were requested: whether getfattr was available. */
  onXattrs?: (available: boolean) => void;
}

const STAT_BATCH = 64;

/**
 * Validate and normalise a source: absolute paths (`invalid_path`), patterns
 * (`invalid_glob`), sorted, duplicates and paths nested in an earlier
 * directory path removed (the nesting check needs stat, so it happens in
 * {@link walkSource}).
 */
export function prepareSource(source: Pick<FilesystemSource, 'paths' | 'include' | 'exclude' | 'symlinks'>): PreparedSource {
  if (!Array.isArray(source.paths) || source.paths.length === 0) {
    throw new BastionError('invalid_path', 'source.paths: at least one absolute path is required', { details: { field: 'source.paths', reason: 'empty' } });
  }
  const seen = new Set<string>();
  const roots: PreparedSource['roots'] = [];
  source.paths.forEach((p, i) => {
    const field = `source.paths[${i}]`;
    const parsed = absolutePathSchema.safeParse(p);
    if (!parsed.success) {
      const reason = parsed.error.issues[0]?.message ?? 'invalid';
      throw new BastionError('invalid_path', `${field}: ${reason}`, { details: { field, reason } });
    }
    const path = p === '/' ? '/' : p.replace(/\/{2,}/g, '/').replace(/\/+$/, '') || '/';
    if (!seen.has(path)) {
      seen.add(path);
      roots.push({ path, field });
    }
  });
  roots.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  return {
    roots,
    include: new GlobSet(source.include ?? [], 'source.include'),
    exclude: new GlobSet(source.exclude ?? [], 'source.exclude'),
    symlinks: source.symlinks ?? 'keep',
  };
}

/** Walk every root of a prepared source, yielding entries in archive order. */
export async function* walkSource(src: PreparedSource, opts: WalkOptions): AsyncGenerator<WalkEntry> {
  const dirRoots: string[] = [];
  for (const { path: root, field } of src.roots) {
    const covering = dirRoots.find((d) => d === '/' || root.startsWith(d + '/'));
    if (covering !== undefined) {
      opts.warnings.add('overlapping_source_path', `${root} is inside ${covering}, which is backed up already`);
      continue;
    }
    const st = await statRoot(root, field);
    if (st.isDirectory()) dirRoots.push(root);
    let xattrs: Map<string, XattrMap> | undefined;
    if (opts.xattrs) {
      const scan = await scanXattrs(root, src.symlinks === 'follow', opts.signal);
      opts.onXattrs?.(scan.available);
      if (scan.available) xattrs = scan.byPath;
      for (const p of scan.problems) opts.warnings.add('xattrs_unreadable', p);
    }
    yield* walkRoot(src, root, st, xattrs, opts);
  }
}

async function statRoot(root: string, field: string): Promise<BigIntStats> {
  try {
    return await fs.stat(root, { bigint: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new BastionError('source_not_found', `${field}: ${root} does not exist`, { details: { field, path: root }, cause: e });
    }
    throw unreadable(root, e);
  }
}

/** `source_unreadable` for `path`, naming the errno code (never the raw message: it may repeat the path oddly). */
export function unreadable(path: string, e: unknown): BastionError {
  const code = (e as NodeJS.ErrnoException)?.code ?? 'EIO';
  return new BastionError('source_unreadable', `cannot read ${path}: ${code}`, { details: { path, reason: code }, cause: e });
}

function toStat(st: BigIntStats): SourceStat {
  const ns = st.mtimeNs;
  let sec = ns / 1_000_000_000n;
  if (ns < 0n && sec * 1_000_000_000n !== ns) sec -= 1n; // floor, not truncation
  return {
    mode: Number(st.mode),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: st.isFile() ? Number(st.size) : 0,
    mtime: Number(sec),
    dev: st.dev,
    ino: st.ino,
    nlink: Number(st.nlink),
  };
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new BastionError('backup_aborted', undefined, { cause: signal.reason });
}

interface Frame {
  abs: string;
  rel: string;
  archive: string;
  names: Buffer[];
  next: number;
  stats: Array<Promise<BigIntStats | NodeJS.ErrnoException>>;
  entry: WalkEntry | null;
  emitted: boolean;
  key: string;
}

async function* walkRoot(src: PreparedSource, root: string, st: BigIntStats, xattrs: Map<string, XattrMap> | undefined, opts: WalkOptions): AsyncGenerator<WalkEntry> {
  const prefix = root === '/' ? '' : root.slice(1);
  const withX = <E extends WalkEntry>(e: E): E => {
    const x = xattrs?.get(e.absPath);
    if (x) e.xattrs = x;
    return e;
  };
  const isDir = st.isDirectory();
  if (src.exclude.matches({ absolute: root, relative: '', isDir })) return;
  if (!isDir) {
    if (!st.isFile()) {
      opts.warnings.add('special_file_skipped', `${root} is not a regular file, directory or symlink`);
      return;
    }
    if (!src.include.isEmpty && !src.include.matches({ absolute: root, relative: '', isDir: false })) return;
    const stat = toStat(st);
    const entry: WalkEntry = { kind: 'file', path: prefix, absPath: root, stat };
    const viaLink = (await fs.lstat(root)).isSymbolicLink();
    if (!viaLink && stat.nlink > 1) entry.hardlinkGroup = `${stat.dev}:${stat.ino}`;
    yield withX(entry);
    return;
  }

  const rootEntry: WalkEntry | null = prefix === '' ? null : withX({ kind: 'dir', path: prefix, absPath: root, stat: toStat(st) });
  if (rootEntry) yield rootEntry;
  const frames: Frame[] = [await openFrame(root, '', prefix, rootEntry, true, `${st.dev}:${st.ino}`)];
  const onPath = new Set<string>([frames[0]!.key]);

  while (frames.length > 0) {
    checkAbort(opts.signal);
    const f = frames[frames.length - 1]!;
    if (f.next >= f.names.length) {
      frames.pop();
      onPath.delete(f.key);
      continue;
    }
    const i = f.next++;
    const nameBuf = f.names[i]!;
    if (i % STAT_BATCH === 0) prefetchStats(f, i);
    const statResult = await f.stats[i]!;
    f.stats[i] = undefined as never; // release
    if (!isUtf8(nameBuf)) {
      opts.warnings.add('non_utf8_name', `${f.abs}: a name that is not valid UTF-8 was skipped (${nameBuf.toString('hex')})`);
      continue;
    }
    const name = nameBuf.toString('utf8');
    const abs = f.abs === '/' ? `/${name}` : `${f.abs}/${name}`;
    const rel = f.rel === '' ? name : `${f.rel}/${name}`;
    const archive = f.archive === '' ? name : `${f.archive}/${name}`;
    if (statResult instanceof Error) {
      if (statResult.code === 'ENOENT') {
        opts.warnings.add('vanished', `${abs} disappeared during the backup`);
        continue;
      }
      throw unreadable(abs, statResult);
    }
    let lst = statResult;
    let viaLink = false;
    let linkTarget: string | null = null;

    if (lst.isSymbolicLink()) {
      if (src.symlinks === 'skip') {
        opts.warnings.add('symlink_skipped', `${abs} is a symbolic link (policy: skip)`);
        continue;
      }
      const target = await readLink(abs);
      if (target === null) {
        opts.warnings.add('vanished', `${abs} disappeared during the backup`);
        continue;
      }
      if (target === NON_UTF8) {
        opts.warnings.add('non_utf8_name', `${abs}: a symbolic link whose target is not valid UTF-8 was skipped`);
        continue;
      }
      linkTarget = target;
      if (src.symlinks === 'follow') {
        try {
          lst = await fs.stat(abs, { bigint: true });
          viaLink = true;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code !== 'ENOENT' && code !== 'ELOOP' && code !== 'ENOTDIR') throw unreadable(abs, e);
          opts.warnings.add('dangling_symlink', `${abs} points to ${linkTarget}, which does not exist; stored as a link`);
        }
      }
    }

    const isDirEntry = lst.isDirectory();
    if (src.exclude.matches({ absolute: abs, relative: rel, isDir: isDirEntry })) continue;

    if (lst.isSymbolicLink()) {
      if (!src.include.isEmpty && !src.include.matches({ absolute: abs, relative: rel, isDir: false })) continue;
      yield* emitPending(frames);
      yield withX({ kind: 'symlink', path: archive, absPath: abs, stat: toStat(lst), target: linkTarget! });
      continue;
    }
    if (isDirEntry) {
      const key = `${lst.dev}:${lst.ino}`;
      if (viaLink && onPath.has(key)) {
        opts.warnings.add('symlink_loop', `${abs} points to ${linkTarget}, a directory that contains it; not followed`);
        continue;
      }
      const entry = withX<WalkEntry>({ kind: 'dir', path: archive, absPath: abs, stat: toStat(lst) });
      const selected = src.include.isEmpty || src.include.matches({ absolute: abs, relative: rel, isDir: true });
      if (selected) {
        yield* emitPending(frames);
        yield entry;
      }
      let frame: Frame;
      try {
        frame = await openFrame(abs, rel, archive, entry, selected, key);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
          opts.warnings.add('vanished', `${abs} disappeared during the backup`);
          continue;
        }
        throw unreadable(abs, e);
      }
      frames.push(frame);
      onPath.add(key);
      continue;
    }
    if (lst.isFile()) {
      if (!src.include.isEmpty && !src.include.matches({ absolute: abs, relative: rel, isDir: false })) continue;
      yield* emitPending(frames);
      const stat = toStat(lst);
      const entry: WalkEntry = { kind: 'file', path: archive, absPath: abs, stat };
      if (!viaLink && stat.nlink > 1) entry.hardlinkGroup = `${stat.dev}:${stat.ino}`;
      yield withX(entry);
      continue;
    }
    opts.warnings.add('special_file_skipped', `${abs} is a fifo, socket or device; skipped`);
  }
}

/** With include patterns, directories are stored lazily: when something inside them is. */
function* emitPending(frames: Frame[]): Generator<WalkEntry> {
  for (const f of frames) {
    if (!f.emitted) {
      f.emitted = true;
      if (f.entry) yield f.entry;
    }
  }
}

async function openFrame(abs: string, rel: string, archive: string, entry: WalkEntry | null, emitted: boolean, key: string): Promise<Frame> {
  let names: Buffer[];
  try {
    names = await fs.readdir(abs, { encoding: 'buffer' });
  } catch (e) {
    if (rel === '') throw unreadable(abs, e);
    throw e;
  }
  names.sort(Buffer.compare);
  return { abs, rel, archive, names, next: 0, stats: new Array(names.length), entry, emitted, key };
}

/** Start lstat of the next batch of names at once: the thread pool then works on them in parallel. */
function prefetchStats(f: Frame, from: number): void {
  const end = Math.min(from + STAT_BATCH, f.names.length);
  for (let j = from; j < end; j++) {
    const nameBuf = f.names[j]!;
    const p = Buffer.concat([Buffer.from(f.abs === '/' ? '/' : `${f.abs}/`), nameBuf]);
    f.stats[j] = fs.lstat(p, { bigint: true }).catch((e: NodeJS.ErrnoException) => e);
  }
}

const NON_UTF8 = Symbol('non-utf8');

async function readLink(abs: string): Promise<string | null | typeof NON_UTF8> {
  try {
    const buf = await fs.readlink(abs, { encoding: 'buffer' });
    // A target that is not UTF-8 cannot be stored faithfully (entry records are JSON strings).
    return isUtf8(buf) ? buf.toString('utf8') : NON_UTF8;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw unreadable(abs, e);
  }
}
