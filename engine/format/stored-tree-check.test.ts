/**
 * raw_tree_v1 read back before complete.json: the comparison itself (table
 * of listings), then whole backups into real WebDAV server processes — a
 * normal tree passes on both servers, rclone's renamed newline file fails the
 * run, and a server that loses or truncates a file behind a 201 (a writer
 * wrapped around the real one, changing the served directory after the PUT)
 * fails it too. No complete.json is written for a failed run.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import t from 'tap';
import { BastionError } from '../../core/errors.ts';
import { sanitizeErrorText } from '../../core/redact.ts';
import type { RunDirWriter, StoredFile } from '../targets/target.ts';
import { WebdavRunDir } from '../targets/webdav-target.ts';
import { rcloneAvailable, startWebdavServer, type WebdavServerKind, type WebdavTestServer } from '../../test/webdav-server.ts';
import { describeRun, describeTree, diffTrees } from './round-trip-kit.ts';
import { runBackup } from './run-backup.ts';
import { findStoredMismatch, listingWriter, storedMismatchError, type ExpectedFile } from './stored-tree-check.ts';

const JOB = crypto.randomUUID();

t.test('findStoredMismatch: the first file that cannot be read back, and why', async (t) => {
  const cases: Array<{
    name: string;
    listed: Array<[string, number]>;
    expected: ExpectedFile[];
    heads?: Record<string, number>;
    want: null | { name: string; code: string; found: number | null; storedAs?: string; alsoMissing: number };
    probed?: string[];
  }> = [
    { name: 'all there', listed: [['data/a', 1], ['data/d/b', 2], ['entries.jsonl.zst', 9]], expected: [{ name: 'data/a', size: 1 }, { name: 'data/d/b', size: 2 }], want: null, probed: [] },
    { name: 'extra stale files are fine', listed: [['data/a', 1], ['data/old', 5], ['complete.json', 3]], expected: [{ name: 'data/a', size: 1 }], want: null },
    {
      name: 'rclone: newline name listed with U+240A, 404 on HEAD',
      listed: [['data/w/line␊break', 4], ['data/w/x', 1]],
      expected: [{ name: 'data/w/x', size: 1 }, { name: 'data/w/line\nbreak', size: 4 }],
      want: { name: 'data/w/line\nbreak', code: 'target_name_unsupported', found: null, storedAs: 'data/w/line␊break', alsoMissing: 0 },
      probed: ['data/w/line\nbreak'],
    },
    {
      name: 'missing, nothing similar in its directory: lost',
      listed: [['data/w/x', 1], ['data/other/y', 4]],
      expected: [{ name: 'data/w/x', size: 1 }, { name: 'data/w/gone', size: 4 }],
      want: { name: 'data/w/gone', code: 'target_lost_file', found: null, alsoMissing: 0 },
    },
    {
      name: 'an expected file of the same size in the directory does not count as "stored under another name"',
      listed: [['data/w/a', 4]],
      expected: [{ name: 'data/w/gone', size: 4 }, { name: 'data/w/a', size: 4 }],
      want: { name: 'data/w/gone', code: 'target_lost_file', found: null, alsoMissing: 0 },
    },
    {
      name: 'listed with another size and HEAD agrees: truncated',
      listed: [['data/a', 3]],
      expected: [{ name: 'data/a', size: 10 }],
      heads: { 'data/a': 3 },
      want: { name: 'data/a', code: 'target_lost_file', found: 3, alsoMissing: 0 },
    },
    {
      name: 'listed under another Unicode form but served under the written name: fine',
      listed: [['data/u\u0308ber', 7]],
      expected: [{ name: 'data/\u00fcber', size: 7 }],
      heads: { 'data/\u00fcber': 7 },
      want: null,
    },
    {
      name: 'after the first confirmed failure no more HEADs; the rest are counted',
      listed: [],
      expected: [{ name: 'data/a', size: 1 }, { name: 'data/b', size: 1 }, { name: 'data/c', size: 1 }],
      want: { name: 'data/a', code: 'target_lost_file', found: null, alsoMissing: 2 },
      probed: ['data/a'],
    },
  ];
  for (const c of cases) {
    const probed: string[] = [];
    const m = await findStoredMismatch(new Map(c.listed), c.expected, async (name) => {
      probed.push(name);
      return c.heads?.[name] ?? null;
    });
    if (c.want === null) t.equal(m, null, c.name);
    else t.match(m, c.want, c.name);
    if (c.probed) t.same(probed, c.probed, `${c.name}: HEADs`);
  }
});

t.test('the error names the path visibly (JSON-quoted), survives sanitising, and carries a stable code', async (t) => {
  const e = storedMismatchError({ name: 'data/w/line\nbreak', size: 4, found: null, code: 'target_name_unsupported', storedAs: 'data/w/line␊break', alsoMissing: 0 }, 'http://127.0.0.1:1/b/j/r/');
  t.ok(e instanceof BastionError);
  t.equal(e.code, 'target_name_unsupported');
  t.same(e.details, { path: '"data/w/line\\nbreak"', reason: 'name_changed_by_target' });
  t.match(sanitizeErrorText(e.message), /"data\/w\/line\\nbreak" was accepted by the target but is listed as "data\/w\/line␊break"/);
  const lost = storedMismatchError({ name: 'data/a', size: 10, found: 3, code: 'target_lost_file', alsoMissing: 2 }, 'x');
  t.equal(lost.code, 'target_lost_file');
  t.same(lost.details, { path: '"data/a"', reason: 'size_mismatch' });
  t.match(lost.message, /has 3 bytes instead of the 10 written .* \(and 2 more files not checked further\)/);
});

t.test('only writers that can list are read back', async (t) => {
  const plain = { location: 'x' } as unknown as RunDirWriter;
  t.equal(listingWriter(plain), null);
  const dav = new WebdavRunDir({ baseUrl: 'http://127.0.0.1:1/', credentials: { username: 'u', password: 'p' }, jobId: JOB, runId: crypto.randomUUID() });
  t.teardown(() => dav.close());
  t.equal(listingWriter(dav), dav);
});

/** A source tree: plain files in nested directories, an empty directory, and optionally a name with a newline. */
async function tree(dir: string, newline: boolean): Promise<string> {
  const src = `${dir}/src`;
  await fs.mkdir(`${src}/sub/deeper`, { recursive: true });
  await fs.mkdir(`${src}/empty`);
  await fs.mkdir(`${src}/weird`);
  await fs.writeFile(`${src}/a.txt`, 'alpha\n');
  await fs.writeFile(`${src}/sub/b.bin`, crypto.randomBytes(70_000));
  await fs.writeFile(`${src}/sub/deeper/c`, '');
  await fs.writeFile(`${src}/weird/space name ü.txt`, 'unicode\n');
  if (newline) await fs.writeFile(`${src}/weird/line\nbreak`, 'nl!\n');
  return src;
}

