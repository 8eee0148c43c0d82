/**
 * Round trips through the local_dir target: back up a generated tree, read it
 * back byte for byte with its metadata, with and without encryption, and
 * resume interrupted runs. The WebDAV suite reuses round-trip-kit.ts.
 */
import t from 'tap';
import fs from 'node:fs/promises';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { Decrypter } from 'age-encryption';
import { BastionError } from '../../core/errors.ts';
import type { Encryption } from '../../core/job-spec.ts';
import type { RunDirWriter } from '../targets/target.ts';
import { openLocalRunDirReader, openLocalRunDirWriter } from '../targets/local-dir.ts';
import { generateAgeIdentity } from './age-keys.ts';
import { describeRun, describeTree, diffTrees, makeSourceTree, runChild, runUnprivileged, type SourceTreeInfo } from './round-trip-kit.ts';
import { runBackup, type BackupSummary } from './run-backup.ts';
import { RunReader } from './run-reader.ts';
import { verifyRun } from './verify.ts';

const MiB = 1024 * 1024;
const JOB = '0b4f6a52-7d1e-4c55-9a3e-2f1d6c8b9e01';
const hasGetfattr = spawnSync('getfattr', ['--version']).status === 0;
const hasZstdCli = spawnSync('zstd', ['--version']).status === 0;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return e instanceof BastionError ? e.code : `not a BastionError: ${String(e)}`;
  }
}

interface Setup {
  dir: string;
  src: string;
  base: string;
  info: SourceTreeInfo;
}

/** Build the source tree in a fresh test directory (from `t.testdir(FIXTURE)`). */
async function setup(dir: string, opts: { bigBytes?: number } = {}): Promise<Setup> {
  const info = await makeSourceTree(`${dir}/src`, opts);
  return { dir, src: `${dir}/src`, base: `${dir}/base`, info };
}
const FIXTURE = { src: {}, base: {}, staging: {} };

interface BackupOpts {
  runId?: string;
  format?: 'archive_v1' | 'raw_tree_v1';
  encryption?: Encryption;
  partSize?: number;
  writer?: RunDirWriter;
  stagingDir?: string;
  abortAfterStored?: number;
  paths?: string[];
}

async function backup(s: Setup, o: BackupOpts = {}): Promise<{ summary: BackupSummary; runId: string }> {
  const runId = o.runId ?? crypto.randomUUID();
  const writer = o.writer ?? (await openLocalRunDirWriter({ baseDir: s.base, jobId: JOB, runId }));
  const ac = new AbortController();
  const summary = await runBackup({
    jobId: JOB,
    runId,
    startedAt: new Date('2026-01-02T03:04:05Z'),
    source: { paths: o.paths ?? [s.src], include: [], exclude: [], symlinks: 'keep' },
    format: o.format ?? 'archive_v1',
    encryption: o.encryption ?? { type: 'none' },
    partSizeBytes: o.partSize ?? MiB,
    writer,
    stagingDir: o.stagingDir ?? `${s.dir}/staging/${runId}`,
    signal: ac.signal,
    onProgress: (p) => {
      if (o.abortAfterStored !== undefined && p.stored_files >= o.abortAfterStored) ac.abort(new Error('test interrupt'));
    },
  });
  return { summary, runId };
}

const reader = (s: Setup, runId: string) => openLocalRunDirReader({ baseDir: s.base, jobId: JOB, runId });
const prefix = (s: Setup) => s.src.slice(1);

/** A writer like WebDAV's: no direct streams, no stored hashes; everything staged and put. */
function stagedOnly(inner: RunDirWriter, log: string[] = []): RunDirWriter {
  return {
    location: inner.location,
    storedSize: (n) => inner.storedSize(n),
    putFile: (n, p, size) => {
      log.push(n);
      return inner.putFile(n, p, size);
    },
    putBytes: (n, b) => {
      log.push(n);
      return inner.putBytes(n, b);
    },
    openStream: async () => null,
    ensureDir: (n) => inner.ensureDir(n),
  };
}

