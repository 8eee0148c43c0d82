import t from 'tap';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import { spawnSync } from 'node:child_process';
import { BastionError } from '../../core/errors.ts';
import type { FilesystemSource } from '../../core/job-spec.ts';
import { runUnprivileged } from '../format/round-trip-kit.ts';
import { prepareSource, walkSource, type WalkEntry } from './walk.ts';
import { Warnings } from './warnings.ts';

type Src = Pick<FilesystemSource, 'paths' | 'include' | 'exclude' | 'symlinks'>;
const src = (paths: string[], over: Partial<Src> = {}): Src => ({ paths, include: [], exclude: [], symlinks: 'keep', ...over });

async function walk(s: Src, opts: { xattrs?: boolean } = {}): Promise<{ entries: WalkEntry[]; warnings: Warnings }> {
  const warnings = new Warnings();
  const entries: WalkEntry[] = [];
  for await (const e of walkSource(prepareSource(s), { warnings, xattrs: opts.xattrs ?? false })) entries.push(e);
  return { entries, warnings };
}

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
    return 'resolved';
  } catch (e) {
    return e instanceof BastionError ? e.code : `not a BastionError: ${String(e)}`;
  }
}

/** Archive paths relative to the root's own archive path. */
const rel = (root: string, entries: WalkEntry[]) => entries.map((e) => (e.path === root.slice(1) ? '.' : e.path.slice(root.length)));

t.test('depth first, names sorted by bytes, directory before its contents', async (t) => {
  const root = t.testdir({ b: '', 'a-c': '', a: { z: '', B: { x: '' } }, Z: '', 'é': '', 'a.txt': '' });
  const { entries } = await walk(src([root]));
  t.same(rel(root, entries), ['.', 'Z', 'a', 'a/B', 'a/B/x', 'a/z', 'a-c', 'a.txt', 'b', 'é']);
  t.equal(entries[0]!.kind, 'dir');
  t.equal(entries[0]!.path, root.slice(1), 'stored under the absolute path without its leading slash');
});

t.test('metadata: full mode, mtime seconds, sizes', async (t) => {
  const root = t.testdir({ f: 'hello' });
  await fs.chmod(`${root}/f`, 0o640);
  await fs.utimes(`${root}/f`, 1_600_000_000.7, 1_600_000_000.7);
  const { entries } = await walk(src([root]));
  const f = entries.find((e) => e.path.endsWith('/f'))!;
  t.equal(f.stat.mode, 0o100640);
  t.equal(f.stat.mtime, 1_600_000_000);
  t.equal(f.stat.size, 5);
  t.equal(entries[0]!.stat.size, 0, 'directories have size 0');
});

t.test('symlink policies', async (t) => {
  const root = t.testdir({ real: { inner: 'x' }, file: 'data' });
  await fs.symlink('real', `${root}/dirlink`);
  await fs.symlink('file', `${root}/filelink`);
  await fs.symlink('nowhere', `${root}/dangling`);
  await fs.symlink('..', `${root}/real/up`); // a loop under follow

  const keep = await walk(src([root], { symlinks: 'keep' }));
  const kinds = Object.fromEntries(keep.entries.map((e) => [e.path.slice(root.length), e.kind]));
  t.equal(kinds['dirlink'], 'symlink');
  t.equal(kinds['filelink'], 'symlink');
  t.equal(kinds['dangling'], 'symlink');
  t.equal((keep.entries.find((e) => e.path.endsWith('/dirlink')) as Extract<WalkEntry, { kind: 'symlink' }>).target, 'real');
  t.notOk(kinds['dirlink/inner'], 'links are not descended under keep');

  const skip = await walk(src([root], { symlinks: 'skip' }));
  t.notOk(skip.entries.some((e) => e.kind === 'symlink'));
  t.equal(skip.warnings.count('symlink_skipped'), 4);

  const follow = await walk(src([root], { symlinks: 'follow' }));
  const f = Object.fromEntries(follow.entries.map((e) => [e.path.slice(root.length), e]));
  t.equal(f['dirlink']!.kind, 'dir', 'a link to a directory is walked');
  t.equal(f['dirlink/inner']!.kind, 'file');
  t.equal(f['filelink']!.kind, 'file');
  t.equal(f['filelink']!.stat.size, 4);
  t.notOk((f['filelink'] as Extract<WalkEntry, { kind: 'file' }>).hardlinkGroup, 'a followed link is never a hard-link member');
  t.equal(f['dangling']!.kind, 'symlink', 'a dangling link is stored as a link');
  t.equal(follow.warnings.count('dangling_symlink'), 1);
  t.ok(follow.warnings.count('symlink_loop') >= 1, 'the loop is detected');
  t.ok(follow.entries.length < 50, 'and not followed');
});

