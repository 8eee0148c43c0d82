import t from 'tap';
import fs from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { BastionError } from '../../core/errors.ts';
import { decodeHeader, decodePaxRecords, encodeHeader, encodePaxRecords, END_OF_ARCHIVE, paddingFor, readNumber, type TarHeaderInput } from './tar-header.ts';
import { readTar, type TarEntry } from './tar-reader.ts';

const hasTar = spawnSync('tar', ['--version']).status === 0;

/** Build an archive from inputs and contents with our encoder. */
function build(entries: Array<TarHeaderInput & { content?: Buffer }>): Buffer {
  const out: Buffer[] = [];
  for (const e of entries) {
    out.push(encodeHeader(e));
    if (e.content) out.push(e.content, Buffer.alloc(paddingFor(e.content.length)));
  }
  out.push(END_OF_ARCHIVE);
  return Buffer.concat(out);
}

async function* chunked(b: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

async function readAll(b: Buffer, chunk = 333): Promise<Array<TarEntry & { content: Buffer }>> {
  const out: Array<TarEntry & { content: Buffer }> = [];
  for await (const e of readTar(chunked(b, chunk))) {
    const parts: Buffer[] = [];
    for await (const c of e.body()) parts.push(c);
    const { body: _body, ...rest } = e;
    out.push({ ...rest, content: Buffer.concat(parts) });
  }
  return out;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return e instanceof BastionError ? e.code : `not a BastionError: ${String(e)}`;
  }
}

const base = { mode: 0o644, uid: 1000, gid: 1000, mtime: 1_700_000_000 };

t.test('pax records: lengths count themselves, binary values survive', async (t) => {
  for (const v of ['x', 'y'.repeat(90), 'z'.repeat(995), 'é'.repeat(3000)]) {
    const rec = encodePaxRecords([['path', v]]);
    const len = Number(rec.toString('latin1').split(' ')[0]);
    t.equal(len, rec.length, `record of ${v.length} chars`);
    t.equal(decodePaxRecords(rec).get('path')!.toString('utf8'), v);
  }
  const bin = Buffer.from([0, 10, 255, 61, 32]);
  t.same(decodePaxRecords(encodePaxRecords([['SCHILY.xattr.user.b', bin]])).get('SCHILY.xattr.user.b'), bin);
});

t.test('numbers: octal when they fit, base-256 beyond, both readable', async (t) => {
  const big = { ...base, path: 'big', type: 'file' as const, size: 20 * 1024 ** 3, uid: 3_000_000, gid: 70_000, mtime: -1 };
  const hdr = encodeHeader(big);
  const main = hdr.subarray(hdr.length - 512);
  t.equal(readNumber(main, 124, 12), 20 * 1024 ** 3, 'size base-256');
  t.equal(readNumber(main, 108, 8), 3_000_000, 'uid base-256');
  t.equal(readNumber(main, 136, 12), -1, 'negative mtime base-256');
  t.equal(decodeHeader(main).gid, 70_000);
  const pax = decodePaxRecords(hdr.subarray(512, 512 + decodeHeader(hdr.subarray(0, 512)).size));
  t.equal(pax.get('size')!.toString(), String(20 * 1024 ** 3), 'and a pax size record');
});

t.test('our headers read back: long, unicode, newline names, links, xattrs, dirs', async (t) => {
  const long = `${'d'.repeat(150)}/${'f'.repeat(150)}`;
  const entries: Array<TarHeaderInput & { content?: Buffer }> = [
    { ...base, path: 'dir', type: 'dir', size: 0 },
    { ...base, path: 'dir/a.txt', type: 'file', size: 5, content: Buffer.from('hello'), xattrs: { 'user.k': Buffer.from([0, 1, 2]) } },
    { ...base, path: `${'p'.repeat(140)}/short`, type: 'file', size: 0, content: Buffer.alloc(0) },
    { ...base, path: long, type: 'file', size: 1, content: Buffer.from('x') },
    { ...base, path: 'ünï/名前 😀', type: 'file', size: 3, content: Buffer.from('abc') },
    { ...base, path: 'line\nbreak', type: 'file', size: 512, content: Buffer.alloc(512, 7) },
    { ...base, path: 'lnk', type: 'symlink', size: 0, linkname: '../' + 'x'.repeat(200) },
    { ...base, path: 'hard', type: 'hardlink', size: 0, linkname: 'dir/a.txt' },
    { ...base, mode: 0o4755, path: 'suid', type: 'file', size: 0, content: Buffer.alloc(0) },
  ];
  const got = await readAll(build(entries));
  t.equal(got.length, entries.length);
  entries.forEach((e, i) => {
    const g = got[i]!;
    t.equal(g.path, e.path);
    t.equal(g.type, e.type);
    t.equal(g.mode, e.mode);
    t.equal(g.mtime, e.mtime);
    t.equal(g.uid, e.uid);
    if (e.linkname) t.equal(g.linkname, e.linkname);
    if (e.content) t.same(g.content, e.content);
  });
  t.same(got[1]!.xattrs['user.k'], Buffer.from([0, 1, 2]));
});