async function inodes(dir: string): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for (const n of await fs.readdir(dir)) m.set(n, (await fs.stat(`${dir}/${n}`)).ino);
  return m;
}

for (const format of ['archive_v1', 'raw_tree_v1'] as const) {
  t.test(`${format}: round trip of the generated tree, byte for byte with metadata`, async (t) => {
    const s = await setup(t.testdir(FIXTURE));
    const { summary, runId } = await backup(s, { format });
    const expected = await describeTree(s.src, { withXattrs: hasGetfattr });
    const { tree, run, hardlinkGroups } = await describeRun(await reader(s, runId), prefix(s));
    t.same(diffTrees(expected, tree), [], 'every entry, content and metadata');
    const [first, second] = s.info.hardlinks.map((p) => `${prefix(s)}/${p}`);
    if (format === 'archive_v1') t.equal(hardlinkGroups.get(second!), first, 'stored as a tar hard link to the first path');
    else t.equal(hardlinkGroups.get(first!), hardlinkGroups.get(second!), 'same hardlink_group on both members');

    // Summary agrees with what is on disk.
    const files = await (await reader(s, runId)).list();
    t.equal(summary.transfer_total_bytes, files.reduce((n, f) => n + f.size, 0), 'transfer_total_bytes = every stored byte');
    t.equal(summary.entries_count, run.manifest.entry_index.count);
    t.equal(summary.parts, run.manifest.artifacts.length);
    t.same(summary.source_total, { files: [...expected.values()].filter((e) => e.kind !== 'dir').length, dirs: [...expected.values()].filter((e) => e.kind === 'dir').length + 1, bytes: [...expected.values()].reduce((n, e) => n + e.size, 0) });
    t.equal(summary.xattrs_recorded, hasGetfattr);
    t.equal(summary.warnings.total, 0);
    if (format === 'archive_v1') t.ok(summary.parts >= 3, 'several 1 MiB parts');
    else t.ok(files.some((f) => f.name === `data/${prefix(s)}/${s.info.bigFile}`), 'files under data/');
    t.equal(files.at(-1)?.name === 'complete.json' || files.some((f) => f.name === 'complete.json'), true);

    const report = await verifyRun(await reader(s, runId));
    t.ok(report.ok, JSON.stringify(report));
    t.equal(report.files_failed, 0);

    // Reading one file through the reader checks it against its record.
    const chunks: Buffer[] = [];
    for await (const c of run.readFile(`${prefix(s)}/${s.info.hardlinks[1]}`)) chunks.push(c);
    t.equal(Buffer.concat(chunks).toString(), 'deep\n', 'a hard-linked name reads its content');
  });
}

t.test('GNU tar and the zstd CLI restore our parts exactly', { skip: !hasZstdCli && 'zstd CLI not installed' }, async (t) => {
  const s = await setup(t.testdir(FIXTURE));
  const { runId } = await backup(s);
  const runDir = `${s.base}/${JOB}/${runId}`;
  const parts = (await fs.readdir(runDir)).filter((n) => n.startsWith('payload.part')).sort();
  const out = `${s.dir}/extracted`;
  await fs.mkdir(out);
  const r = spawnSync('sh', ['-c', `cat ${parts.map((p) => `'${runDir}/${p}'`).join(' ')} | zstd -dc | tar --xattrs --xattrs-include='*' -xpf - -C '${out}'`]);
  t.equal(r.status, 0, r.stderr.toString());
  const expected = await describeTree(s.src, { withXattrs: hasGetfattr });
  const got = await describeTree(`${out}/${prefix(s)}`, { withXattrs: hasGetfattr });
  t.same(diffTrees(expected, got), []);
});

