/**
 * The RunDirWriter / RunDirReader contract (engine/targets/target.ts) as one
 * reusable suite, so every target (webdav, local_dir, …) is held to the same
 * behaviour the format code relies on:
 *
 *   runDirConformance(t, (t, ids) => makeWriter(ids), (t, ids) => makeReader(ids));
 *
 * Each subtest gets fresh job and run UUIDs; `makeWriter` and `makeReader`
 * must open the same run directory for the same ids (a reader made after a
 * writer sees what it wrote; a second writer sees what the first stored, which
 * is how resume works). Close whatever they open with `t.teardown`.
 */
import type tap from 'tap';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { RunDirReader, RunDirWriter } from '../engine/targets/target.ts';

/** A tap test, as handed to `t.test` callbacks. */
export type TapTest = Parameters<Parameters<(typeof tap)['test']>[0]>[0];

/** The run a writer and a reader are opened on. */
export interface RunDirIds {
  jobId: string;
  runId: string;
}

/** Opens a writer on the run `ids` (creating nothing yet); register its cleanup on `t`. */
export type MakeWriter = (t: TapTest, ids: RunDirIds) => Promise<RunDirWriter>;
/** Opens a reader on the same run directory a {@link MakeWriter} with the same ids writes. */
export type MakeReader = (t: TapTest, ids: RunDirIds) => Promise<RunDirReader>;

/** Knobs for targets with known limits. */
export interface RunDirConformanceOptions {
  /** Strings that must never appear in `location` or in error messages (passwords, tokens). */
  secrets?: string[];
  /**
   * Whether names with control characters (a newline) must round-trip. Default
   * true. rclone 1.60 stores them but cannot serve them back (it lists
   * `line\nbreak` as `line␊break`), so its run passes false, and the gap is
   * reported rather than hidden.
   */
  controlCharacterNames?: boolean;
}

