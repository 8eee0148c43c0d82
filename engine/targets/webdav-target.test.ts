import t from 'tap';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import http from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import { WebdavError } from '../../core/webdav-errors.ts';
import { startFaultProxy } from '../../test/fault-proxy.ts';
import { runDirConformance } from '../../test/run-dir-conformance.ts';
import { rcloneAvailable, startWebdavServer } from '../../test/webdav-server.ts';
import type { WebdavServerKind } from '../../test/webdav-server.ts';
import { cleanupIncompleteRunDir, deleteRunDir, runDirPath, webdavFailureFields, WebdavRunDir } from './webdav-target.ts';

const FAST = { retry: { attempts: 2, baseDelayMs: 10 } };

async function catchError(p: Promise<unknown>): Promise<WebdavError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof WebdavError) return err;
    throw err;
  }
  throw new Error('expected a WebdavError, got success');
}

const kinds: WebdavServerKind[] = ['webdav-server', 'rclone'];
for (const kind of kinds) {
  t.test(`RunDir conformance against ${kind}`, { skip: kind === 'rclone' && !rcloneAvailable() ? 'rclone not on PATH' : false }, async (t) => {
    const dav = await startWebdavServer(t, { kind });
    // A base path below the server root that does not exist yet: the first put creates it.
    const baseUrl = dav.url + 'backups/bastion%20test/';
    const open = (tt: { teardown(fn: () => unknown): void }, ids: { jobId: string; runId: string }) => {
      const rd = new WebdavRunDir({ baseUrl, credentials: dav, ...ids, client: FAST });
      tt.teardown(() => rd.close());
      return Promise.resolve(rd);
    };
    await runDirConformance(t, open, open, { secrets: [dav.password], controlCharacterNames: kind !== 'rclone' });
  });
}

t.test('job and run ids must be UUIDs', async (t) => {
  const good = randomUUID();
  for (const bad of ['../x', '', 'ABCDEF00-0000-4000-8000-000000000000', `${good}/..`, ' ' + good, 'x'.repeat(36)]) {
    for (const [jobId, runId] of [[bad, good], [good, bad]] as const) {
      let err: unknown;
      try {
        new WebdavRunDir({ baseUrl: 'http://127.0.0.1:1/', credentials: { username: 'u', password: 'p' }, jobId, runId });
      } catch (e) {
        err = e;
      }
      t.ok(err instanceof WebdavError && err.kind === 'config' && err.reason === 'invalid_path', JSON.stringify([jobId, runId]));
    }
  }
  t.equal(runDirPath(good, good), `${good}/${good}/`);
  const e = await catchError(deleteRunDir('http://127.0.0.1:1/', { username: 'u', password: 'p' }, '../../etc', good));
  t.equal(e.kind, 'config');
  t.type(e.durationMs, 'number');
});

t.test('collections are created once per directory; location is redacted', async (t) => {
  const dav = await startWebdavServer(t);
  const proxy = await startFaultProxy(t, dav.url);
  const jobId = randomUUID();
  const runId = randomUUID();
  const baseWithCreds = proxy.url.replace('http://', `http://${dav.user}:${encodeURIComponent(dav.password)}@`);
  const rd = new WebdavRunDir({ baseUrl: baseWithCreds, credentials: dav, jobId, runId });
  t.teardown(() => rd.close());
  t.equal(rd.location, `${proxy.url}${jobId}/${runId}/`);
  for (let i = 0; i < 10; i++) await rd.putBytes(`data/a/b/f${i}`, Buffer.from('x'));
  await rd.putBytes('manifest.json', Buffer.from('{}'));
  const mkcols = proxy.requests.filter((r) => r.method === 'MKCOL').map((r) => `${r.path} ${r.status}`);
  // run dir (409: job missing) → job → run dir, then data, data/a, data/a/b: one MKCOL per new collection
  t.same(mkcols, [`/${jobId}/${runId}/ 409`, `/${jobId}/ 201`, `/${jobId}/${runId}/ 201`, `/${jobId}/${runId}/data/ 201`, `/${jobId}/${runId}/data/a/ 201`, `/${jobId}/${runId}/data/a/b/ 201`]);
  t.equal(proxy.requests.filter((r) => r.method === 'PUT').length, 11, 'one PUT per file, no retries');
  t.ok(existsSync(join(dav.dir, jobId, runId, 'data', 'a', 'b', 'f9')));
  t.equal(await rd.openStream(), null, 'WebDAV needs staged files');
});