t.test('age: encrypted round trip; the identity is required; the age package agrees', async (t) => {
  const s = await setup(t.testdir(FIXTURE));
  const { identity, recipient } = generateAgeIdentity();
  const { runId } = await backup(s, { encryption: { type: 'age', recipient, key_name: 'backup-key-1' } });
  const run = await RunReader.open(await reader(s, runId));
  t.equal(run.manifest.pipeline.encryption, 'age');
  t.equal(run.manifest.pipeline.encryption_key, 'backup-key-1');

  t.equal(await codeOf(describeRun(await reader(s, runId), prefix(s))), 'decryption_failed', 'no identity');
  t.equal(await codeOf(describeRun(await reader(s, runId), prefix(s), { identity: generateAgeIdentity().identity })), 'decryption_failed', 'wrong identity');
  const { tree } = await describeRun(await reader(s, runId), prefix(s), { identity });
  t.same(diffTrees(await describeTree(s.src, { withXattrs: hasGetfattr }), tree), []);
  t.ok((await verifyRun(await reader(s, runId), { identity })).ok);

  // The whole payload is one standard age file: the reference implementation of the format decrypts it.
  const runDir = `${s.base}/${JOB}/${runId}`;
  const parts = (await fs.readdir(runDir)).filter((n) => n.startsWith('payload.part')).sort();
  const cipher = Buffer.concat(await Promise.all(parts.map((p) => fs.readFile(`${runDir}/${p}`))));
  const d = new Decrypter();
  d.addIdentity(identity);
  const zst = Buffer.from(await d.decrypt(cipher));
  t.equal(zst.readUInt32LE(0), 0xfd2fb528, 'plaintext is a zstd stream');
});

t.test('resume: an interrupted archive run rewrites only what is missing', async (t) => {
  const s = await setup(t.testdir(FIXTURE), { bigBytes: 5 * MiB });
  const runId = crypto.randomUUID();
  t.equal(await codeOf(backup(s, { runId, abortAfterStored: 2 })), 'backup_aborted');
  const runDir = `${s.base}/${JOB}/${runId}`;
  const before = await inodes(runDir);
  t.same([...before.keys()].sort(), ['payload.part000001', 'payload.part000002'], 'two parts stored, no partial left, no complete.json');
  const { summary } = await backup(s, { runId });
  t.equal(summary.resumed.skipped_files, 2, 'both stored parts were verified and kept');
  t.equal(summary.resumed.skipped_bytes, 2 * MiB);
  const after = await inodes(runDir);
  t.equal(after.get('payload.part000001'), before.get('payload.part000001'), 'part 1 not rewritten');
  t.equal(after.get('payload.part000002'), before.get('payload.part000002'), 'part 2 not rewritten');
  t.ok((await verifyRun(await reader(s, runId))).ok);

  // Running the completed run again rewrites no part (manifest and complete.json are always rewritten).
  const again = await backup(s, { runId });
  t.equal(again.summary.resumed.skipped_files, again.summary.parts + 1, 'every part and the entries index skipped');
  await fs.access(`${s.dir}/staging/${runId}/resume.jsonl`).then(
    () => t.fail('journal should be gone after success'),
    () => t.pass('journal removed after success'),
  );
});

t.test('resume: same bytes for an unchanged source, different run ids alike', async (t) => {
  const s = await setup(t.testdir(FIXTURE));
  const a = await backup(s);
  const b = await backup(s);
  const ma = (await RunReader.open(await reader(s, a.runId))).manifest.artifacts;
  const mb = (await RunReader.open(await reader(s, b.runId))).manifest.artifacts;
  t.same(mb, ma, 'identical parts: tar, zstd frames and splitting are deterministic');
});

t.test('resume: a source changed between attempts never mixes archives', async (t) => {
  const s = await setup(t.testdir(FIXTURE), { bigBytes: 5 * MiB });
  const runId = crypto.randomUUID();
  t.equal(await codeOf(backup(s, { runId, abortAfterStored: 3 })), 'backup_aborted');
  // Change the start of the big file: every part from the first one differs now, sizes do not.
  const fh = await fs.open(`${s.src}/${s.info.bigFile}`, 'r+');
  await fh.write(crypto.randomBytes(4096), 0, 4096, 0);
  await fh.close();
  const { summary } = await backup(s, { runId });
  t.equal(summary.resumed.skipped_files, 0, 'nothing reused from the old archive');
  const { tree } = await describeRun(await reader(s, runId), prefix(s));
  t.same(diffTrees(await describeTree(s.src, { withXattrs: hasGetfattr }), tree), [], 'content is the new source');
  t.ok((await verifyRun(await reader(s, runId))).ok);
});

