/**
 * Backups end to end through the worker: a job created with
 * bastion.create_job, a run requested with bastion.request_run, executed by
 * the real run-backup task under graphile-worker, then read back with the
 * format's reader and compared with the source, byte for byte with metadata —
 * archive_v1 and raw_tree_v1, local_dir and a real WebDAV server process, and
 * an age-encrypted archive. Credentials are searched for in everything stored
 * and logged.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import t, { type Test } from 'tap';
import { describeRun, describeTree, diffTrees } from '../engine/format/round-trip-kit.ts';
import { generateAgeIdentity } from '../engine/format/age-keys.ts';
import { putWebdavSecret } from '../engine/secrets/secret-store.ts';
import { openLocalRunDirReader } from '../engine/targets/local-dir.ts';
import type { RunDirReader } from '../engine/targets/target.ts';
import { WebdavRunDir } from '../engine/targets/webdav-target.ts';
import type { RunEventRow, RunRow } from '../db/queries/runs.ts';
import { createTestJob, exists, harness, runJob, specFor, storedText, type Harness } from './backup-harness.ts';
import { rcloneAvailable, startWebdavServer, type WebdavTestServer } from './webdav-server.ts';

const hasGetfattr = spawnSync('getfattr', ['--version']).status === 0;

/** The checks every successful run must pass. */
async function checkSuccessfulRun(t: Test, h: Harness, run: RunRow, events: RunEventRow[], reader: RunDirReader, opts: { identity?: string } = {}) {
  t.equal(run.status, 'success', `run succeeded (${run.error_code ?? ''} ${run.error ?? ''})`);
  t.equal(run.error_code, null);
  const summary = run.summary as Record<string, any>;
  const kinds = events.map((e) => e.kind);
  t.equal(kinds[0], 'queued');
  t.equal(kinds[1], 'start');
  t.equal(kinds.at(-1), 'complete');
  t.same(events.map((e) => e.seq), events.map((_, i) => i + 1), 'gapless seq');
  const progress = events.filter((e) => e.kind === 'progress');
  t.ok(progress.length >= 1, 'at least one progress event');
  const seconds = (run.ended_at!.getTime() - run.started_at!.getTime()) / 1000;
  t.ok(progress.length <= Math.floor(seconds) + 1, `at most one progress event per second (${progress.length} in ${seconds}s)`);
  t.match(progress[0]!.fields, { stage: String, files_done: Number, bytes_done: Number });
  const complete = events.at(-1)!;
  t.match(complete.fields, { files: summary.source_total.files, bytes: summary.source_total.bytes, transfer_bytes: summary.transfer_total_bytes });
  t.match(run.progress, { stage: 'finalize' }, 'runs.progress keeps the last progress');
  t.same(run.target_snapshot, (await h.tdb.pool.query('select target_snapshot from bastion.runs where id = $1', [run.id])).rows[0].target_snapshot);

  // The snapshot index row.
  const { rows } = await h.tdb.pool.query('select * from bastion.run_artifacts where run_id = $1', [run.id]);
  t.equal(rows.length, 1, 'one index row');
  const a = rows[0];
  t.match(a, {
    job_id: run.job_id,
    node_id: 'hub',
    status: 'present',
    target_type: run.target_snapshot!.target.type,
    artifact_format: summary.artifact_format,
    source_files: summary.source_total.files,
    source_dirs: summary.source_total.dirs,
    source_bytes: summary.source_total.bytes,
    transfer_bytes: summary.transfer_total_bytes,
    pinned_at: null,
  });
  t.same(a.target_snapshot, run.target_snapshot);
  t.same([a.started_at.getTime(), a.ended_at.getTime()], [run.started_at!.getTime(), run.ended_at!.getTime()]);

  // Read it back and compare with the source.
  const expected = await describeTree(h.src, { withXattrs: hasGetfattr });
  const { tree, run: reading } = await describeRun(reader, h.src.slice(1), opts.identity ? { identity: opts.identity } : {});
  t.same(diffTrees(expected, tree), [], 'every entry, content and metadata');
  t.equal(reading.manifest.run_id, run.id);
  t.equal(reading.manifest.job_id, run.job_id);
  const stored = await reader.list();
  t.equal(summary.transfer_total_bytes, stored.reduce((n, f) => n + f.size, 0), 'transfer bytes = every stored byte');
  t.notOk(await exists(`${h.dataDir}/staging/${run.id}`), 'staging removed');
}