t.test('resume: HEAD tells what is stored; a failed part upload is retried on the next put', async (t) => {
  const dav = await startWebdavServer(t);
  const proxy = await startFaultProxy(t, dav.url);
  const ids = { jobId: randomUUID(), runId: randomUUID() };
  const first = new WebdavRunDir({ baseUrl: proxy.url, credentials: dav, ...ids, client: { retry: { attempts: 1 } } });
  t.teardown(() => first.close());
  await first.putBytes('payload.part000001', Buffer.alloc(1000, 1));
  proxy.inject({ method: 'PUT', path: new RegExp(`${ids.runId}/payload.part000002$`), times: 1, action: { kind: 'status', status: 503 } });
  const e = await catchError(first.putBytes('payload.part000002', Buffer.alloc(500, 2)));
  t.equal(e.kind, 'network');
  const second = new WebdavRunDir({ baseUrl: proxy.url, credentials: dav, ...ids });
  t.teardown(() => second.close());
  proxy.clearRequests();
  t.equal(await second.storedSize('payload.part000001'), 1000, 'stored part: the format code skips it');
  t.equal(await second.storedSize('payload.part000002'), null, 'failed part: the format code re-sends it');
  await second.putBytes('payload.part000002', Buffer.alloc(500, 2));
  t.same(
    proxy.requests.filter((r) => r.method === 'PUT').map((r) => r.path),
    [`/${ids.jobId}/${ids.runId}/payload.part000002`],
    're-sent only what was missing',
  );
});

for (const kind of kinds) {
  t.test(`[${kind}] deleteRunDir on real data: deleted, then not_found`, { skip: kind === 'rclone' && !rcloneAvailable() ? 'rclone not on PATH' : false }, async (t) => {
    const dav = await startWebdavServer(t, { kind });
    const jobId = randomUUID();
    const runId = randomUUID();
    const other = randomUUID();
    for (const r of [runId, other]) {
      const rd = new WebdavRunDir({ baseUrl: dav.url, credentials: dav, jobId, runId: r });
      await rd.putBytes('payload.part000001', Buffer.alloc(100));
      await rd.putBytes('data/x/y', Buffer.alloc(10));
      await rd.putBytes('complete.json', Buffer.from('{}'));
      rd.close();
    }
    const res = await deleteRunDir(dav.url, dav, jobId, runId);
    t.equal(res.outcome, 'deleted');
    t.equal(res.strategy, 'delete');
    t.type(res.durationMs, 'number');
    t.equal(res.url, `${dav.url}${jobId}/${runId}/`);
    t.notOk(existsSync(join(dav.dir, jobId, runId)), 'run dir gone');
    t.ok(existsSync(join(dav.dir, jobId, other, 'complete.json')), 'a sibling run is untouched');
    t.equal((await deleteRunDir(dav.url, dav, jobId, runId)).outcome, 'not_found');
    t.equal((await deleteRunDir(dav.url, dav, randomUUID(), randomUUID())).outcome, 'not_found');
  });

  t.test(`[${kind}] cleanupIncompleteRunDir outcomes`, { skip: kind === 'rclone' && !rcloneAvailable() ? 'rclone not on PATH' : false }, async (t) => {
    const dav = await startWebdavServer(t, { kind });
    const jobId = randomUUID();
    const complete = randomUUID();
    const partial = randomUUID();
    const c = new WebdavRunDir({ baseUrl: dav.url, credentials: dav, jobId, runId: complete });
    await c.putBytes('payload.part000001', Buffer.alloc(10));
    await c.putBytes('manifest.json', Buffer.from('{}'));
    await c.putBytes('complete.json', Buffer.from('{}'));
    c.close();
    const p = new WebdavRunDir({ baseUrl: dav.url, credentials: dav, jobId, runId: partial });
    await p.putBytes('payload.part000001', Buffer.alloc(10));
    await p.putBytes('manifest.json', Buffer.from('{}'));
    p.close();

    const skip = await cleanupIncompleteRunDir(dav.url, dav, jobId, complete);
    t.equal(skip.outcome, 'skip_complete');
    t.same((await readdir(join(dav.dir, jobId, complete))).sort(), ['complete.json', 'manifest.json', 'payload.part000001'], 'nothing deleted');
    const del = await cleanupIncompleteRunDir(dav.url, dav, jobId, partial);
    t.equal(del.outcome, 'deleted');
    t.notOk(existsSync(join(dav.dir, jobId, partial)));
    t.equal((await cleanupIncompleteRunDir(dav.url, dav, jobId, partial)).outcome, 'skip_not_found');
    t.equal((await cleanupIncompleteRunDir(dav.url, dav, randomUUID(), randomUUID())).outcome, 'skip_not_found', 'job collection missing too');
  });
}

