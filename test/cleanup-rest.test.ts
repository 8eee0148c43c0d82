/**
 * The incomplete-cleanup REST routes the way a browser (session cookie +
 * CSRF header) and a script (bearer token) use them: roles, CSRF and tokens
 * on the actions, every list filter with several values in both spellings,
 * paging that covers the queue exactly once, refusals that name the field and
 * the reason, the detail's redacted location and run summary, and the
 * setting. (test/api-cleanup.test.ts covers the basic round trip.)
 */
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { startApi } from './api-harness.ts';
import { cleanupJob, oldRun } from './cleanup-queue-kit.ts';
import { makeCleanupTask } from './factories.ts';

const api = await startApi(t);
const viewer = await api.as('viewer');
const operator = await api.as('operator');
const admin = await api.as('admin');
const robot = await api.as('operator', { via: 'token' });
const peeker = await api.as('viewer', { via: 'token' });

async function body(res: Response): Promise<any> {
  return res.status === 204 ? {} : res.json();
}

const hub = await cleanupJob(api.db);
const agent = randomUUID();
const far = await cleanupJob(api.db, { nodeId: agent });
const dav = await cleanupJob(api.db, { webdav: { base_url: 'https://dav.example/base/', secret_name: 'nas' } });
const HOUR = 3_600_000;
/** Tasks across two jobs' nodes and both target types, in every waiting order. */
const made: Array<{ id: string; job: string; node: string; type: string; status: string; next: number | null }> = [];
for (const [i, [job, status]] of ([
  [hub, 'queued'],
  [hub, 'retrying'],
  [hub, 'blocked'],
  [hub, 'done'],
  [far, 'retrying'],
  [far, 'ignored'],
  [dav, 'queued'],
  [dav, 'blocked'],
  [dav, 'abandoned'],
  [hub, 'retrying'],
  [far, 'queued'],
  [dav, 'retrying'],
] as const).entries()) {
  const run = await oldRun(api.db, job);
  const next = status === 'queued' || status === 'retrying' || status === 'blocked' ? Date.now() + (i - 5) * HOUR : null;
  await makeCleanupTask(api.db, run as never, { status, ...(next !== null ? { nextAttemptAt: new Date(next) } : {}), ...(status === 'blocked' ? { kind: 'auth' } : {}) });
  made.push({ id: run.id, job: job.id, node: job.node_id, type: (run.target_snapshot as { target: { type: string } }).target.type, status, next });
}

t.test('list: ordered by next attempt, with the job name; every filter takes several values in both spellings', async (t) => {
  const all = await body(await viewer.get('/api/maintenance/incomplete-cleanup?page_size=100'));
  t.same([all.page, all.page_size, all.total], [1, 100, made.length]);
  const waiting = made.filter((m) => m.next !== null).sort((a, b) => a.next! - b.next!);
  t.same(all.items.slice(0, waiting.length).map((i: { run_id: string }) => i.run_id), waiting.map((m) => m.id), 'the next attempt first');
  t.ok(all.items.slice(waiting.length).every((i: { next_attempt_at: unknown }) => i.next_attempt_at === null), 'tasks without a next attempt last');
  const first = all.items.find((i: { run_id: string }) => i.run_id === made[0]!.id);
  t.match(first, { job_id: hub.id, job_name: hub.name, node_id: 'hub', target_type: 'local_dir', status: 'queued', attempts: 0, last_error: null });
  const cases: Array<[string, (m: (typeof made)[number]) => boolean]> = [
    ['status=retrying&status=blocked', (m) => m.status === 'retrying' || m.status === 'blocked'],
    ['status[]=retrying&status[]=blocked', (m) => m.status === 'retrying' || m.status === 'blocked'],
    ['target_type=webdav', (m) => m.type === 'webdav'],
    [`node_id=${agent}&node_id=hub&target_type[]=local_dir`, (m) => m.type === 'local_dir'],
    [`node_id[]=${agent}`, (m) => m.node === agent],
    [`job_id=${hub.id}&job_id=${dav.id}&status=queued`, (m) => (m.job === hub.id || m.job === dav.id) && m.status === 'queued'],
    [`job_id=${far.id}&status=done`, () => false],
  ];
  for (const [q, pred] of cases) {
    const b = await body(await viewer.get(`/api/maintenance/incomplete-cleanup?${q}&page_size=100`));
    t.same(b.items.map((i: { run_id: string }) => i.run_id).sort(), made.filter(pred).map((m) => m.id).sort(), q);
    t.equal(b.total, made.filter(pred).length, `${q}: total`);
  }
});