for (const format of ['archive_v1', 'raw_tree_v1'] as const) {
  t.test(`${format} to local_dir through the worker`, async (t) => {
    const h = await harness(t);
    const job = await createTestJob(h, specFor(h, { format }));
    const { run, events } = await runJob(h, job);
    t.same(run.target_snapshot, { node_id: 'hub', target: { type: 'local_dir', base_dir: h.base } });
    await checkSuccessfulRun(t, h, run, events, await openLocalRunDirReader({ baseDir: h.base, jobId: job.id, runId: run.id }));
    if (format === 'archive_v1') t.ok((run.summary as { parts: number }).parts >= 3, 'several 1 MiB parts');
  });

  t.test(`${format} to WebDAV through the worker; the password is nowhere`, async (t) => {
    const h = await harness(t);
    const dav: WebdavTestServer = await startWebdavServer(t, { password: `pw-${format}-S3cr3t!ü` });
    if (format === 'raw_tree_v1') {
      // raw_tree_v1 stores every file under its own name on the server, and
      // each test server refuses one of the generated names: webdav-server
      // 2.6.3 answers 409 to a PUT of `back\slash` (it splits on "\"; the
      // run fails with webdav_http), rclone 1.60 renames `line\nbreak` (the
      // run fails with target_name_unsupported: the test below). The other
      // name stays in, so each server shows a hostile name read back.
      // archive_v1 keeps names inside the tar.
      await fs.rm(dav.kind === 'rclone' ? `${h.src}/weird/line\nbreak` : `${h.src}/weird/back\\slash`);
    }
    await putWebdavSecret(h.tdb.pool, h.ctx.secrets, 'hub', 'nas', { username: dav.username, password: dav.password });
    const baseUrl = `${dav.url}backups/`;
    const job = await createTestJob(h, specFor(h, { format, target: { type: 'webdav', base_url: baseUrl, secret_name: 'nas' } }));
    const { run, events } = await runJob(h, job);
    t.same(run.target_snapshot, { node_id: 'hub', target: { type: 'webdav', base_url: baseUrl, secret_name: 'nas' } });
    const reader = new WebdavRunDir({ baseUrl, credentials: dav, jobId: job.id, runId: run.id });
    t.teardown(() => reader.close());
    await checkSuccessfulRun(t, h, run, events, reader);
    t.ok(await exists(`${dav.dir}/backups/${job.id}/${run.id}/complete.json`), 'complete.json on the server');
    const basic = Buffer.from(`${dav.username}:${dav.password}`).toString('base64');
    const stored = await storedText(h);
    for (const secret of [dav.password, basic, encodeURIComponent(dav.password)]) {
      t.notOk(stored.includes(secret), 'not in runs, events, snapshot rows or queue jobs');
      t.notOk(h.logs.join('').includes(secret), 'not in the logs');
    }
  });
}