t.test('resume through a staging-only target (as WebDAV): the journal decides', async (t) => {
  const s = await setup(t.testdir(FIXTURE), { bigBytes: 5 * MiB });
  const runId = crypto.randomUUID();
  const local = await openLocalRunDirWriter({ baseDir: s.base, jobId: JOB, runId });
  t.equal(await codeOf(backup(s, { runId, writer: stagedOnly(local), abortAfterStored: 2 })), 'backup_aborted');
  const log: string[] = [];
  const { summary } = await backup(s, { runId, writer: stagedOnly(local, log) });
  t.equal(summary.resumed.skipped_files, 2);
  t.notOk(log.includes('payload.part000001') || log.includes('payload.part000002'), 'stored parts not uploaded again');
  t.ok(log.indexOf('complete.json') === log.length - 1, 'complete.json is the last upload');
  t.same(await fs.readdir(`${s.dir}/staging/${runId}`), [], 'staging left empty');
  t.ok((await verifyRun(await reader(s, runId))).ok);

  // Without the journal (staging lost) a target without hashes gets everything again: never a stale part.
  const runId2 = crypto.randomUUID();
  const local2 = await openLocalRunDirWriter({ baseDir: s.base, jobId: JOB, runId: runId2 });
  t.equal(await codeOf(backup(s, { runId: runId2, writer: stagedOnly(local2), abortAfterStored: 2 })), 'backup_aborted');
  await fs.rm(`${s.dir}/staging/${runId2}`, { recursive: true });
  const second = await backup(s, { runId: runId2, writer: stagedOnly(local2) });
  t.equal(second.summary.resumed.skipped_files, 0);
  t.ok((await verifyRun(await reader(s, runId2))).ok);
});

t.test('resume: age keeps its session in the staging journal', async (t) => {
  const s = await setup(t.testdir(FIXTURE), { bigBytes: 5 * MiB });
  const { identity, recipient } = generateAgeIdentity();
  const encryption: Encryption = { type: 'age', recipient };
  const runId = crypto.randomUUID();
  t.equal(await codeOf(backup(s, { runId, encryption, abortAfterStored: 2 })), 'backup_aborted');
  const journal = await fs.stat(`${s.dir}/staging/${runId}/resume.jsonl`);
  t.equal(journal.mode & 0o777, 0o600, 'the journal holding the file key is private');
  const { summary } = await backup(s, { runId, encryption });
  t.equal(summary.resumed.skipped_files, 2, 'same session: same ciphertext, parts kept');
  t.ok((await verifyRun(await reader(s, runId), { identity })).ok);

  // Staging lost: a new session; the stored parts (old key) are detected as different and replaced.
  const runId2 = crypto.randomUUID();
  t.equal(await codeOf(backup(s, { runId: runId2, encryption, abortAfterStored: 2 })), 'backup_aborted');
  await fs.rm(`${s.dir}/staging/${runId2}`, { recursive: true });
  const second = await backup(s, { runId: runId2, encryption });
  t.equal(second.summary.resumed.skipped_files, 0);
  t.ok((await verifyRun(await reader(s, runId2), { identity })).ok);
});

t.test('resume: raw_tree_v1 skips files already stored', async (t) => {
  const s = await setup(t.testdir(FIXTURE));
  const runId = crypto.randomUUID();
  t.equal(await codeOf(backup(s, { runId, format: 'raw_tree_v1', abortAfterStored: 5 })), 'backup_aborted');
  const { summary } = await backup(s, { runId, format: 'raw_tree_v1' });
  t.ok(summary.resumed.skipped_files >= 5, `skipped ${summary.resumed.skipped_files}`);
  t.ok((await verifyRun(await reader(s, runId))).ok);
});