t.test('GNU tar extracts what we write', { skip: !hasTar && 'tar not installed' }, async (t) => {
  const dir = t.testdir({});
  const archive = build([
    { ...base, path: 'x', type: 'dir', size: 0 },
    { ...base, path: `x/${'n'.repeat(180)}`, type: 'file', size: 4, content: Buffer.from('long') },
    { ...base, path: 'x/ünï', type: 'file', size: 2, content: Buffer.from('ok') },
    { ...base, path: 'x/link', type: 'symlink', size: 0, linkname: 'ünï' },
    { ...base, path: 'x/hard', type: 'hardlink', size: 0, linkname: 'x/ünï' },
  ]);
  const r = spawnSync('tar', ['-xf', '-', '-C', dir], { input: archive });
  t.equal(r.status, 0, r.stderr.toString());
  t.equal(await fs.readFile(`${dir}/x/${'n'.repeat(180)}`, 'utf8'), 'long');
  t.equal(await fs.readlink(`${dir}/x/link`), 'ünï');
  const [a, b] = await Promise.all([fs.stat(`${dir}/x/ünï`), fs.stat(`${dir}/x/hard`)]);
  t.equal(a.ino, b.ino, 'hard link restored as a link');
  t.equal(Math.floor(a.mtimeMs / 1000), base.mtime);
});

t.test('we read what GNU tar writes in pax and gnu formats', { skip: !hasTar && 'tar not installed' }, async (t) => {
  const dir = t.testdir({ src: {} });
  const src = `${dir}/src`;
  await fs.mkdir(`${src}/${'d'.repeat(120)}`, { recursive: true });
  await fs.writeFile(`${src}/${'d'.repeat(120)}/${'f'.repeat(130)}`, 'deep');
  await fs.writeFile(`${src}/ünï`, 'u');
  await fs.writeFile(`${src}/big`, Buffer.alloc(100_000, 1));
  await fs.symlink('x'.repeat(150), `${src}/longlink`);
  await fs.link(`${src}/big`, `${src}/big-hard`);
  // gnu = what the reference's Rust tar crate writes (GNU headers, ././@LongLink names).
  for (const format of ['pax', 'gnu']) {
    const r = spawnSync('tar', ['--format', format, '-cf', '-', '-C', dir, 'src'], { maxBuffer: 64 * 1024 * 1024 });
    t.equal(r.status, 0, `${format}: ${r.stderr}`);
    const got = await readAll(r.stdout, 4096);
    const byPath = new Map(got.map((e) => [e.path, e]));
    t.equal(byPath.get(`src/${'d'.repeat(120)}/${'f'.repeat(130)}`)?.content.toString(), 'deep', `${format}: long name`);
    t.equal(byPath.get('src/ünï')?.content.toString(), 'u', `${format}: unicode name`);
    t.equal(byPath.get('src/longlink')?.linkname, 'x'.repeat(150), `${format}: long link target`);
    t.equal(byPath.get('src/big')?.content.length, 100_000);
    const hard = byPath.get('src/big-hard') ?? byPath.get('src/big');
    t.ok(hard, `${format}: hard link member present`);
  }
});

t.test('hostile archives are artifact_corrupt', async (t) => {
  const good = build([{ ...base, path: 'a', type: 'file', size: 3, content: Buffer.from('abc') }]);
  const badSum = Buffer.from(good);
  badSum[10]! ^= 1;
  t.equal(await codeOf(readAll(badSum)), 'artifact_corrupt', 'checksum');
  t.equal(await codeOf(readAll(good.subarray(0, 512 + 2))), 'artifact_corrupt', 'truncated content');
  t.equal(await codeOf(readAll(good.subarray(0, 1024))), 'artifact_corrupt', 'no end marker');
  for (const path of ['/etc/passwd', '../escape', 'a/../../b', 'a/./b']) {
    const evil = build([{ ...base, path, type: 'file', size: 0, content: Buffer.alloc(0) }]);
    t.equal(await codeOf(readAll(evil)), 'artifact_corrupt', `path ${path}`);
  }
  const evilLink = build([{ ...base, path: 'h', type: 'hardlink', size: 0, linkname: '../../etc/shadow' }]);
  t.equal(await codeOf(readAll(evilLink)), 'artifact_corrupt', 'hard link out of the tree');
  // A pax header claiming 1 GiB of records is refused before being read.
  const hdr = Buffer.from(encodeHeader({ ...base, path: 'p'.repeat(300), type: 'file', size: 0 }));
  hdr.write((2 ** 30).toString(8).padStart(11, '0') + '\0', 124, 12, 'latin1');
  hdr.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += hdr[i]!;
  hdr.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  t.equal(await codeOf(readAll(Buffer.concat([hdr, END_OF_ARCHIVE]))), 'artifact_corrupt', 'oversized pax header');
});

t.test('an unread body is skipped, reading a body twice is refused', async (t) => {
  const archive = build([
    { ...base, path: 'a', type: 'file', size: 2000, content: Buffer.alloc(2000, 1) },
    { ...base, path: 'b', type: 'file', size: 1, content: Buffer.from('z') },
  ]);
  const paths: string[] = [];
  for await (const e of readTar(chunked(archive, 100))) {
    paths.push(e.path);
    if (e.path === 'b') {
      const parts: Buffer[] = [];
      for await (const c of e.body()) parts.push(c);
      t.equal(Buffer.concat(parts).toString(), 'z');
      await t.rejects(async () => {
        for await (const _ of e.body());
      });
    }
  }
  t.same(paths, ['a', 'b']);
});