t.test('paging: pages are disjoint and cover the queue; the total stays', async (t) => {
  const seen: string[] = [];
  for (let page = 1; ; page++) {
    const b = await body(await viewer.get(`/api/maintenance/incomplete-cleanup?page=${page}&page_size=5`));
    t.equal(b.total, made.length);
    t.equal(b.page, page);
    if (b.items.length === 0) break;
    seen.push(...b.items.map((i: { run_id: string }) => i.run_id));
  }
  t.equal(seen.length, made.length, 'each task once');
  t.same([...seen].sort(), made.map((m) => m.id).sort());
  const d = await body(await viewer.get('/api/maintenance/incomplete-cleanup'));
  t.same([d.page, d.page_size, d.items.length], [1, 20, made.length], 'defaults: page 1, 20 per page');
  t.equal((await body(await viewer.get('/api/maintenance/incomplete-cleanup?page_size=500'))).page_size, 100, 'above 100 is served as 100');
});

t.test('list refusals name the field and the reason', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['status=bogus', 'status.0', 'unsupported_value'],
    ['status=queued&status=stuck', 'status.1', 'unsupported_value'],
    ['target_type=s3', 'target_type.0', 'unsupported_value'],
    ['node_id=../etc', 'node_id.0', 'invalid'],
    ['job_id=not-a-uuid', 'job_id.0', 'invalid_format'],
    ['page=0', 'page', 'too_small'],
    ['page=-3', 'page', 'too_small'],
    ['page=x', 'page', 'invalid_format'],
    ['page=1.5', 'page', 'invalid_format'],
    ['page_size=0', 'page_size', 'too_small'],
    ['page_size=ten', 'page_size', 'invalid_format'],
    ['limit=5', 'limit', 'unknown_field'],
  ];
  for (const [q, field, reason] of cases) {
    const res = await viewer.get(`/api/maintenance/incomplete-cleanup?${q}`);
    t.equal(res.status, 400, q);
    t.match(await body(res), { error: 'invalid_input', details: { field, reason } }, q);
  }
});

t.test('detail: the task with its location redacted, its run and its events', async (t) => {
  const run = await oldRun(api.db, dav);
  // A location with credentials should never have been stored; if one were (a hand edit), the API still does not show them.
  const leaky = { node_id: 'hub', target: { type: 'webdav', base_url: 'https://alice:s3cr3t@dav.example/base/?sig=abc#frag', secret_name: 'nas' } };
  await makeCleanupTask(api.db, { ...run, target_snapshot: leaky } as never, { status: 'retrying', kind: 'network' });
  const res = await viewer.get(`/api/maintenance/incomplete-cleanup/${run.id}`);
  t.equal(res.status, 200);
  const b = await body(res);
  t.equal(b.task.target_snapshot.target.base_url, 'https://dav.example/base/');
  t.notOk(JSON.stringify(b).includes('s3cr3t'));
  t.match(b.task, { run_id: run.id, job_name: dav.name, status: 'retrying', last_error_kind: 'network', target_snapshot_source: 'run', executor_node_id: 'hub' });
  t.match(b.run, { status: 'failed', error_code: 'source_not_found' });
  t.same(b.events.map((e: { kind: string }) => e.kind), ['queued']);
  t.equal(b.events_truncated, false);
  const missing = await viewer.get(`/api/maintenance/incomplete-cleanup/${randomUUID()}`);
  t.equal(missing.status, 404);
  t.match(await body(missing), { error: 'cleanup_task_not_found' });
  t.match(await body(await viewer.get('/api/maintenance/incomplete-cleanup/nope')), { error: 'invalid_input', details: { field: 'run_id' } });
});