t.test('verify finds damage; readers refuse incomplete runs', async (t) => {
  const s = await setup(t.testdir(FIXTURE));
  const a = await backup(s);
  const runDir = `${s.base}/${JOB}/${a.runId}`;
  const part = `${runDir}/payload.part000002`;
  const bytes = await fs.readFile(part);
  bytes[1000]! ^= 0xff;
  await fs.writeFile(part, bytes);
  const damaged = await verifyRun(await reader(s, a.runId));
  t.notOk(damaged.ok);
  t.equal(damaged.fatal?.code, 'artifact_corrupt');
  await fs.rm(part);
  t.equal((await verifyRun(await reader(s, a.runId))).fatal?.code, 'artifact_missing');
  await fs.rm(`${runDir}/complete.json`);
  t.equal(await codeOf(verifyRun(await reader(s, a.runId))), 'artifact_missing', 'no complete.json, no snapshot');

  const b = await backup(s, { format: 'raw_tree_v1' });
  await fs.writeFile(`${s.base}/${JOB}/${b.runId}/data/${prefix(s)}/text/lorem.txt`, 'tampered');
  const raw = await verifyRun(await reader(s, b.runId));
  t.notOk(raw.ok);
  t.equal(raw.files_failed, 1);
  t.match(raw.sample_errors[0], /size mismatch: .*lorem\.txt/);
  await fs.writeFile(`${s.base}/${JOB}/${b.runId}/manifest.json`, '{"format_version": 2}');
  t.equal(await codeOf(verifyRun(await reader(s, b.runId))), 'artifact_unsupported');
  await fs.writeFile(`${s.base}/${JOB}/${b.runId}/manifest.json`, '{"format_version": 1, "job_id": "x"}');
  t.equal(await codeOf(verifyRun(await reader(s, b.runId))), 'artifact_corrupt');
});

t.test('hostile input: clear errors with codes', async (t) => {
  const s = await setup(t.testdir(FIXTURE), { bigBytes: 10 });
  t.equal(await codeOf(backup(s, { paths: [`${s.dir}/does-not-exist`] })), 'source_not_found');
  t.equal(await codeOf(backup(s, { paths: ['relative/src'] })), 'invalid_path');
  t.equal(await codeOf(backup(s, { format: 'raw_tree_v1', encryption: { type: 'age', recipient: generateAgeIdentity().recipient } })), 'invalid_input');
  t.equal(await codeOf(backup(s, { partSize: 1000 })), 'invalid_input');
  t.equal(await codeOf(backup(s, { encryption: { type: 'age', recipient: 'age1notarecipient' } })), 'invalid_encryption_key');
  t.equal(await codeOf(backup(s, { stagingDir: 'relative/staging' })), 'invalid_path');

  await fs.mkdir(`${s.dir}/real-base`);
  await fs.symlink(`${s.dir}/real-base`, `${s.dir}/link-base`);
  t.equal(await codeOf(openLocalRunDirWriter({ baseDir: `${s.dir}/link-base`, jobId: JOB, runId: crypto.randomUUID() })), 'target_is_symlink');

  // An unreadable file fails the run (as an unprivileged user: root reads anything).
  await fs.writeFile(`${s.src}/locked.txt`, 'secret', { mode: 0o600 });
  await fs.chmod(`${s.src}/locked.txt`, 0o000);
  await fs.chmod(s.dir, 0o755);
  await fs.mkdir(`${s.dir}/base-nobody`);
  await fs.chmod(`${s.dir}/base-nobody`, 0o777);
  await fs.chmod(`${s.dir}/staging`, 0o777);
  const r = (await runUnprivileged(
    s.dir,
    `import { runBackup } from '@/engine/format/run-backup.ts';
     import { openLocalRunDirWriter } from '@/engine/targets/local-dir.ts';
     const runId = crypto.randomUUID();
     try {
       const writer = await openLocalRunDirWriter({ baseDir: ${JSON.stringify(`${s.dir}/base-nobody`)}, jobId: '${JOB}', runId });
       await runBackup({ jobId: '${JOB}', runId, startedAt: new Date(), source: { paths: [${JSON.stringify(s.src)}], include: [], exclude: [], symlinks: 'keep' },
         format: 'archive_v1', encryption: { type: 'none' }, partSizeBytes: ${MiB}, writer, stagingDir: ${JSON.stringify(`${s.dir}/staging`)} + '/' + runId });
       console.log(JSON.stringify({ ok: true }));
     } catch (e) { console.log(JSON.stringify({ code: e.code, path: e.details?.path })); }`,
  )) as { code?: string; path?: string };
  await fs.chmod(`${s.src}/locked.txt`, 0o600);
  t.same(r, { code: 'source_unreadable', path: `${s.src}/locked.txt` });
});