t.test(
  'raw_tree_v1 to a WebDAV server that renames a file (rclone: a newline in the name) fails the run instead of reporting success',
  // rclone comes from Debian (test/install-system-tools.sh); without it there is no server here that renames.
  { skip: rcloneAvailable() ? false : 'rclone not on PATH' },
  async (t) => {
    const h = await harness(t, { bigBytes: 1000 });
    const dav = await startWebdavServer(t, { kind: 'rclone' });
    await putWebdavSecret(h.tdb.pool, h.ctx.secrets, 'hub', 'nas', { username: dav.username, password: dav.password });
    const baseUrl = `${dav.url}backups/`;
    const job = await createTestJob(h, specFor(h, { format: 'raw_tree_v1', target: { type: 'webdav', base_url: baseUrl, secret_name: 'nas' } }));
    const { run, events } = await runJob(h, job);
    t.equal(run.status, 'failed');
    t.equal(run.error_code, 'target_name_unsupported');
    t.match(run.error, /"[^"]*weird\/line\\nbreak" was accepted by the target but is listed as "[^"]*weird\/line␊break"/);
    const failed = events.at(-1)!;
    t.match(failed.fields, { error_code: 'target_name_unsupported', reason: 'name_changed_by_target', path: /weird\/line\\nbreak"$/ });
    const dir = `${dav.dir}/backups/${job.id}/${run.id}`;
    t.ok(await exists(`${dir}/entries.jsonl.zst`), 'the data went up');
    t.notOk(await exists(`${dir}/complete.json`), 'but no complete.json: not a snapshot');
    t.notOk(await exists(`${dir}/manifest.json`));
    const { rows } = await h.tdb.pool.query('select 1 from bastion.run_artifacts where run_id = $1', [run.id]);
    t.equal(rows.length, 0, 'nothing indexed');
  },
);

t.test('age-encrypted archive_v1: round trip with the identity; the payload is not readable without it', async (t) => {
  const h = await harness(t);
  const { identity, recipient } = generateAgeIdentity();
  const job = await createTestJob(h, specFor(h, { encryption: { type: 'age', recipient, key_name: 'offsite' } }));
  const { run, events } = await runJob(h, job);
  const reader = await openLocalRunDirReader({ baseDir: h.base, jobId: job.id, runId: run.id });
  await checkSuccessfulRun(t, h, run, events, reader, { identity });
  await t.rejects(describeRun(reader, h.src.slice(1)), { code: 'decryption_failed' }, 'reading without the identity fails');
  t.notOk(h.logs.join('').includes(identity), 'the identity was never in play');
});

t.test('the index upsert never revives a snapshot: deleted stays deleted, pins stay', async (t) => {
  const h = await harness(t, { bigBytes: 1000 });
  const job = await createTestJob(h, specFor(h));
  const { run } = await runJob(h, job);
  const pool = h.tdb.pool;
  const before = (await pool.query('select * from bastion.run_artifacts where run_id = $1', [run.id])).rows[0];
  for (const status of ['deleting', 'deleted', 'missing', 'error'] as const) {
    await pool.query(
      `update bastion.run_artifacts set status = $2::bastion.snapshot_status, deleted_at = case when $2::text = 'deleted' then now() end, source_files = 1, transfer_bytes = 1,
              pinned_at = now() - interval '1 hour', pin_reason = 'legal hold', pin_expires_at = now() + interval '1 year' where run_id = $1`,
      [run.id, status],
    );
    const pinnedBefore = (await pool.query('select pinned_at, pin_reason, pin_expires_at, deleted_at from bastion.run_artifacts where run_id = $1', [run.id])).rows[0];
    const { rows } = await pool.query('select bastion.upsert_run_artifact($1) as ok', [run.id]);
    t.equal(rows[0].ok, true);
    const after = (await pool.query('select * from bastion.run_artifacts where run_id = $1', [run.id])).rows[0];
    t.equal(after.status, status, `${status} is not revived`);
    t.same({ pinned_at: after.pinned_at, pin_reason: after.pin_reason, pin_expires_at: after.pin_expires_at, deleted_at: after.deleted_at }, pinnedBefore, 'pin and delete fields untouched');
    t.equal(after.source_files, before.source_files, 'metrics refreshed from the run');
    t.equal(after.transfer_bytes, before.transfer_bytes);
  }
  const failed = await pool.query(`select bastion.upsert_run_artifact(id) as ok from bastion.runs where id <> $1 limit 1`, [run.id]);
  t.same(failed.rows, [], 'no other runs');
  const queued = (await pool.query('select id from bastion.request_run($1)', [job.id])).rows[0].id;
  t.equal((await pool.query('select bastion.upsert_run_artifact($1) as ok', [queued])).rows[0].ok, false, 'a run that did not succeed is not indexed');
});

t.test('snapshot metrics: summary first (ours, then the reference shape), progress only fills gaps', async (t) => {
  const h = await harness(t, { tree: false });
  const { makeJob, makeRun } = await import('./factories.ts');
  const job = await makeJob(h.tdb.db);
  const pool = h.tdb.pool;
  const cases: Array<[object, object | null, [number | null, number | null, number | null, number | null]]> = [
    [{ artifact_format: 'raw_tree_v1', source_total: { files: 5, dirs: 2, bytes: 50 }, transfer_total_bytes: 70 }, { files_total: 9, bytes_total: 99 }, [5, 2, 50, 70]],
    [{ metrics: { source_total: { files: 6, dirs: 1, bytes: 60 }, transfer_total_bytes: 80 } }, null, [6, 1, 60, 80]],
    [{ source_total: { files: 'x', bytes: -1 } }, { detail: { backup: { source_total: { files: 7, dirs: 3, bytes: 70 }, transfer_total_bytes: 90 } } }, [7, 3, 70, 90]],
    [{}, { stage: 'upload', total: { bytes: 123 }, files_total: 4.5 }, [null, null, null, 123]],
  ];
  for (const [summary, progress, [files, dirs, bytes, transfer]] of cases) {
    const run = await makeRun(h.tdb.db, job, { status: 'success' });
    await pool.query('update bastion.runs set summary = $2, progress = $3 where id = $1', [run.id, summary, progress]);
    t.equal((await pool.query('select bastion.upsert_run_artifact($1) as ok', [run.id])).rows[0].ok, true);
    const a = (await pool.query('select source_files, source_dirs, source_bytes, transfer_bytes, artifact_format from bastion.run_artifacts where run_id = $1', [run.id])).rows[0];
    t.same([a.source_files, a.source_dirs, a.source_bytes, a.transfer_bytes], [files, dirs, bytes, transfer], JSON.stringify(summary));
  }
});
