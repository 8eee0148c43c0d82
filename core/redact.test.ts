import t from 'tap';
import { redactUrl, redactUrlsInText, sanitizeErrorText, truncateUtf8 } from './redact.ts';

t.test('redactUrl strips userinfo, query and fragment', async (t) => {
  t.equal(redactUrl('https://alice:s3cret@dav.example.com/backups?token=x#frag'), 'https://dav.example.com/backups');
  t.equal(redactUrl('https://dav.example.com/b', { trailingSlash: true }), 'https://dav.example.com/b/');
  t.equal(redactUrl('https://dav.example.com/b/', { trailingSlash: true }), 'https://dav.example.com/b/');
  t.equal(redactUrl('not a url'), 'not a url');
  t.equal(redactUrl('weird://u:p@[bad'), 'weird://[bad');
});

t.test('redactUrlsInText removes credentials inside prose', async (t) => {
  const s = redactUrlsInText('PUT http://bob:hunter2@127.0.0.1:8080/x?sig=1 failed');
  t.equal(s, 'PUT http://127.0.0.1:8080/x failed');
  t.notMatch(s, /hunter2/);
});

t.test('truncateUtf8 cuts on a character boundary', async (t) => {
  t.equal(truncateUtf8('abc', 3), 'abc');
  t.equal(truncateUtf8('abcd', 3), 'abc…');
  // 'é' is two bytes: a cut at 3 must not split it
  t.equal(truncateUtf8('abé', 3), 'ab…');
  // '😀' is four bytes and two UTF-16 units
  t.equal(truncateUtf8('a😀b', 4), 'a…');
  t.equal(truncateUtf8('a😀b', 5), 'a😀…');
  t.equal(truncateUtf8('a'.repeat(600), 500), 'a'.repeat(500) + '…');
});

t.test('sanitizeErrorText is single-line, bounded and credential-free', async (t) => {
  const s = sanitizeErrorText('line1\nline2\r\n\tGET https://u:p@h/x?q=1\u0000 end   ');
  t.equal(s, 'line1 line2 GET https://h/x end');
  const long = sanitizeErrorText('é'.repeat(400));
  t.ok(Buffer.byteLength(long) <= 500 + Buffer.byteLength('…'));
  t.ok(long.endsWith('…'));
  t.notOk(long.includes('\uFFFD'));
});
