import t from 'tap';
import fs from 'node:fs/promises';
import crypto from 'node:crypto';
import { BastionError } from '../../core/errors.ts';
import { hashBytes } from '../format/hashing.ts';
import { runUnprivileged } from '../format/round-trip-kit.ts';
import { checkBaseDir, openLocalRunDirReader, openLocalRunDirWriter } from './local-dir.ts';

const JOB = '11111111-2222-4333-8444-555555555555';
const RUN = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return e instanceof BastionError ? e.code : `not a BastionError: ${String(e)}`;
  }
}

async function readAll(s: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

t.test('base_dir must be an absolute, existing, real, writable directory', async (t) => {
  const dir = t.testdir({ base: {}, file: 'x', real: { inner: {} } });
  await fs.symlink(`${dir}/base`, `${dir}/link`);
  await fs.symlink(`${dir}/real`, `${dir}/parentlink`);
  t.equal(await checkBaseDir(`${dir}/base/`, { writable: true }), `${dir}/base`, 'trailing slash normalised');
  t.equal(await codeOf(checkBaseDir('relative/dir', { writable: true })), 'invalid_path');
  t.equal(await codeOf(checkBaseDir(`${dir}/base/../file`, { writable: true })), 'invalid_path');
  t.equal(await codeOf(checkBaseDir(`${dir}/missing`, { writable: true })), 'target_not_found');
  t.equal(await codeOf(checkBaseDir(`${dir}/file`, { writable: true })), 'target_not_directory');
  t.equal(await codeOf(checkBaseDir(`${dir}/link`, { writable: true })), 'target_is_symlink', 'base_dir is a symlink');
  t.equal(await codeOf(checkBaseDir(`${dir}/parentlink/inner`, { writable: true })), 'target_is_symlink', 'a parent is a symlink');
  try {
    await checkBaseDir(`${dir}/link`, { writable: true });
  } catch (e) {
    t.equal((e as BastionError).details?.field, 'target.base_dir');
  }
});

t.test('base_dir not writable by the backup user is target_not_writable', async (t) => {
  const dir = t.testdir({ base: {} });
  await fs.chmod(`${dir}/base`, 0o555);
  const r = (await runUnprivileged(
    dir,
    `import { openLocalRunDirWriter } from '@/engine/targets/local-dir.ts';
     try { await openLocalRunDirWriter({ baseDir: ${JSON.stringify(`${dir}/base`)}, jobId: '${JOB}', runId: '${RUN}' }); console.log(JSON.stringify({ ok: true })); }
     catch (e) { console.log(JSON.stringify({ code: e.code, field: e.details?.field })); }`,
  )) as { code?: string; field?: string };
  await fs.chmod(`${dir}/base`, 0o755);
  t.same(r, { code: 'target_not_writable', field: 'target.base_dir' });
});

t.test('ids must be UUIDs; job and run directories must not be symlinks', async (t) => {
  const dir = t.testdir({ base: {}, elsewhere: {} });
  const base = `${dir}/base`;
  t.equal(await codeOf(openLocalRunDirWriter({ baseDir: base, jobId: '../x', runId: RUN })), 'invalid_path');
  t.equal(await codeOf(openLocalRunDirWriter({ baseDir: base, jobId: JOB, runId: RUN.toUpperCase() })), 'invalid_path');
  await fs.symlink(`${dir}/elsewhere`, `${base}/${JOB}`);
  t.equal(await codeOf(openLocalRunDirWriter({ baseDir: base, jobId: JOB, runId: RUN })), 'target_is_symlink');
  t.same(await fs.readdir(`${dir}/elsewhere`), [], 'nothing written through the link');
  await fs.rm(`${base}/${JOB}`);
  await fs.mkdir(`${base}/${JOB}`);
  await fs.symlink(`${dir}/elsewhere`, `${base}/${JOB}/${RUN}`);
  t.equal(await codeOf(openLocalRunDirWriter({ baseDir: base, jobId: JOB, runId: RUN })), 'target_is_symlink');
  t.equal(await codeOf(openLocalRunDirReader({ baseDir: base, jobId: JOB, runId: RUN })), 'target_is_symlink');
});

t.test('writes: atomic, 0600, no partials left, hostile names refused', async (t) => {
  const dir = t.testdir({ base: {}, outside: {} });
  const w = await openLocalRunDirWriter({ baseDir: `${dir}/base`, jobId: JOB, runId: RUN });
  const runDir = `${dir}/base/${JOB}/${RUN}`;
  await w.putBytes('manifest.json', Buffer.from('{"a":1}'));
  t.equal(await fs.readFile(`${runDir}/manifest.json`, 'utf8'), '{"a":1}');
  t.equal((await fs.stat(`${runDir}/manifest.json`)).mode & 0o777, 0o600);
  t.equal((await fs.stat(runDir)).mode & 0o777, 0o700);

  await fs.writeFile(`${dir}/local.bin`, crypto.randomBytes(3_000_000));
  await w.putFile('data/x/y/file.bin', `${dir}/local.bin`, 3_000_000);
  t.same(await fs.readFile(`${runDir}/data/x/y/file.bin`), await fs.readFile(`${dir}/local.bin`));
  t.equal(await codeOf(w.putFile('data/wrong-size', `${dir}/local.bin`, 5)), 'target_io_error');
  t.equal(await w.storedSize('data/wrong-size'), null, 'a failed put leaves nothing');

  const s = await w.openStream('payload.part000001');
  s.stream.write(Buffer.from('abc'));
  t.equal(await w.storedSize('payload.part000001'), null, 'invisible until committed');
  await s.commit();
  t.equal(await w.storedSize('payload.part000001'), 3);
  t.equal(await w.storedHash!('payload.part000001'), await hashBytes(Buffer.from('abc')));
  t.equal(await w.storedHash!('nothing-here'), null);

  const aborted = await w.openStream('payload.part000002');
  aborted.stream.write(Buffer.from('zzz'));
  await aborted.abort();
  await w.ensureDir('data/empty/dir');
  t.ok((await fs.stat(`${runDir}/data/empty/dir`)).isDirectory());
  const names = await fs.readdir(runDir, { recursive: true });
  t.notOk(names.some((n) => String(n).endsWith('.partial')), 'no .partial files remain');

  for (const bad of ['../escape', '/abs', 'a//b', 'a/./b', 'a\0b', '', 'data/..']) {
    t.equal(await codeOf(w.putBytes(bad, Buffer.from('x'))), 'invalid_path', JSON.stringify(bad));
  }

  // A symlink planted where a partial or a directory will be is never followed.
  await fs.symlink(`${dir}/outside/victim`, `${runDir}/complete.json.partial`);
  t.equal(await codeOf(w.putBytes('complete.json', Buffer.from('{}'))), 'target_is_symlink');
  await fs.symlink(`${dir}/outside`, `${runDir}/data/planted`);
  t.equal(await codeOf(w.putBytes('data/planted/f', Buffer.from('x'))), 'target_is_symlink');
  t.same(await fs.readdir(`${dir}/outside`), [], 'nothing written outside the run directory');
});

t.test('reader: sizes, ranges, listing, missing files and runs', async (t) => {
  const dir = t.testdir({ base: {} });
  const w = await openLocalRunDirWriter({ baseDir: `${dir}/base`, jobId: JOB, runId: RUN });
  await w.putBytes('a.bin', Buffer.from('0123456789'));
  await w.putBytes('data/sub/b', Buffer.from('b'));
  const r = await openLocalRunDirReader({ baseDir: `${dir}/base`, jobId: JOB, runId: RUN });
  t.equal(await r.size('a.bin'), 10);
  t.equal(await r.size('nope'), null);
  t.equal((await readAll(await r.open('a.bin'))).toString(), '0123456789');
  t.equal((await readAll(await r.open('a.bin', { start: 2, end: 5 }))).toString(), '234');
  t.equal((await readAll(await r.open('a.bin', { start: 7 }))).toString(), '789');
  t.equal((await readAll(await r.open('a.bin', { start: 5, end: 5 }))).toString(), '');
  t.same(await r.list(), [
    { name: 'a.bin', size: 10 },
    { name: 'data/sub/b', size: 1 },
  ]);
  t.equal(await codeOf(r.open('missing')), 'artifact_missing');
  t.equal(await codeOf(r.open('../../etc/passwd')), 'invalid_path');
  t.equal(await codeOf(openLocalRunDirReader({ baseDir: `${dir}/base`, jobId: JOB, runId: '99999999-2222-4333-8444-555555555555' })), 'artifact_missing');
  t.match(r.location, /^local_dir:\//);
});
