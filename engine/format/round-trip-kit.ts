/**
 * Round-trip helpers shared by the format tests of every target (local_dir
 * here, WebDAV elsewhere): build a hostile-but-realistic source tree, describe
 * a tree on disk, describe what a run directory holds (read back through the
 * RunReader, content hashed from the bytes actually read), and compare.
 *
 * Test support only; production code does not import it.
 */
import fs from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import type { RunDirReader } from '../targets/target.ts';
import { createHasher } from './hashing.ts';
import { RunReader, type OpenRunOptions } from './run-reader.ts';

/** One entry as both sides describe it. */
export interface TreeEntry {
  kind: 'file' | 'dir' | 'symlink';
  /** Permission bits (mode & 0o7777). */
  perm: number;
  uid: number;
  gid: number;
  /** Seconds. */
  mtime: number;
  size: number;
  /** BLAKE3 of the content (files). */
  hash: string | null;
  target: string | null;
  /** xattrs as name → base64 (only when both sides record them). */
  xattrs?: Record<string, string>;
}

/** Path (relative to the tree root, `/`-separated) → entry. */
export type TreeDescription = Map<string, TreeEntry>;

/** What {@link makeSourceTree} built. */
export interface SourceTreeInfo {
  /** Relative paths of the two hard-linked names. */
  hardlinks: [string, string];
  /** Whether user xattrs could be set (filesystem and setfattr permitting). */
  xattrs: boolean;
  /** Relative path of the largest file. */
  bigFile: string;
}

const MTIME = 1_700_000_000;

/**
 * Build the standard test tree under `root` (which must exist): nested
 * directories, an empty directory, empty files, unicode, newline, space,
 * backslash and very long names, relative/absolute/dangling symlinks, a hard
 * link, assorted modes, fixed mtimes, and a `bigBytes` random file (so several
 * parts are produced with a small part size).
 */
export async function makeSourceTree(root: string, opts: { bigBytes?: number } = {}): Promise<SourceTreeInfo> {
  const w = async (rel: string, data: string | Buffer, mode = 0o644) => {
    await fs.mkdir(`${root}/${rel}`.replace(/\/[^/]*$/, ''), { recursive: true });
    await fs.writeFile(`${root}/${rel}`, data, { mode });
    await fs.chmod(`${root}/${rel}`, mode);
  };
  await w('a/b/c/deep.txt', 'deep\n');
  await w('a/empty-file', '');
  await w('a/b/empty', '');
  await w('unicode/Ünïcødé-名前-😀.txt', 'unicode content ✓\n');
  await w('weird/line\nbreak', 'newline in the name\n');
  await w('weird/with space & $ymbols!', 'spaces\n');
  await w('weird/back\\slash', 'backslash\n');
  await w(`long/${'d'.repeat(120)}/${'f'.repeat(200)}.txt`, 'long path\n');
  await w('modes/private', 'secret\n', 0o600);
  await w('modes/script.sh', '#!/bin/sh\necho hi\n', 0o755);
  await w('modes/setuid', 'x', 0o4755);
  await w('text/lorem.txt', 'lorem ipsum dolor sit amet '.repeat(20_000));
  const bigBytes = opts.bigBytes ?? 3 * 1024 * 1024 + 12_345;
  await w('big/random.bin', crypto.randomBytes(bigBytes));
  await fs.mkdir(`${root}/empty-dir`, { recursive: true });
  await fs.symlink('../a/b/c/deep.txt', `${root}/weird/rel-link`);
  await fs.symlink('/etc/hostname-that-does-not-exist', `${root}/weird/abs-dangling`);
  await fs.symlink('b', `${root}/a/link-to-dir`);
  await fs.link(`${root}/a/b/c/deep.txt`, `${root}/a/hardlink-to-deep`);

  let xattrs = false;
  const set = spawnSync('setfattr', ['-n', 'user.bastion', '-v', '0sAAEC/w==', `${root}/text/lorem.txt`]);
  if (set.status === 0) {
    spawnSync('setfattr', ['-n', 'user.dir', '-v', 'on-a-dir', `${root}/a`]);
    xattrs = true;
  }
  // Fixed mtimes, children first so directory mtimes stick.
  const all = await listRecursive(root);
  for (const rel of all.sort((x, y) => y.length - x.length)) {
    const p = `${root}/${rel}`;
    const st = await fs.lstat(p);
    if (st.isSymbolicLink()) await fs.lutimes(p, MTIME, MTIME);
    else await fs.utimes(p, MTIME + rel.length, MTIME + rel.length);
  }
  await fs.utimes(root, MTIME, MTIME);
  return { hardlinks: ['a/b/c/deep.txt', 'a/hardlink-to-deep'], xattrs, bigFile: 'big/random.bin' };
}

