import t from 'tap';
import { ERRORS } from './errors.ts';
import {
  classifyWebdavStatus,
  cleanWebdavMessage,
  DEFAULT_RETRY_POLICY,
  isRetriableStatus,
  parseRetryAfter,
  retryDelayMs,
  scrubSecrets,
  WebdavError,
} from './webdav-errors.ts';

t.test('status → kind follows DESIGN §6', async (t) => {
  const table: Array<[number, string]> = [
    [400, 'http'],
    [401, 'auth'],
    [403, 'auth'],
    [404, 'http'],
    [405, 'http'],
    [408, 'network'],
    [409, 'http'],
    [412, 'http'],
    [413, 'http'],
    [423, 'http'],
    [429, 'network'],
    [500, 'network'],
    [501, 'network'],
    [502, 'network'],
    [503, 'network'],
    [504, 'network'],
    [507, 'network'],
    [599, 'network'],
    [301, 'http'],
    [207, 'http'],
  ];
  for (const [status, kind] of table) t.equal(classifyWebdavStatus(status), kind, String(status));
});

t.test('in-request retry only for statuses that heal within seconds', async (t) => {
  for (const s of [408, 429, 500, 502, 503, 504, 509, 520]) t.ok(isRetriableStatus(s), String(s));
  for (const s of [400, 401, 403, 404, 405, 409, 412, 413, 423, 501, 505, 507, 508, 511, 200, 301]) t.notOk(isRetriableStatus(s), String(s));
});

t.test('parseRetryAfter reads delta-seconds and the three HTTP date forms', async (t) => {
  const now = Date.parse('2026-01-10T12:00:00Z');
  t.equal(parseRetryAfter('1', now), 1);
  t.equal(parseRetryAfter(' 120 ', now), 120);
  t.equal(parseRetryAfter('0', now), 0);
  t.equal(parseRetryAfter(['7', '9'], now), 7);
  t.equal(parseRetryAfter('Sat, 10 Jan 2026 12:00:30 GMT', now), 30);
  t.equal(parseRetryAfter('Saturday, 10-Jan-26 12:01:00 GMT', now), 60);
  t.equal(parseRetryAfter('Sat Jan 10 12:00:05 2026', now), 5);
  // a date in the past means "now"
  t.equal(parseRetryAfter('Fri, 09 Jan 2026 12:00:00 GMT', now), 0);
  // sub-second remainders round up so we never retry early
  t.equal(parseRetryAfter('Sat, 10 Jan 2026 12:00:01 GMT', now - 1), 2);
});

t.test('parseRetryAfter refuses hostile and malformed values', async (t) => {
  const now = Date.now();
  for (const v of [undefined, null, '', '-1', '1.5', '1e3', '0x10', 'soon', '99999999999', 'Sat, 10 Jan 2026 12:00:30', '2026-01-10T12:00:00Z', '12 12', 'Infinity', 'NaN', '\u0661']) {
    t.equal(parseRetryAfter(v as string | null | undefined, now), null, JSON.stringify(v));
  }
  t.equal(parseRetryAfter([], now), null);
});

t.test('retryDelayMs: exponential backoff, Retry-After honoured, long Retry-After left to the queue', async (t) => {
  const p = DEFAULT_RETRY_POLICY;
  t.equal(retryDelayMs(1, null, p), 1000);
  t.equal(retryDelayMs(2, null, p), 2000);
  t.equal(retryDelayMs(3, null, p), null, 'third failure of three attempts: stop');
  const many = { ...p, attempts: 20 };
  t.equal(retryDelayMs(5, null, many), 16_000);
  t.equal(retryDelayMs(6, null, many), 30_000);
  t.equal(retryDelayMs(19, null, many), 30_000);
  t.equal(retryDelayMs(1, 7, p), 7000, 'Retry-After wins over the backoff');
  t.equal(retryDelayMs(1, 0, p), 0);
  t.equal(retryDelayMs(1, 60, p), 60_000);
  t.equal(retryDelayMs(1, 61, p), null, 'beyond 60 s the request ends and the queue waits');
  t.equal(retryDelayMs(1, null, { ...p, attempts: 1 }), null);
});

t.test('messages are single-line, ≤ 500 bytes, cut on a character boundary, secret-free', async (t) => {
  const secret = 'pä ss:w#rd';
  const body = `Auth failed for ${secret} (${encodeURIComponent(secret)})\nGET http://bob:${secret}@h/x?sig=1 ` + '界'.repeat(300);
  const m = cleanWebdavMessage(`WebDAV GET http://h/x failed: HTTP 401; response: ${body}`, [secret]);
  t.notOk(m.includes(secret));
  t.notOk(m.includes(encodeURIComponent(secret)));
  t.notOk(m.includes('\n'));
  t.ok(Buffer.byteLength(m, 'utf8') <= 500, `${Buffer.byteLength(m, 'utf8')} bytes`);
  t.ok(m.endsWith('…'));
  t.notOk(m.includes('\uFFFD'));
  // every character of the result is a whole character of the source: 界 is 3 bytes, so the cut
  // leaves a multiple of complete characters before the ellipsis
  const beforeEllipsis = m.slice(0, -1);
  t.ok(Buffer.from(beforeEllipsis, 'utf8').toString('utf8') === beforeEllipsis);
  // 4-byte characters at the cut
  const emoji = cleanWebdavMessage('x' + '😀'.repeat(200));
  t.ok(Buffer.byteLength(emoji, 'utf8') <= 500);
  t.notOk(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/.test(emoji), 'no lone high surrogate');
  t.equal(scrubSecrets('a secret b', ['secret', '']), 'a [redacted] b');
});

t.test('WebdavError carries kind, code, status and a clean message', async (t) => {
  const e = new WebdavError('PUT http://u:pw@h/a?x=1 failed:\nHTTP 503', { kind: 'network', reason: 'status', status: 503, retryAfterSeconds: 2, method: 'PUT', url: 'http://h/a' }, ['pw']);
  t.equal(e.code, 'webdav_network');
  t.equal(e.kind, 'network');
  t.equal(e.status, 503);
  t.equal(e.retryAfterSeconds, 2);
  t.equal(e.message, 'PUT http://h/a failed: HTTP 503');
  t.ok(Object.hasOwn(ERRORS, e.code), 'code is in the catalogue');
  const b = e.toBastionError();
  t.equal(b.code, 'webdav_network');
  t.equal(b.status, 502);
  t.equal(b.details?.['http_status'], 503);
  for (const kind of ['auth', 'network', 'http', 'config'] as const) t.ok(Object.hasOwn(ERRORS, `webdav_${kind}`));
});