t.test('a source path that is a symlink is followed', async (t) => {
  const root = t.testdir({ real: { inner: 'x' } });
  await fs.symlink(`${root}/real`, `${root}/alias`);
  const { entries } = await walk(src([`${root}/alias`]));
  t.same(rel(`${root}/alias`, entries), ['.', 'inner']);
  t.equal(entries[0]!.kind, 'dir');
});

t.test('exclude prunes, include selects files and keeps their directories', async (t) => {
  const root = t.testdir({
    keep: { 'a.txt': '', 'b.log': '', sub: { 'c.txt': '', 'd.bin': '' } },
    cache: { 'huge.txt': '' },
    other: { 'e.bin': '' },
    build: { 'x.txt': '' },
  });
  const ex = await walk(src([root], { exclude: ['cache', '*.log', 'build/'] }));
  const exPaths = rel(root, ex.entries);
  t.notOk(exPaths.some((p) => p.startsWith('cache')), 'excluded directory not descended');
  t.notOk(exPaths.includes('keep/b.log'));
  t.notOk(exPaths.some((p) => p.startsWith('build')), 'directory-only pattern');
  t.ok(exPaths.includes('keep/sub/d.bin'));

  const inc = await walk(src([root], { include: ['*.txt'], exclude: ['cache'] }));
  t.same(rel(root, inc.entries), ['.', 'build', 'build/x.txt', 'keep', 'keep/a.txt', 'keep/sub', 'keep/sub/c.txt']);

  const anchored = await walk(src([root], { exclude: [`${root}/keep/sub/**`] }));
  t.notOk(rel(root, anchored.entries).some((p) => p.startsWith('keep/sub')), 'absolute pattern');
});

t.test('hard links carry dev:ino groups', async (t) => {
  const root = t.testdir({ a: 'same', lone: 'x' });
  await fs.link(`${root}/a`, `${root}/b`);
  const { entries } = await walk(src([root]));
  const a = entries.find((e) => e.path.endsWith('/a')) as Extract<WalkEntry, { kind: 'file' }>;
  const b = entries.find((e) => e.path.endsWith('/b')) as Extract<WalkEntry, { kind: 'file' }>;
  const lone = entries.find((e) => e.path.endsWith('/lone')) as Extract<WalkEntry, { kind: 'file' }>;
  t.match(a.hardlinkGroup, /^\d+:\d+$/);
  t.equal(a.hardlinkGroup, b.hardlinkGroup);
  t.equal(lone.hardlinkGroup, undefined);
  // Source paths that are files themselves are grouped too.
  const roots = await walk(src([`${root}/b`, `${root}/a`]));
  t.equal(roots.entries.length, 2);
  t.equal((roots.entries[0] as Extract<WalkEntry, { kind: 'file' }>).hardlinkGroup, a.hardlinkGroup);
  t.equal((roots.entries[1] as Extract<WalkEntry, { kind: 'file' }>).hardlinkGroup, a.hardlinkGroup);
});