async function listRecursive(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const ent of await fs.readdir(rel ? `${root}/${rel}` : root, { withFileTypes: true })) {
    const r = rel ? `${rel}/${ent.name}` : ent.name;
    out.push(r);
    if (ent.isDirectory()) out.push(...(await listRecursive(root, r)));
  }
  return out;
}

/** Describe a tree on disk (not following symlinks); xattrs read with getfattr when `withXattrs`. */
export async function describeTree(root: string, opts: { withXattrs?: boolean } = {}): Promise<TreeDescription> {
  const out: TreeDescription = new Map();
  const h = await createHasher('blake3');
  for (const rel of (await listRecursive(root)).sort()) {
    const p = `${root}/${rel}`;
    const st = await fs.lstat(p);
    const e: TreeEntry = {
      kind: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file',
      perm: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      mtime: Math.floor(st.mtimeMs / 1000),
      size: st.isFile() ? st.size : 0,
      hash: null,
      target: st.isSymbolicLink() ? await fs.readlink(p) : null,
    };
    if (st.isFile()) {
      h.update(await fs.readFile(p));
      e.hash = h.digestHex();
    }
    if (opts.withXattrs && !st.isSymbolicLink()) {
      const r = spawnSync('getfattr', ['-d', '-m', '-', '-e', 'base64', '--absolute-names', p], { encoding: 'utf8' });
      const x: Record<string, string> = {};
      for (const line of (r.stdout ?? '').split('\n')) {
        const m = /^([^#=][^=]*)=0s(.*)$/.exec(line);
        if (m) x[m[1]!] = m[2]!;
      }
      if (Object.keys(x).length) e.xattrs = x;
    }
    out.set(rel, e);
  }
  return out;
}

/**
 * Describe what a run holds under `prefix` (the source path without its
 * leading `/`), reading every byte back: archive_v1 from the tar stream
 * (hard links resolved to their target's content), raw_tree_v1 from the
 * entries index and `data/` files. Also returns the entry records' paths in
 * order and the RunReader.
 */
export async function describeRun(reader: RunDirReader, prefix: string, opts: OpenRunOptions = {}): Promise<{ tree: TreeDescription; run: RunReader; hardlinkGroups: Map<string, string> }> {
  const run = await RunReader.open(reader, opts);
  const tree: TreeDescription = new Map();
  const hardlinkGroups = new Map<string, string>();
  const h = await createHasher('blake3');
  const rel = (p: string) => (p === prefix ? '' : p.startsWith(prefix + '/') ? p.slice(prefix.length + 1) : null);
  if (run.manifest.pipeline.format === 'archive_v1') {
    const contents = new Map<string, { size: number; hash: string }>();
    for await (const te of run.tarEntries()) {
      const r = rel(te.path);
      let size = 0;
      let hash: string | null = null;
      if (te.type === 'file') {
        for await (const c of te.body()) {
          size += c.length;
          h.update(c);
        }
        hash = h.digestHex();
        contents.set(te.path, { size, hash });
      } else if (te.type === 'hardlink') {
        const c = contents.get(te.linkname)!;
        size = c.size;
        hash = c.hash;
        hardlinkGroups.set(te.path, te.linkname);
      }
      if (r === null || r === '') continue;
      const x: Record<string, string> = {};
      for (const [k, v] of Object.entries(te.xattrs)) x[k] = v.toString('base64');
      tree.set(r, {
        kind: te.type === 'dir' ? 'dir' : te.type === 'symlink' ? 'symlink' : 'file',
        perm: te.mode,
        uid: te.uid,
        gid: te.gid,
        mtime: te.mtime,
        size,
        hash,
        target: te.type === 'symlink' ? te.linkname : null,
        ...(Object.keys(x).length ? { xattrs: x } : {}),
      });
    }
  } else {
    for await (const e of run.entries()) {
      const r = rel(e.path);
      if (r === null || r === '') continue;
      let size = 0;
      let hash: string | null = null;
      if (e.kind === 'file') {
        for await (const c of run.readFile(e.path)) {
          size += c.length;
          h.update(c);
        }
        hash = h.digestHex();
        if (e.hardlink_group) hardlinkGroups.set(e.path, e.hardlink_group);
      }
      tree.set(r, {
        kind: e.kind,
        perm: (e.mode ?? 0) & 0o7777,
        uid: e.uid ?? -1,
        gid: e.gid ?? -1,
        mtime: e.mtime ?? -1,
        size,
        hash,
        target: e.symlink_target ?? null,
        ...(e.xattrs ? { xattrs: e.xattrs } : {}),
      });
    }
  }
  return { tree, run, hardlinkGroups };
}

/** Differences between two descriptions, as readable lines (empty when equal). */
export function diffTrees(expected: TreeDescription, actual: TreeDescription, opts: { ignore?: Array<keyof TreeEntry> } = {}): string[] {
  const out: string[] = [];
  const ignore = new Set(opts.ignore ?? []);
  for (const [p, e] of expected) {
    const a = actual.get(p);
    if (!a) {
      out.push(`missing: ${JSON.stringify(p)}`);
      continue;
    }
    for (const k of Object.keys(e) as Array<keyof TreeEntry>) {
      if (ignore.has(k)) continue;
      const ev = JSON.stringify(e[k]);
      const av = JSON.stringify(a[k]);
      if (ev !== av) out.push(`${JSON.stringify(p)}: ${k} expected ${ev} got ${av}`);
    }
  }
  for (const p of actual.keys()) if (!expected.has(p)) out.push(`unexpected: ${JSON.stringify(p)}`);
  return out;
}

/**
 * Run `body` (TypeScript module code; `import` statements may name project
 * files relative to the repository root as `@/engine/...`) in a child Node
 * process as an unprivileged user, so permission tests mean something when
 * the suite runs as root (root reads and writes anything). Its stdout must be
 * one JSON value, which is returned. `dir` receives the script file and must
 * be readable by that user.
 */
export async function runUnprivileged(dir: string, body: string): Promise<unknown> {
  return runChild(dir, body, { unprivileged: true });
}

/** Like {@link runUnprivileged}, as the current user unless `unprivileged` (used to measure a child's own memory). */
export async function runChild(dir: string, body: string, opts: { unprivileged?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<unknown> {
  const { spawn } = await import('node:child_process');
  const { pathToFileURL, fileURLToPath } = await import('node:url');
  const repo = fileURLToPath(new URL('../../', import.meta.url));
  const script = `${dir}/probe-${process.pid}-${Date.now()}.mts`;
  await fs.writeFile(script, body.replaceAll('@/', pathToFileURL(repo).href), { mode: 0o644 });
  const asRoot = opts.unprivileged === true && process.getuid?.() === 0;
  const child = spawn(process.execPath, [script], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
    ...(opts.env ? { env: opts.env } : {}),
    cwd: '/',
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  await fs.rm(script, { force: true });
  if (code !== 0) throw new Error(`child failed (${code}): ${err}`);
  return JSON.parse(out);
}