t.test('deleteRunDir through a server refusing recursive DELETE (405) walks the tree', async (t) => {
  const dav = await startWebdavServer(t);
  const proxy = await startFaultProxy(t, dav.url);
  const jobId = randomUUID();
  const runId = randomUUID();
  const rd = new WebdavRunDir({ baseUrl: dav.url, credentials: dav, jobId, runId });
  t.teardown(() => rd.close());
  for (const n of ['payload.part000001', 'payload.part000002', 'data/a b/c', 'data/d/e/f']) await rd.putBytes(n, Buffer.from(n));
  // refuse the recursive DELETE of the run collection once; the walk's own DELETEs pass
  proxy.inject({ method: 'DELETE', path: `/${jobId}/${runId}/`, times: 1, action: { kind: 'status', status: 405, body: 'recursive delete disabled' } });
  const res = await deleteRunDir(proxy.url, dav, jobId, runId);
  t.equal(res.outcome, 'deleted');
  t.equal(res.strategy, 'walk');
  t.equal(res.deletedEntries, 4 + 4, 'four files, four sub-collections (data, a b, d, d/e)');
  t.notOk(existsSync(join(dav.dir, jobId, runId)));
});

t.test('maintenance failures carry kind, status, redacted URL and duration', async (t) => {
  const dav = await startWebdavServer(t, { password: 'Very-Secret-pw-7' });
  const proxy = await startFaultProxy(t, dav.url);
  const jobId = randomUUID();
  const runId = randomUUID();

  const wrong = await catchError(deleteRunDir(proxy.url, { username: dav.user, password: 'Wrong-pw-8' }, jobId, runId));
  t.equal(wrong.kind, 'auth');
  t.equal(wrong.status, 401);
  t.equal(wrong.url, `${proxy.url}${jobId}/${runId}/`);
  t.type(wrong.durationMs, 'number');
  const f = webdavFailureFields(wrong);
  t.equal(f['error_kind'], 'auth');
  t.equal(f['http_status'], 401);
  t.equal(f['http_method'], 'DELETE');
  t.notMatch(JSON.stringify(f) + wrong.message, /Wrong-pw-8|Very-Secret-pw-7/);

  proxy.inject({ method: 'DELETE', action: { kind: 'status', status: 503, headers: { 'retry-after': '120' } } });
  const busy = await catchError(deleteRunDir(proxy.url, dav, jobId, runId, FAST));
  t.equal(busy.kind, 'network');
  t.equal(busy.status, 503);
  t.equal(busy.retryAfterSeconds, 120, 'the queue can honour the server');
  t.equal(webdavFailureFields(busy)['retry_after_secs'], 120);
  proxy.clearRules();

  proxy.inject({ method: 'HEAD', action: { kind: 'status', status: 403 } });
  const forbidden = await catchError(cleanupIncompleteRunDir(proxy.url, dav, jobId, runId, FAST));
  t.equal(forbidden.kind, 'auth');
  t.equal(forbidden.method, 'HEAD');
  proxy.clearRules();

  proxy.inject({ method: 'DELETE', action: { kind: 'status', status: 400 } });
  t.equal((await catchError(deleteRunDir(proxy.url, dav, jobId, runId, FAST))).kind, 'http');
  proxy.clearRules();

  const s = http.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const addr = s.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  await new Promise<void>((r) => s.close(() => r()));
  const refused = await catchError(deleteRunDir(`http://127.0.0.1:${addr.port}/`, dav, jobId, runId, FAST));
  t.equal(refused.kind, 'network');
  t.equal(refused.reason, 'connection');

  const missing = await catchError(deleteRunDir(proxy.url, undefined as never, jobId, runId));
  t.equal(missing.kind, 'config');
  const badUrl = await catchError(deleteRunDir('http://u:Very-Secret-pw-7@[::1', dav, jobId, runId));
  t.equal(badUrl.kind, 'config');
  t.notMatch(badUrl.message, /Very-Secret-pw-7/);
});
