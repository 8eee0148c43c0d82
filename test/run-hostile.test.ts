/**
 * Hostile input, at both gates: the TypeScript validation every client runs
 * (core/job-input.ts) and the SQL functions that hold whoever calls them;
 * then hostile situations at run time — missing sources, unreadable files,
 * unwritable or symlinked targets, specs edited by hand, unknown nodes,
 * missing or wrong WebDAV credentials — each a failed run with a stable code,
 * a clear one-line error and no credential anywhere.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import t from 'tap';
import { parseJobInput } from '../core/job-input.ts';
import { findJob, getJobById, listJobs, updateJob } from '../db/queries/jobs.ts';
import { getRunDetail, requestRun } from '../db/queries/runs.ts';
import { runUnprivileged } from '../engine/format/round-trip-kit.ts';
import { putWebdavSecret } from '../engine/secrets/secret-store.ts';
import { createTestJob, drain, harness, runJob, specFor, storedText, type Harness } from './backup-harness.ts';
import { makeJob } from './factories.ts';
import { startWebdavServer } from './webdav-server.ts';

function codeOf(fn: () => unknown): { code?: string; field?: string } {
  try {
    fn();
    return {};
  } catch (e) {
    const err = e as { code?: string; details?: { field?: string } };
    return { code: err.code, field: err.details?.field };
  }
}

async function sqlCodeOf(p: Promise<unknown>): Promise<{ code?: string; field?: string }> {
  try {
    await p;
    return {};
  } catch (e) {
    const err = e as { message?: string; hint?: string };
    return { code: err.message, field: err.hint ? (JSON.parse(err.hint) as { field?: string }).field : undefined };
  }
}

const ok = { source: { type: 'filesystem', paths: ['/srv/data'] }, target: { type: 'local_dir', base_dir: '/var/backups' } };

t.test('job input: every hostile field is refused with a code naming it, in TypeScript and in SQL', async (t) => {
  const h = await harness(t, { tree: false });
  const create = (name: unknown, node: unknown, schedule: unknown, tz: unknown, overlap: unknown, spec: unknown) =>
    sqlCodeOf(h.tdb.pool.query('select bastion.create_job($1, $2, $3, $4, $5::bastion.overlap_policy, $6::jsonb)', [name, node, schedule, tz, overlap, JSON.stringify(spec)]));
  const cases: Array<{ what: string; input: Record<string, unknown>; ts: { code: string; field?: string }; sql: { code: string; field?: string } }> = [
    { what: 'relative source path', input: { spec: { ...ok, source: { type: 'filesystem', paths: ['srv/data'] } } }, ts: { code: 'invalid_spec', field: 'spec.source.paths[0]' }, sql: { code: 'invalid_spec', field: 'spec.source' } },
    { what: 'relative base_dir', input: { spec: { ...ok, target: { type: 'local_dir', base_dir: 'backups' } } }, ts: { code: 'invalid_spec', field: 'spec.target.base_dir' }, sql: { code: 'invalid_spec', field: 'spec.target.base_dir' } },
    { what: 'unknown spec key', input: { spec: { ...ok, compression: 'gzip' } }, ts: { code: 'invalid_spec', field: 'spec' }, sql: { code: 'invalid_spec', field: 'spec' } },
    { what: 'unknown source key', input: { spec: { ...ok, source: { ...ok.source, follow: true } } }, ts: { code: 'invalid_spec', field: 'spec.source' }, sql: { code: 'invalid_spec', field: 'spec.source' } },
    { what: '1001 source paths', input: { spec: { ...ok, source: { type: 'filesystem', paths: Array.from({ length: 1001 }, (_, i) => `/p${i}`) } } }, ts: { code: 'invalid_spec', field: 'spec.source.paths' }, sql: { code: 'invalid_spec', field: 'spec.source' } },
    { what: '1001 exclude patterns', input: { spec: { ...ok, source: { ...ok.source, exclude: Array.from({ length: 1001 }, () => '*.tmp') } } }, ts: { code: 'invalid_spec', field: 'spec.source.exclude' }, sql: { code: 'invalid_spec', field: 'spec.source.exclude' } },
    { what: 'a password in the target', input: { spec: { ...ok, target: { type: 'webdav', base_url: 'https://dav.example/', secret_name: 'nas', password: 'pw' } } }, ts: { code: '' }, sql: { code: 'invalid_spec', field: 'spec.target' } },
    { what: 'credentials in the WebDAV URL', input: { spec: { ...ok, target: { type: 'webdav', base_url: 'https://u:pw@dav.example/', secret_name: 'nas' } } }, ts: { code: 'invalid_spec', field: 'spec.target.base_url' }, sql: { code: 'invalid_spec', field: 'spec.target.base_url' } },
    { what: 'raw_tree_v1 with age', input: { spec: { ...ok, format: 'raw_tree_v1', encryption: { type: 'age', recipient: 'age1' + 'q'.repeat(58) } } }, ts: { code: 'invalid_spec', field: 'spec.encryption' }, sql: { code: 'invalid_spec', field: 'spec.encryption' } },
    { what: 'unknown target type', input: { spec: { ...ok, target: { type: 's3', bucket: 'x' } } }, ts: { code: 'invalid_spec', field: 'spec.target.type' }, sql: { code: 'invalid_spec', field: 'spec.target.type' } },
    { what: 'spec not an object', input: { spec: ['x'] }, ts: { code: 'invalid_spec', field: 'spec' }, sql: { code: 'invalid_spec', field: 'spec' } },
    { what: 'name with a newline', input: { name: 'nightly\nbackup' }, ts: { code: 'invalid_input', field: 'name' }, sql: { code: 'invalid_input', field: 'name' } },
    { what: 'name with an escape', input: { name: 'nightly\u001b[31m' }, ts: { code: 'invalid_input', field: 'name' }, sql: { code: 'invalid_input', field: 'name' } },
    { what: 'name with surrounding space', input: { name: ' nightly' }, ts: { code: 'invalid_input', field: 'name' }, sql: { code: 'invalid_input', field: 'name' } },
    { what: 'empty name', input: { name: '' }, ts: { code: 'invalid_input', field: 'name' }, sql: { code: 'invalid_input', field: 'name' } },
    { what: '201-character name', input: { name: 'n'.repeat(201) }, ts: { code: 'invalid_input', field: 'name' }, sql: { code: 'invalid_input', field: 'name' } },
    { what: 'six-field cron', input: { schedule: '0 0 3 * * *' }, ts: { code: 'invalid_schedule', field: 'schedule' }, sql: { code: 'invalid_schedule', field: 'schedule' } },
    { what: 'cron with a bad value', input: { schedule: '99 3 * * *' }, ts: { code: 'invalid_schedule', field: 'schedule' }, sql: { code: '', field: undefined } },
    { what: 'cron that is prose', input: { schedule: 'every day at 3' }, ts: { code: 'invalid_schedule', field: 'schedule' }, sql: { code: 'invalid_schedule', field: 'schedule' } },
    { what: 'cron with SQL', input: { schedule: "0 3 * * *'; drop table bastion.jobs; --" }, ts: { code: 'invalid_schedule', field: 'schedule' }, sql: { code: 'invalid_schedule', field: 'schedule' } },
    { what: 'unknown time zone', input: { schedule: '0 3 * * *', schedule_timezone: 'Europe/Atlantis' }, ts: { code: 'invalid_timezone', field: 'schedule_timezone' }, sql: { code: 'invalid_timezone', field: 'schedule_timezone' } },
    { what: 'time zone path', input: { schedule_timezone: '../../../etc/passwd' }, ts: { code: 'invalid_timezone', field: 'schedule_timezone' }, sql: { code: 'invalid_timezone', field: 'schedule_timezone' } },
    { what: 'node id in capitals', input: { node_id: 'HUB' }, ts: { code: 'invalid_input', field: 'node_id' }, sql: { code: 'invalid_input', field: 'node_id' } },
    { what: 'unknown agent', input: { node_id: randomUUID() }, ts: { code: '' }, sql: { code: 'node_not_found', field: 'node_id' } },
  ];
  for (const c of cases) {
    const input = { name: 'nightly', node_id: 'hub', schedule: null, schedule_timezone: 'UTC', overlap_policy: 'queue', spec: ok, ...c.input };
    const ts = codeOf(() => parseJobInput(input));
    t.same(ts, c.ts.code ? c.ts : {}, `TypeScript: ${c.what}`);
    const sql = await create(input.name, input.node_id, input.schedule, input.schedule_timezone, input.overlap_policy, input.spec);
    if (c.sql.code) t.same(sql, c.sql, `SQL: ${c.what}`);
    else t.same(sql, {}, `SQL accepts what only croner can judge: ${c.what}`);
    await h.tdb.pool.query('delete from bastion.jobs');
  }
  const big = { ...ok, source: { ...ok.source, include: Array.from({ length: 999 }, () => 'x'.repeat(300)) } };
  t.same(await create('big', 'hub', null, 'UTC', 'queue', big), { code: 'invalid_spec', field: 'spec' }, 'SQL refuses a spec over 256 KiB');
});

t.test('names, lists, lookups and optimistic updates', async (t) => {
  const h = await harness(t, { tree: false });
  const job = await createTestJob(h, specFor(h), { name: 'Nightly' });
  await t.rejects(createTestJob(h, specFor(h), { name: 'nightly' }), { code: 'job_name_taken', details: { field: 'name' } }, 'names are unique without regard to case');
  await h.tdb.pool.query('update bastion.jobs set archived_at = now() where id = $1', [job.id]);
  const again = await createTestJob(h, specFor(h), { name: 'nightly' });
  t.ok(again.id, 'an archived job frees its name');
  t.same((await listJobs(h.tdb.pool)).map((j) => j.id), [again.id], 'archived jobs are hidden');
  t.same((await listJobs(h.tdb.pool, { includeArchived: true })).map((j) => j.id).sort(), [job.id, again.id].sort(), '…unless asked for');
  t.equal((await findJob(h.tdb.pool, 'NIGHTLY')).id, again.id, 'by name: the active job');
  t.equal((await findJob(h.tdb.pool, job.id)).id, job.id, 'by id');
  await t.rejects(findJob(h.tdb.pool, 'nope'), { code: 'job_not_found' });

  const input = parseJobInput({ name: 'nightly', spec: specFor(h), schedule: '0 3 * * *', schedule_timezone: 'Europe/Berlin' });
  const loaded = (await getJobById(h.tdb.pool, again.id))!;
  const updated = await updateJob(h.tdb.pool, again.id, loaded.updated_at, input);
  t.match(updated, { schedule: '0 3 * * *', schedule_timezone: 'Europe/Berlin' });
  t.ok(updated.schedule_cursor.getTime() >= loaded.schedule_cursor.getTime(), 'the schedule cursor moves to the edit');
  await t.rejects(updateJob(h.tdb.pool, again.id, loaded.updated_at, input), { code: 'job_changed' }, 'a stale updated_at is refused (JavaScript millisecond precision round-trips)');
  t.ok(await updateJob(h.tdb.pool, again.id, updated.updated_at, input), 'the current one is accepted');
  await t.rejects(updateJob(h.tdb.pool, job.id, null, input), { code: 'job_archived' });
  await t.rejects(updateJob(h.tdb.pool, randomUUID(), null, input), { code: 'job_not_found' });
  const other = await createTestJob(h, specFor(h), { name: 'other' });
  await t.rejects(updateJob(h.tdb.pool, other.id, null, input), { code: 'job_name_taken' });
});

async function failedRun(h: Harness, job: { id: string }) {
  const { run, events } = await runJob(h, job as never);
  return { run, last: events.at(-1)! };
}

t.test('run-time failures: missing source, missing or symlinked base_dir, hand-edited spec, unknown node', async (t) => {
  const h = await harness(t, { bigBytes: 1000 });
  const missing = await createTestJob(h, specFor(h, { paths: [`${h.src}/does-not-exist`] }));
  let r = await failedRun(h, missing);
  t.match(r.run, { status: 'failed', error_code: 'source_not_found', error: /does-not-exist/ });
  t.match(r.last, { kind: 'failed', level: 'error', fields: { error_code: 'source_not_found' } });
  t.equal(r.run.error!.includes('\n'), false, 'one line');

  const noBase = await createTestJob(h, specFor(h, { target: { type: 'local_dir', base_dir: `${h.dir}/no-such-base` } }));
  r = await failedRun(h, noBase);
  t.match(r.run, { status: 'failed', error_code: 'target_not_found', target_snapshot: { target: { base_dir: `${h.dir}/no-such-base` } } });

  await fs.mkdir(`${h.dir}/real-base`);
  await fs.symlink(`${h.dir}/real-base`, `${h.dir}/link-base`);
  const linked = await createTestJob(h, specFor(h, { target: { type: 'local_dir', base_dir: `${h.dir}/link-base` } }));
  r = await failedRun(h, linked);
  t.match(r.run, { status: 'failed', error_code: 'target_is_symlink', error: /symbolic link/ });
  t.same(await fs.readdir(`${h.dir}/real-base`), [], 'nothing written through the link');

  // A DBA stored a spec by hand that the SQL gate never saw.
  const edited = await makeJob(h.tdb.db, { spec: { ...specFor(h), source: { type: 'filesystem', paths: ['relative/path'] } } });
  r = await failedRun(h, edited);
  t.match(r.run, { status: 'failed', error_code: 'invalid_spec', error: /spec\.source\.paths\[0\]/, started_at: null, target_snapshot: null });
  const agentJob = await makeJob(h.tdb.db, { node_id: randomUUID(), spec: specFor(h) });
  r = await failedRun(h, agentJob);
  // A node id that is not an enrolled agent (a job row written by hand): the dispatch refuses it.
  t.match(r.run, { status: 'failed', error_code: 'node_not_found' });
  t.same((await h.tdb.pool.query(`select count(*)::int as n from graphile_worker.jobs where task_identifier = 'run-backup'`)).rows[0].n, 0, 'no queue entry left behind');
});

t.test('run-time failures as an unprivileged worker: unreadable file, base_dir not writable', async (t) => {
  const h = await harness(t, { bigBytes: 1000 });
  await fs.writeFile(`${h.src}/locked.txt`, 'private', { mode: 0o600 });
  await fs.chmod(`${h.src}/locked.txt`, 0o000);
  t.teardown(() => fs.chmod(`${h.src}/locked.txt`, 0o600).catch(() => {}));
  await fs.mkdir(`${h.dir}/data-nobody`, { mode: 0o777 });
  await fs.chmod(`${h.dir}/data-nobody`, 0o777);
  await fs.chmod(h.base, 0o777);
  await fs.mkdir(`${h.dir}/readonly-base`, { mode: 0o755 });
  const unreadable = await createTestJob(h, specFor(h));
  const readonly = await createTestJob(h, specFor(h, { paths: [`${h.src}/a`], target: { type: 'local_dir', base_dir: `${h.dir}/readonly-base` } }));
  const runs = [await requestRun(h.tdb.pool, unreadable.id), await requestRun(h.tdb.pool, readonly.id)];
  const out = await runUnprivileged(
    h.dir,
    `import { pino } from 'pino';
     import { createPool } from '@/db/pool.ts';
     import { createTaskContext } from '@/worker/task-context.ts';
     import { executeRun } from '@/worker/tasks/run-backup.ts';
     const pool = createPool({ connectionString: ${JSON.stringify(h.tdb.url)}, max: 2 });
     const ctx = createTaskContext({ pool, logger: pino({ level: 'silent' }), dataDir: ${JSON.stringify(`${h.dir}/data-nobody`)}, secretKey: ${JSON.stringify(h.secretKey)} });
     const outcomes = [];
     for (const id of ${JSON.stringify(runs.map((r) => r.id))}) outcomes.push(await executeRun(ctx, id));
     await pool.end();
     console.log(JSON.stringify({ uid: process.getuid(), outcomes }));`,
  );
  t.match(out, { outcomes: ['failed', 'failed'] });
  const [a, b] = [await getRunDetail(h.tdb.pool, runs[0]!.id), await getRunDetail(h.tdb.pool, runs[1]!.id)];
  t.match(a.run, { status: 'failed', error_code: 'source_unreadable', error: /locked\.txt/ });
  t.match(a.events.at(-1), { fields: { path: `${h.src}/locked.txt` } });
  t.match(b.run, { status: 'failed', error_code: 'target_not_writable', error: /readonly-base/ });
  // The worker cleaned its staging up.
  t.same(await fs.readdir(`${h.dir}/data-nobody/staging`).catch(() => []), []);
});

t.test('WebDAV: a missing secret and a wrong password fail clearly; no password is stored or logged', async (t) => {
  const h = await harness(t, { bigBytes: 1000 });
  const dav = await startWebdavServer(t);
  const nope = await createTestJob(h, specFor(h, { target: { type: 'webdav', base_url: dav.url, secret_name: 'not-stored' } }));
  let r = await failedRun(h, nope);
  t.match(r.run, { status: 'failed', error_code: 'secret_not_found', error: /not-stored.*does not exist on node hub/ });
  t.match(r.last.fields, { error_kind: 'config' });

  const wrong = 'Wr0ng-P4ssw0rd-that-must-not-leak';
  await putWebdavSecret(h.tdb.pool, h.ctx.secrets, 'hub', 'nas', { username: dav.username, password: wrong });
  const job = await createTestJob(h, specFor(h, { target: { type: 'webdav', base_url: dav.url, secret_name: 'nas' } }));
  r = await failedRun(h, job);
  t.match(r.run, { status: 'failed', error_code: 'webdav_auth' });
  t.match(r.last.fields, { error_kind: 'auth', http_status: 401 });
  const basic = Buffer.from(`${dav.username}:${wrong}`).toString('base64');
  const stored = await storedText(h);
  for (const s of [wrong, basic, dav.password]) {
    t.notOk(stored.includes(s), 'not in runs, events, snapshot rows, queue jobs');
    t.notOk(h.logs.join('').includes(s), 'not in the logs');
  }
  // The good password: the same job succeeds.
  await putWebdavSecret(h.tdb.pool, h.ctx.secrets, 'hub', 'nas', { username: dav.username, password: dav.password });
  await requestRun(h.tdb.pool, job.id);
  await drain(h);
  t.equal((await h.tdb.pool.query(`select status from bastion.runs where job_id = $1 order by created_at desc limit 1`, [job.id])).rows[0].status, 'success');
});