t.test('actions: operators with a session need the CSRF header; tokens do not; viewers are refused', async (t) => {
  const r = made.find((m) => m.status === 'blocked' && m.type === 'local_dir')!;
  const path = `/api/maintenance/incomplete-cleanup/${r.id}`;
  let res = await operator.post(`${path}/ignore`, { reason: 'look later' }, { csrf: false });
  t.equal(res.status, 401);
  t.match(await body(res), { error: 'invalid_csrf' });
  t.equal((await body(await viewer.get(path))).task.status, 'blocked', 'nothing changed');
  res = await viewer.post(`${path}/ignore`, { reason: 'x' });
  t.equal(res.status, 403);
  t.equal((await body(res)).error, 'forbidden');
  res = await peeker.post(`${path}/retry-now`);
  t.equal(res.status, 403, 'a viewer token is refused too');
  res = await robot.post(`${path}/ignore`, { reason: '  keep the partial data\nfor forensics  ' });
  t.equal(res.status, 200, 'an operator token needs no CSRF header');
  t.match(await body(res), { task: { status: 'ignored', ignore_reason: 'keep the partial data for forensics', ignored_by: robot.userId } });
  res = await operator.post(`${path}/ignore`, { reason: 'again' });
  t.match(await body(res), { task: { status: 'ignored', ignore_reason: 'keep the partial data for forensics' } }, 'ignoring an ignored task changes nothing');
  res = await operator.post(`${path}/unignore`);
  t.match(await body(res), { task: { status: 'queued', attempts: 0, ignored_at: null } });
  res = await operator.post(`${path}/retry-now`);
  t.equal(res.status, 409);
  t.match(await body(res), { error: 'not_retryable', details: { status: 'queued' } });
  res = await operator.post(`${path}/ignore`, { reason: 'x', extra: true });
  t.match(await body(res), { error: 'invalid_input', details: { field: 'extra', reason: 'unknown_field' } });
  res = await operator.post(`${path}/ignore`, { reason: 'x'.repeat(10_001) });
  t.equal(res.status, 400, 'an absurd reason is refused before SQL');
  const done = made.find((m) => m.status === 'done')!;
  t.match(await body(await robot.post(`/api/maintenance/incomplete-cleanup/${done.id}/retry-now`)), { error: 'not_retryable' });
  t.match(await body(await robot.post(`/api/maintenance/incomplete-cleanup/${randomUUID()}/unignore`)), { error: 'cleanup_task_not_found' });
  const { rows } = await api.pool.query<{ n: number }>("select count(*)::int as n from graphile_worker.jobs where key = 'incomplete-cleanup:' || $1 and run_at <= now() + interval '1 second'", [r.id]);
  t.equal(rows[0]!.n, 1, 'the unignored task is due at once');
});

t.test('the setting: everyone reads it with the queue counts, admins change it', async (t) => {
  const b = await body(await viewer.get('/api/settings/incomplete-cleanup'));
  t.equal(b.incomplete_cleanup_days, 7, 'default 7 days');
  t.equal(b.enabled, true);
  t.equal(Object.values(b.counts as Record<string, number>).reduce((a, n) => a + n, 0), made.length + 1);
  t.equal((await operator.put('/api/settings/incomplete-cleanup', { days: 1 })).status, 403);
  t.equal((await admin.put('/api/settings/incomplete-cleanup', { days: 0 })).status, 200);
  t.match(await body(await viewer.get('/api/settings/incomplete-cleanup')), { incomplete_cleanup_days: 0, enabled: false });
  t.match(await body(await admin.put('/api/settings/incomplete-cleanup', { days: 3651 })), { error: 'invalid_input', details: { field: 'days', reason: 'too_big' } });
  t.match(await body(await admin.put('/api/settings/incomplete-cleanup', { days: '7' })), { error: 'invalid_input', details: { field: 'days' } });
  t.match(await body(await admin.put('/api/settings/incomplete-cleanup', { days: 7 })), { incomplete_cleanup_days: 7, enabled: true });
  const { rows } = await api.pool.query('select updated_by from bastion.settings');
  t.equal(rows[0].updated_by, admin.userId, 'who changed it is recorded');
});

t.test('GraphQL: the mutations are the SQL functions, with the same rules; the queue is readable', async (t) => {
  const run = await oldRun(api.db, hub);
  await makeCleanupTask(api.db, run as never, { status: 'abandoned', attempts: 20 });
  const gql = await robot.graphql(
    'mutation($id: UUID!) { retryIncompleteCleanupNow(input: { runId: $id }) { result { status attempts runId } } }',
    { id: run.id },
  );
  t.same(gql.body.data?.retryIncompleteCleanupNow?.result, { status: 'queued', attempts: 0, runId: run.id });
  const again = await robot.graphql('mutation($id: UUID!) { retryIncompleteCleanupNow(input: { runId: $id }) { result { status } } }', { id: run.id });
  t.equal(again.body.errors?.[0]?.extensions?.['code'], 'not_retryable');
  const viewerTry = await peeker.graphql('mutation($id: UUID!) { ignoreIncompleteCleanup(input: { runId: $id, reason: "x" }) { result { status } } }', { id: run.id });
  t.equal(viewerTry.body.errors?.[0]?.extensions?.['code'], 'forbidden');
  const read = await peeker.graphql('query($id: UUID!) { incompleteCleanupTaskByRunId(runId: $id) { status incompleteCleanupEventsByRunId(orderBy: SEQ_ASC, first: 50) { nodes { seq kind } } } }', { id: run.id });
  t.same(read.body.data?.incompleteCleanupTaskByRunId?.incompleteCleanupEventsByRunId?.nodes?.map((n: { kind: string }) => n.kind), ['queued', 'retry_now']);
});