async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks);
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Register the conformance subtests on `t`. */
export async function runDirConformance(t: TapTest, makeWriter: MakeWriter, makeReader: MakeReader, opts: RunDirConformanceOptions = {}): Promise<void> {
  const scratch = async (t: TapTest): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), 'bastion-conformance-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    return dir;
  };
  const fresh = async (t: TapTest) => {
    const ids = { jobId: randomUUID(), runId: randomUUID() };
    return { ids, w: await makeWriter(t, ids), r: async () => makeReader(t, ids) };
  };

  await t.test('absent files have no size', async (t) => {
    const { w, r } = await fresh(t);
    t.equal(await w.storedSize('manifest.json'), null);
    t.equal(await (await r()).size('payload.part000001'), null);
    t.same(await (await r()).list(), [], 'an untouched run lists nothing');
    t.type(w.location, 'string');
    t.ok(w.location.length > 0, 'location is set');
  });

  await t.test('putBytes stores exact bytes; size and open agree', async (t) => {
    const { w, r } = await fresh(t);
    const bytes = Buffer.from('{"format_version":1,"note":"ünïcödé"}\n');
    await w.putBytes('manifest.json', bytes);
    t.equal(await w.storedSize('manifest.json'), bytes.length);
    const reader = await r();
    t.equal(await reader.size('manifest.json'), bytes.length);
    t.same(await readAll(await reader.open('manifest.json')), bytes);
  });

  await t.test('putFile streams a local file of a few MiB', async (t) => {
    const { w, r } = await fresh(t);
    const dir = await scratch(t);
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    const path = join(dir, 'part');
    await writeFile(path, bytes);
    await w.putFile('payload.part000001', path, bytes.length);
    t.equal(await w.storedSize('payload.part000001'), bytes.length);
    t.equal(sha(await readAll(await (await r()).open('payload.part000001'))), sha(bytes));
  });

  await t.test('zero-byte files', async (t) => {
    const { w, r } = await fresh(t);
    const dir = await scratch(t);
    await writeFile(join(dir, 'empty'), '');
    await w.putFile('data/empty-file', join(dir, 'empty'), 0);
    await w.putBytes('complete.json', new Uint8Array(0));
    const reader = await r();
    t.equal(await reader.size('data/empty-file'), 0);
    t.equal(await reader.size('complete.json'), 0);
    t.equal((await readAll(await reader.open('data/empty-file'))).length, 0);
  });

  await t.test('a second put replaces content and size', async (t) => {
    const { w, r } = await fresh(t);
    const dir = await scratch(t);
    await w.putBytes('manifest.json', Buffer.from('a much longer first version'));
    await w.putBytes('manifest.json', Buffer.from('short'));
    t.equal(await w.storedSize('manifest.json'), 5);
    await writeFile(join(dir, 'm'), 'third');
    await w.putFile('manifest.json', join(dir, 'm'), 5);
    t.equal((await readAll(await (await r()).open('manifest.json'))).toString(), 'third');
  });

  await t.test('names that real file systems produce round-trip', async (t) => {
    const { w, r } = await fresh(t);
    const names = [
      'data/with space/file name.txt',
      'data/ünïcödé/文件/😀.bin',
      'data/#hash/?question/100%/a+b&c=d;e\'f(g)[h]{i}~!@$,.txt',
      'data/%20literal-percent-20',
      'data/.hidden/..dots../.x',
      'data/' + 'long-'.repeat(40) + 'name',
    ];
    if (opts.controlCharacterNames !== false) names.push('data/line\nbreak\tand tab');
    for (const [i, name] of names.entries()) await w.putBytes(name, Buffer.from(`content ${i}`));
    const reader = await r();
    for (const [i, name] of names.entries()) {
      t.equal(await reader.size(name), Buffer.byteLength(`content ${i}`), JSON.stringify(name));
      t.equal((await readAll(await reader.open(name))).toString(), `content ${i}`);
    }
    t.same((await reader.list()).map((f) => f.name), [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), 'list returns exactly these names');
  });

  await t.test('byte ranges are [start, end)', async (t) => {
    const { w, r } = await fresh(t);
    const bytes = randomBytes(100_000);
    await w.putBytes('payload.part000001', bytes);
    const reader = await r();
    const cases: Array<[number, number | undefined]> = [
      [0, 1],
      [0, 100_000],
      [1, 99_999],
      [65_536, 65_537],
      [99_999, undefined],
      [0, undefined],
      [50_000, 50_000],
    ];
    for (const [start, end] of cases) {
      const got = await readAll(await reader.open('payload.part000001', end === undefined ? { start } : { start, end }));
      t.equal(sha(got), sha(bytes.subarray(start, end)), `[${start}, ${end ?? 'EOF'})`);
    }
    t.equal((await readAll(await reader.open('payload.part000001', { start: 100_000 }))).length, 0, 'a range at EOF is empty');
  });

  await t.test('list is recursive, relative, files only, with sizes', async (t) => {
    const { w, r } = await fresh(t);
    await w.putBytes('manifest.json', Buffer.from('12345'));
    await w.putBytes('data/a/b/c.txt', Buffer.from('1'));
    await w.putBytes('data/a/d.txt', Buffer.from('12'));
    await w.ensureDir('data/empty');
    await w.ensureDir('data/empty');
    t.same(await (await r()).list(), [
      { name: 'data/a/b/c.txt', size: 1 },
      { name: 'data/a/d.txt', size: 2 },
      { name: 'manifest.json', size: 5 },
    ]);
  });

  await t.test('concurrent puts into the same new directories', async (t) => {
    const { w, r } = await fresh(t);
    await Promise.all(Array.from({ length: 24 }, (_, i) => w.putBytes(`data/x/y${i % 3}/z/f${i}`, Buffer.from(String(i)))));
    const listed = await (await r()).list();
    t.equal(listed.length, 24);
  });

  await t.test('a new writer on the same run sees what was stored (resume)', async (t) => {
    const { ids, w } = await fresh(t);
    await w.putBytes('payload.part000001', randomBytes(1234));
    const again = await makeWriter(t, ids);
    t.equal(await again.storedSize('payload.part000001'), 1234);
    t.equal(await again.storedSize('payload.part000002'), null);
  });

  await t.test('names that escape or are malformed are refused', async (t) => {
    const { w, r } = await fresh(t);
    for (const name of ['../escape', '../../etc/passwd', '/absolute', 'a//b', 'a/./b', 'a/../b', '', '.', 'x\0y']) {
      await t.rejects(w.putBytes(name, Buffer.from('x')), `putBytes ${JSON.stringify(name)}`);
      await t.rejects(Promise.resolve().then(() => w.storedSize(name)), `storedSize ${JSON.stringify(name)}`);
    }
    t.same(await (await r()).list(), [], 'nothing was written');
  });

  await t.test('putFile refuses a local file of another size and leaves nothing visible', async (t) => {
    const { w } = await fresh(t);
    const dir = await scratch(t);
    await writeFile(join(dir, 'p'), 'abc');
    await t.rejects(w.putFile('payload.part000001', join(dir, 'p'), 10));
    await t.rejects(w.putFile('payload.part000002', join(dir, 'missing'), 3));
    t.equal(await w.storedSize('payload.part000001'), null);
    t.equal(await w.storedSize('payload.part000002'), null);
  });

  await t.test('opening a missing file fails', async (t) => {
    const { r } = await fresh(t);
    const reader = await r();
    await t.rejects(Promise.resolve().then(async () => readAll(await reader.open('nope'))));
  });

  await t.test('openStream: null, or a stream that becomes visible only on commit', async (t) => {
    const { w } = await fresh(t);
    const s = await w.openStream('payload.part000001');
    if (s === null) {
      t.pass('this target needs staged files (putFile)');
      return;
    }
    await new Promise<void>((res, rej) => s.stream.write(Buffer.from('abc'), (e) => (e ? rej(e) : res())));
    t.equal(await w.storedSize('payload.part000001'), null, 'not visible before commit');
    await s.commit();
    t.equal(await w.storedSize('payload.part000001'), 3);
    const aborted = await w.openStream('payload.part000002');
    if (aborted === null) throw new Error('openStream changed its mind');
    aborted.stream.write(Buffer.from('x'));
    await aborted.abort();
    t.equal(await w.storedSize('payload.part000002'), null, 'abort leaves nothing');
  });

  if (opts.secrets !== undefined && opts.secrets.length > 0) {
    const secrets = opts.secrets;
    await t.test('secrets never appear in location or errors', async (t) => {
      const { w, r } = await fresh(t);
      for (const s of secrets) t.notOk(w.location.includes(s), 'location');
      const reader = await r();
      const errs: string[] = [];
      await reader.open('missing').then(readAll).catch((e: unknown) => errs.push(String((e as Error).message)));
      await w.putBytes('../x', Buffer.from('x')).catch((e: unknown) => errs.push(String((e as Error).message)));
      t.equal(errs.length, 2);
      for (const m of errs) for (const s of secrets) t.notOk(m.includes(s), 'error message');
    });
  }
}