t.test('a file much larger than any buffer streams with bounded memory', async (t) => {
  const dir = t.testdir({ src: {}, base: {}, staging: {} });
  const size = 384 * MiB;
  const fh = await fs.open(`${dir}/src/big.bin`, 'w');
  for (let i = 0; i < size / MiB; i++) await fh.write(crypto.randomBytes(MiB)); // incompressible
  await fh.close();
  const r = (await runChild(
    dir,
    `import { runBackup } from '@/engine/format/run-backup.ts';
     import { openLocalRunDirWriter } from '@/engine/targets/local-dir.ts';
     const runId = crypto.randomUUID();
     const writer = await openLocalRunDirWriter({ baseDir: ${JSON.stringify(`${dir}/base`)}, jobId: '${JOB}', runId });
     const rssBefore = process.resourceUsage().maxRSS;
     const s = await runBackup({ jobId: '${JOB}', runId, startedAt: new Date(), source: { paths: [${JSON.stringify(`${dir}/src`)}], include: [], exclude: [], symlinks: 'keep' },
       format: 'archive_v1', encryption: { type: 'none' }, partSizeBytes: ${64 * MiB}, writer, stagingDir: ${JSON.stringify(`${dir}/staging`)} });
     console.log(JSON.stringify({ bytes: s.source_total.bytes, parts: s.parts, maxRssKiB: process.resourceUsage().maxRSS, rssBeforeKiB: rssBefore }));`,
  )) as { bytes: number; parts: number; maxRssKiB: number; rssBeforeKiB: number };
  t.equal(r.bytes, size);
  t.equal(r.parts, 7, '384 MiB of incompressible data in 64 MiB parts');
  // Growth over the process's own baseline is a fixed number of 4 MiB blocks, 1 MiB chunks and zstd
  // contexts plus garbage V8 has not collected yet (≈ 110 MiB measured); holding the file would need ≥ 384.
  const grownMiB = (r.maxRssKiB - r.rssBeforeKiB) / 1024;
  t.ok(grownMiB < size / MiB / 2, `peak RSS grew by ${grownMiB.toFixed(0)} MiB for a ${size / MiB} MiB file`);
});

t.test('without getfattr no xattrs are recorded, and the summary says so', async (t) => {
  const dir = t.testdir({ src: { f: 'x' }, base: {}, staging: {} });
  const r = (await runChild(
    dir,
    `import { runBackup } from '@/engine/format/run-backup.ts';
     import { openLocalRunDirWriter } from '@/engine/targets/local-dir.ts';
     const runId = crypto.randomUUID();
     const writer = await openLocalRunDirWriter({ baseDir: ${JSON.stringify(`${dir}/base`)}, jobId: '${JOB}', runId });
     const s = await runBackup({ jobId: '${JOB}', runId, startedAt: new Date(), source: { paths: [${JSON.stringify(`${dir}/src`)}], include: [], exclude: [], symlinks: 'keep' },
       format: 'raw_tree_v1', encryption: { type: 'none' }, partSizeBytes: ${MiB}, writer, stagingDir: ${JSON.stringify(`${dir}/staging`)} });
     console.log(JSON.stringify(s));`,
    { env: { PATH: `${dir}/no-such-bin` } },
  )) as BackupSummary;
  t.equal(r.xattrs_recorded, false);
  t.equal(r.warnings.by_kind.xattrs_unavailable, 1);
  t.equal(r.entries_count, 2);
});