function backupInto(writer: RunDirWriter, src: string, dir: string, runId: string) {
  return runBackup({
    jobId: JOB,
    runId,
    startedAt: new Date(),
    source: { paths: [src], include: [], exclude: [], symlinks: 'keep' },
    format: 'raw_tree_v1',
    encryption: { type: 'none' },
    partSizeBytes: 0,
    writer,
    stagingDir: `${dir}/staging/${runId}`,
    xattrs: false,
  });
}

/** The run directory as the server stores it on disk. */
const onDisk = (dav: WebdavTestServer, runId: string) => `${dav.dir}/backups/${JOB}/${runId}`;

async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

const kinds: WebdavServerKind[] = ['webdav-server', 'rclone'];
for (const kind of kinds) {
  // rclone comes from Debian (test/install-system-tools.sh); without it only webdav-server runs.
  t.test(`raw_tree_v1 into ${kind}`, { skip: kind === 'rclone' && !rcloneAvailable() ? 'rclone not on PATH' : false }, async (t) => {
    const dav = await startWebdavServer(t, { kind });
    const baseUrl = `${dav.url}backups/`;
    const open = (runId: string) => {
      const rd = new WebdavRunDir({ baseUrl, credentials: dav, jobId: JOB, runId });
      t.teardown(() => rd.close());
      return rd;
    };

    t.test('a normal tree is read back and completes', async (t) => {
      const dir = t.testdir();
      const src = await tree(dir, false);
      const runId = crypto.randomUUID();
      const rd = open(runId);
      const summary = await backupInto(rd, src, dir, runId);
      t.ok(await exists(`${onDisk(dav, runId)}/complete.json`));
      const { tree: stored } = await describeRun(rd, src.slice(1));
      t.same(diffTrees(await describeTree(src, { withXattrs: false }), stored), [], 'every entry back');
      t.equal(summary.transfer_total_bytes, (await rd.list()).reduce((n, f) => n + f.size, 0));
    });

    t.test('a newline in a file name', async (t) => {
      const dir = t.testdir();
      const src = await tree(dir, true);
      const runId = crypto.randomUUID();
      const rd = open(runId);
      if (kind === 'rclone') {
        // rclone 1.60 answers 201 to the PUT, lists the file as `line␊break` and 404 to HEAD/GET of `line\nbreak`.
        // Entry paths are the source's absolute paths without the leading slash.
        await t.rejects(backupInto(rd, src, dir, runId), { code: 'target_name_unsupported', details: { path: JSON.stringify(`data${src}/weird/line\nbreak`), reason: 'name_changed_by_target' } });
        t.notOk(await exists(`${onDisk(dav, runId)}/complete.json`), 'no complete.json: not a snapshot');
        t.notOk(await exists(`${onDisk(dav, runId)}/manifest.json`), 'no manifest either');
      } else {
        // webdav-server keeps the name as written: the run completes and reads back.
        await backupInto(rd, src, dir, runId);
        const { tree: stored } = await describeRun(rd, src.slice(1));
        t.same(diffTrees(await describeTree(src, { withXattrs: false }), stored), [], 'the newline name reads back');
      }
    });

    t.test('a file the server loses or truncates after answering the PUT fails the run', async (t) => {
      for (const fault of ['lose', 'truncate'] as const) {
        const dir = t.testdir();
        const src = await tree(dir, false);
        const runId = crypto.randomUUID();
        const rd = open(runId);
        // The real writer, plus a fault after one PUT: the served file is changed on disk.
        const faulty: RunDirWriter & { list(): Promise<StoredFile[]> } = {
          location: rd.location,
          storedSize: (name) => rd.storedSize(name),
          async putFile(name, localPath, size) {
            await rd.putFile(name, localPath, size);
            if (name === `data${src}/sub/b.bin`) {
              const p = `${onDisk(dav, runId)}/${name}`;
              if (fault === 'lose') await fs.rm(p);
              else await fs.truncate(p, 1000);
            }
          },
          putBytes: (name, bytes) => rd.putBytes(name, bytes),
          openStream: () => rd.openStream(),
          ensureDir: (name) => rd.ensureDir(name),
          list: () => rd.list(),
        };
        await t.rejects(backupInto(faulty, src, dir, runId), {
          code: 'target_lost_file',
          details: { path: JSON.stringify(`data${src}/sub/b.bin`), reason: fault === 'lose' ? 'missing' : 'size_mismatch' },
        }, fault);
        t.notOk(await exists(`${onDisk(dav, runId)}/complete.json`), `${fault}: no complete.json`);
      }
    });
  });
}