t.test('fifos, sockets and non-UTF-8 names are skipped with warnings', async (t) => {
  // A short directory: unix socket paths are limited to ~107 bytes.
  const root = await fs.mkdtemp(`${os.tmpdir()}/bw-`);
  t.teardown(() => fs.rm(root, { recursive: true, force: true }));
  await fs.writeFile(`${root}/ok`, '');
  t.equal(spawnSync('mkfifo', [`${root}/fifo`]).status, 0);
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(`${root}/sock`, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  await fs.writeFile(Buffer.concat([Buffer.from(`${root}/bad-`), Buffer.from([0xff, 0xfe])]), 'x');
  const { entries, warnings } = await walk(src([root]));
  t.same(rel(root, entries), ['.', 'ok']);
  t.equal(warnings.count('special_file_skipped'), 2);
  t.equal(warnings.count('non_utf8_name'), 1);
});

t.test('several source paths: sorted, de-duplicated, nested ones dropped', async (t) => {
  const root = t.testdir({ x: { sub: { f: '' } }, y: { g: '' }, file: 'z' });
  const { entries, warnings } = await walk(src([`${root}/y`, `${root}/x/sub`, `${root}/x`, `${root}/y/`, `${root}/file`]));
  const paths = entries.map((e) => e.path.slice(root.length));
  t.same(paths, ['file', 'x', 'x/sub', 'x/sub/f', 'y', 'y/g']);
  t.equal(warnings.count('overlapping_source_path'), 1);
});

t.test('bad source paths: clear codes naming the field', async (t) => {
  const root = t.testdir({});
  t.equal(await codeOf(walk(src([`${root}/missing`]))), 'source_not_found');
  try {
    await walk(src([root, `${root}/nope`]));
  } catch (e) {
    t.equal((e as BastionError).details?.field, 'source.paths[1]');
  }
  t.equal(await codeOf(() => prepareSource(src(['relative/path']))), 'invalid_path');
  t.equal(await codeOf(() => prepareSource(src(['/a/../etc']))), 'invalid_path');
  t.equal(await codeOf(() => prepareSource(src(['/a\0b']))), 'invalid_path');
  t.equal(await codeOf(() => prepareSource(src([]))), 'invalid_path');
  t.equal(await codeOf(() => prepareSource(src([root], { exclude: ['[unclosed'] }))), 'invalid_glob');
});

t.test('an unreadable directory is source_unreadable', async (t) => {
  const root = t.testdir({ open: { f: 'x' }, locked: { secret: 'x' } });
  await fs.chmod(`${root}/locked`, 0o000);
  const result = (await runUnprivileged(
    root,
    `import { prepareSource, walkSource } from '@/engine/source/walk.ts';
     import { Warnings } from '@/engine/source/warnings.ts';
     try {
       for await (const e of walkSource(prepareSource({ paths: [${JSON.stringify(root)}], include: [], exclude: [], symlinks: 'keep' }), { warnings: new Warnings() }));
       console.log(JSON.stringify({ ok: true }));
     } catch (e) { console.log(JSON.stringify({ code: e.code, path: e.details?.path })); }`,
  )) as { code?: string; path?: string };
  await fs.chmod(`${root}/locked`, 0o755); // so the fixture can be removed by a non-root runner
  t.equal(result.code, 'source_unreadable');
  t.equal(result.path, `${root}/locked`);
});

t.test('xattrs come from one getfattr run', { skip: spawnSync('setfattr', ['--version']).status !== 0 && 'attr tools not installed' }, async (t) => {
  const root = t.testdir({ f: 'x', 'line\nname': 'y', d: {} });
  const set = (p: string, n: string, v: string) => spawnSync('setfattr', ['-n', n, '-v', v, p]).status === 0;
  if (!set(`${root}/f`, 'user.a', '0x00ff')) {
    t.pass('filesystem does not support user xattrs: nothing to check');
    return;
  }
  set(`${root}/line\nname`, 'user.b', 'text');
  set(`${root}/d`, 'user.c', 'dir');
  const { entries } = await walk(src([root]), { xattrs: true });
  const x = Object.fromEntries(entries.map((e) => [e.path.slice(root.length), e.xattrs]));
  t.same(x['f'], { 'user.a': Buffer.from([0, 255]).toString('base64') });
  t.same(x['line\nname'], { 'user.b': Buffer.from('text').toString('base64') });
  t.same(x['d'], { 'user.c': Buffer.from('dir').toString('base64') });
});
