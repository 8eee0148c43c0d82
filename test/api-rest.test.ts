/**
 * The REST routes of the seeds (snapshots, delete tasks, jobs, runs,
 * archive, secrets): shapes and status codes, and hostile input.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import t from 'tap';
import { parseSecretKey, SecretKeyProvider } from '../engine/secrets/secret-key.ts';
import { startApi } from './api-harness.ts';
import { makeJob, makeSnapshot, makeSpec } from './factories.ts';

t.test('snapshots: list with filters and cursor, detail, pin, delete, bulk delete, delete task and its events, retry/ignore/unignore', async (t) => {
  const api = await startApi(t);
  const operator = await api.as('operator');
  const viewer = await api.as('viewer');
  const job = await makeJob(api.db);
  const base = Date.now() - 3600e3;
  const snaps = [];
  for (let i = 0; i < 5; i++) snaps.push(await makeSnapshot(api.db, job, { endedAt: new Date(base + i * 60e3) }));
  await makeSnapshot(api.db, job, { status: 'deleted', endedAt: new Date(base - 60e3) });

  const page1 = (await (await viewer.get(`/api/jobs/${job.id}/snapshots?limit=2`)).json()) as { items: Array<{ run_id: string }>; next_cursor: string | null };
  t.same(page1.items.map((s) => s.run_id), [snaps[4]?.run_id, snaps[3]?.run_id], 'newest first');
  t.type(page1.next_cursor, 'string');
  const page2 = (await (await viewer.get(`/api/jobs/${job.id}/snapshots?limit=2&cursor=${page1.next_cursor}`)).json()) as { items: Array<{ run_id: string }> };
  t.same(page2.items.map((s) => s.run_id), [snaps[2]?.run_id, snaps[1]?.run_id]);
  const present = (await (await viewer.get(`/api/jobs/${job.id}/snapshots?status=present&status[]=error`)).json()) as { items: unknown[] };
  t.equal(present.items.length, 5, 'repeatable status filter');
  const bad = await viewer.get(`/api/jobs/${job.id}/snapshots?cursor=%%%`);
  t.equal(bad.status, 400);
  t.match(await bad.json(), { error: 'invalid_cursor', details: { field: 'cursor' } });
  t.match(await (await viewer.get(`/api/jobs/${job.id}/snapshots?status=gone`)).json(), { error: 'invalid_input' });
  t.match(await (await viewer.get(`/api/jobs/${job.id}/snapshots?limit=abc`)).json(), { error: 'invalid_input', details: { field: 'limit' } });
  t.match(await (await viewer.get(`/api/jobs/${job.id}/snapshots?bogus=1`)).json(), { error: 'invalid_input', details: { reason: 'unknown_field' } });
  t.match(await (await viewer.get(`/api/jobs/${randomUUID()}/snapshots`)).json(), { error: 'job_not_found' });
  t.match(await (await viewer.get(`/api/jobs/not-a-uuid/snapshots`)).json(), { error: 'invalid_input', details: { field: 'job_id' } });

  const s0 = snaps[0]?.run_id as string;
  const detail = (await (await viewer.get(`/api/jobs/${job.id}/snapshots/${s0}`)).json()) as { snapshot: { run_id: string; status: string }; delete_task: unknown };
  t.match(detail, { snapshot: { run_id: s0, status: 'present' }, delete_task: null });
  t.match(await (await viewer.get(`/api/jobs/${job.id}/snapshots/${randomUUID()}`)).json(), { error: 'snapshot_not_found' });

  const pin = await operator.post(`/api/jobs/${job.id}/snapshots/${s0}/pin`, { reason: 'legal hold 🔒' });
  t.equal(pin.status, 200);
  t.match(await pin.json(), { snapshot: { pinned: true, pin_reason: 'legal hold 🔒' } });
  const refused = await operator.post(`/api/jobs/${job.id}/snapshots/${s0}/delete`);
  t.equal(refused.status, 409);
  t.match(await refused.json(), { error: 'snapshot_pinned' });
  const forced = await operator.post(`/api/jobs/${job.id}/snapshots/${s0}/delete?force=true`);
  t.match(await forced.json(), { run_id: s0, outcome: 'enqueued' });
  t.match(await (await operator.post(`/api/jobs/${job.id}/snapshots/${snaps[1]?.run_id}/unpin`)).json(), { snapshot: { pinned: false } });

  const task = (await (await viewer.get(`/api/jobs/${job.id}/snapshots/${s0}/delete-task`)).json()) as { task: { status: string; run_id: string } };
  t.match(task, { task: { run_id: s0, status: 'queued' } });
  const events = (await (await viewer.get(`/api/jobs/${job.id}/snapshots/${s0}/delete-events`)).json()) as { items: Array<{ seq: number; kind: string }> };
  t.match(events.items, [{ seq: 1, kind: 'queued' }]);
  t.match(await (await viewer.get(`/api/jobs/${job.id}/snapshots/${snaps[1]?.run_id}/delete-task`)).json(), { error: 'delete_task_not_found' });
  t.match(await (await operator.post(`/api/jobs/${job.id}/snapshots/${s0}/delete/retry-now`)).json(), { error: 'not_retryable' }, 'queued is not retryable');
  t.match(await (await operator.post(`/api/jobs/${job.id}/snapshots/${s0}/delete/ignore`, { reason: 'x'.repeat(300) })).json(), { task: { status: 'ignored' } });
  t.match(await (await operator.post(`/api/jobs/${job.id}/snapshots/${s0}/delete/unignore`)).json(), { task: { status: 'queued' } });

  const bulkEmpty = await operator.post(`/api/jobs/${job.id}/snapshots/delete`, { run_ids: [' ', ''] });
  t.match(await bulkEmpty.json(), { error: 'empty_run_ids' });
  const bulkBad = await operator.post(`/api/jobs/${job.id}/snapshots/delete`, { run_ids: ["'; delete from bastion.run_artifacts; --"] });
  t.equal(bulkBad.status, 400);
  const bulk = await operator.post(`/api/jobs/${job.id}/snapshots/delete`, { run_ids: [snaps[2]?.run_id, snaps[3]?.run_id, snaps[3]?.run_id] });
  t.match(await bulk.json(), { items: [{ outcome: 'enqueued' }, { outcome: 'enqueued' }] });
  const tasks = (await (await viewer.get(`/api/maintenance/delete-tasks?job_id=${job.id}`)).json()) as { items: unknown[] };
  t.equal(tasks.items.length, 3);
  t.equal(await (await api.pool.query(`select count(*)::int as n from bastion.run_artifacts where status = 'present'`)).rows[0]?.n, 2, 'the database agrees');
});

t.test('jobs and runs: create, list, update with a concurrency check, run now, runs list, archive with cascade, delete', async (t) => {
  const api = await startApi(t);
  const admin = await api.as('admin');
  const created = await admin.post('/api/jobs', { name: 'Documents 📄', spec: makeSpec(), schedule: '0 3 * * *', schedule_timezone: 'Europe/Paris' });
  t.equal(created.status, 201);
  const { job } = (await created.json()) as { job: { id: string; updated_at: string; name: string } };
  t.equal(job.name, 'Documents 📄');
  t.match(await (await admin.post('/api/jobs', { name: 'x', spec: { v: 1 } })).json(), { error: 'invalid_spec', details: { field: /^spec/ } });
  t.match(await (await admin.post('/api/jobs', { name: 'y', spec: makeSpec(), schedule: 'every tuesday' })).json(), { error: 'invalid_schedule' });
  t.match(await (await admin.post('/api/jobs', { name: 'Documents 📄', spec: makeSpec() })).json(), { error: 'job_name_taken' });
  const list = (await (await admin.get('/api/jobs')).json()) as { items: Array<{ id: string }> };
  t.same(list.items.map((j) => j.id), [job.id]);
  t.match(await (await admin.get(`/api/jobs/${job.id}`)).json(), { job: { id: job.id, schedule: '0 3 * * *' } });

  const stale = await admin.put(`/api/jobs/${job.id}`, { name: 'Docs', spec: makeSpec(), expected_updated_at: '2000-01-01T00:00:00Z' });
  t.equal(stale.status, 409);
  t.match(await stale.json(), { error: 'job_changed' });
  const updated = await admin.put(`/api/jobs/${job.id}`, { name: 'Docs', spec: makeSpec(), expected_updated_at: job.updated_at });
  t.match(await updated.json(), { job: { name: 'Docs', schedule: null } });

  const run = await admin.post(`/api/jobs/${job.id}/run`);
  t.equal(run.status, 201);
  const { run: r } = (await run.json()) as { run: { id: string; status: string } };
  t.equal(r.status, 'queued');
  t.match(await (await admin.get(`/api/jobs/${job.id}/runs?status=queued`)).json(), { items: [{ id: r.id }], next: null });
  t.match(await (await admin.get(`/api/runs/${r.id}`)).json(), { run: { id: r.id }, events: [] });
  t.match(await (await admin.get(`/api/runs/${r.id}/events?after_seq=0`)).json(), { items: [] });
  t.match(await (await admin.get(`/api/runs?status=nope`)).json(), { error: 'invalid_input', details: { field: 'status' } });
  t.match(await (await admin.get(`/api/runs?before_id=${r.id}`)).json(), { error: 'invalid_input', details: { field: 'before_created_at' } });

  const old = await makeJob(api.db);
  await makeSnapshot(api.db, old);
  await makeSnapshot(api.db, old, { pinned: true });
  const archived = await admin.post(`/api/jobs/${old.id}/archive?cascade_snapshots=true`);
  t.match(await archived.json(), { job_id: old.id, archived: true, enqueued: 1, skipped_pinned: 1 });
  t.match(await (await admin.post(`/api/jobs/${old.id}/unarchive`)).json(), { job: { id: old.id, archived_at: null } });
  t.match(await (await admin.del(`/api/jobs/${old.id}`)).json(), { error: 'invalid_input', details: { field: 'mode' } }, 'the delete mode is a choice, not a default');
  const deleted = await admin.del(`/api/jobs/${job.id}?mode=keep_data`);
  t.match(await deleted.json(), { job_id: job.id, mode: 'keep_data', job_deleted: true });
  t.match(await (await admin.get(`/api/jobs/${job.id}`)).json(), { error: 'job_not_found' });
});

t.test('secrets: stored sealed, listed without values, deleted', async (t) => {
  const key = parseSecretKey(randomBytes(32).toString('base64'), 'test');
  const api = await startApi(t, { secretKeys: SecretKeyProvider.fromKey(key) });
  const admin = await api.as('admin');
  const put = await admin.put('/api/secrets/webdav/nas', { username: 'backup', password: 'hunter2-🔑' });
  t.match(await put.json(), { node_id: 'hub', kind: 'webdav', name: 'nas', created: true });
  t.match(await (await admin.put('/api/secrets/webdav/nas', { username: 'backup', password: 'new' })).json(), { created: false });
  const rows = await api.pool.query(`select * from bastion_private.secrets`);
  t.notMatch(JSON.stringify(rows.rows), 'hunter2', 'never stored in clear');
  const list = await admin.get('/api/secrets');
  const text = await list.text();
  t.match(JSON.parse(text), { items: [{ node_id: 'hub', kind: 'webdav', name: 'nas' }] });
  t.notMatch(text, /password|hunter2/);
  t.match(await (await admin.put('/api/secrets/webdav/nas', { username: 'a:b', password: 'p' })).json(), { error: 'invalid_secret', details: { field: 'username' } });
  t.match(await (await admin.put('/api/nodes/not-a-node/secrets/webdav/nas', { username: 'u', password: 'p' })).json(), { error: 'invalid_input', details: { field: 'node_id' } });
  t.equal((await admin.del('/api/nodes/hub/secrets/webdav/nas')).status, 204);
  t.match(await (await admin.del('/api/nodes/hub/secrets/webdav/nas')).json(), { error: 'secret_not_found' });
});

t.test('hostile REST input: body limits, malformed JSON, wrong types, huge and odd values; the server keeps serving', async (t) => {
  const api = await startApi(t);
  const admin = await api.as('admin');
  const raw = (path: string, body: string | Uint8Array, headers: Record<string, string> = {}) =>
    fetch(`${api.base}${path}`, { method: 'POST', headers: { cookie: admin.cookie as string, 'x-csrf-token': admin.csrf as string, 'content-type': 'application/json', ...headers }, body });
  const tooBig = await raw('/api/tokens', JSON.stringify({ name: 'x'.repeat(70_000), role: 'viewer' }));
  t.equal(tooBig.status, 413);
  t.match(await tooBig.json(), { error: 'payload_too_large', details: { limit_bytes: 65536 } });
  const login = await fetch(`${api.base}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'x'.repeat(20_000) });
  t.equal(login.status, 413, 'auth routes have their own, smaller limit');
  t.match(await (await raw('/api/tokens', '{"name": "a",')).json(), { error: 'invalid_json' });
  t.match(await (await raw('/api/tokens', Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))).json(), { error: 'invalid_json', details: { reason: 'invalid_encoding' } });
  t.match(await (await raw('/api/tokens', 'name=a', { 'content-type': 'application/x-www-form-urlencoded' })).json(), { error: 'invalid_json', details: { reason: 'unsupported_media_type' } }, 'no form posts');
  t.match(await (await raw('/api/tokens', JSON.stringify({ name: 42, role: 'viewer' }))).json(), { error: 'invalid_input', details: { field: 'name', reason: 'invalid_type' } });
  t.match(await (await raw('/api/tokens', JSON.stringify({ name: 'a', role: ['admin'] }))).json(), { error: 'invalid_input', details: { field: 'role' } });
  t.match(await (await raw('/api/tokens', JSON.stringify([]))).json(), { error: 'invalid_input' });
  t.match(await (await raw('/api/tokens', JSON.stringify({ name: 'a', role: 'viewer', __proto__: { admin: true }, constructor: 1 }))).json(), { error: 'invalid_input', details: { reason: 'unknown_field' } });
  t.match(await (await raw('/api/tokens', JSON.stringify({ name: 'bad\u0000name', role: 'viewer' }))).json(), { error: 'invalid_input' }, 'NUL refused, not a 500');
  const odd = await raw('/api/tokens', JSON.stringify({ name: "Robert'); DROP TABLE bastion.users;-- 🦀 名前", role: 'viewer' }));
  t.equal(odd.status, 201);
  t.match(await (await admin.get('/api/tokens')).json(), { items: [{ name: "Robert'); DROP TABLE bastion.users;-- 🦀 名前" }] });
  t.equal((await admin.get(`/api/users/${'a'.repeat(3000)}`)).status, 400);
  t.equal((await admin.get(`/api/users/${'a'.repeat(9000)}`)).status, 431, 'uWS refuses an overlong request line itself');
  t.equal((await api.fetch('/api/nope')).status, 404);
  t.equal((await api.fetch('/healthz')).status, 200, 'still serving');
  t.equal((await admin.get('/api/users')).status, 200);
});
