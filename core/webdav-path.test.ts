import t from 'tap';
import { decodePathSegments, encodeSegments, normalizeWebdavBaseUrl, parseRelativePath, resolveUnder } from './webdav-path.ts';

t.test('normalizeWebdavBaseUrl adds the trailing slash and pulls credentials out', async (t) => {
  const a = normalizeWebdavBaseUrl('https://dav.example.com/backups');
  t.ok(a.ok);
  if (a.ok) {
    t.equal(a.url.toString(), 'https://dav.example.com/backups/');
    t.equal(a.userinfo, null);
  }
  const b = normalizeWebdavBaseUrl('http://al%40ice:p%3Ass%20w@127.0.0.1:8080/dav/');
  t.ok(b.ok);
  if (b.ok) {
    t.equal(b.url.toString(), 'http://127.0.0.1:8080/dav/');
    t.same(b.userinfo, { username: 'al@ice', password: 'p:ss w' });
  }
  const c = normalizeWebdavBaseUrl('http://127.0.0.1:1');
  t.ok(c.ok && c.url.toString() === 'http://127.0.0.1:1/');
});

t.test('normalizeWebdavBaseUrl refuses hostile or useless URLs without quoting them', async (t) => {
  const bad = [
    '',
    'not a url',
    'ftp://host/x',
    'file:///etc/passwd',
    'javascript:alert(1)',
    'http://host/x?token=secret',
    'http://host/x?',
    'http://host/x#frag',
    'http://u:secret@[bad',
    'http://u:%E0%A4%A@host/',
    'http://h/' + 'a'.repeat(3000),
  ];
  for (const raw of bad) {
    const r = normalizeWebdavBaseUrl(raw);
    t.notOk(r.ok, JSON.stringify(raw.slice(0, 60)));
    if (!r.ok) t.notMatch(r.problem, /secret/);
  }
  t.notOk(normalizeWebdavBaseUrl(42 as unknown as string).ok);
});

t.test('parseRelativePath accepts real file names and refuses escapes', async (t) => {
  t.same(parseRelativePath('payload.part000001'), { ok: true, segments: ['payload.part000001'], collection: false });
  t.same(parseRelativePath('data/a b/é #?%\n.txt'), { ok: true, segments: ['data', 'a b', 'é #?%\n.txt'], collection: false });
  t.same(parseRelativePath('data/sub/'), { ok: true, segments: ['data', 'sub'], collection: true });
  t.same(parseRelativePath('..data/x..'), { ok: true, segments: ['..data', 'x..'], collection: false });
  t.same(parseRelativePath('', { allowRoot: true }), { ok: true, segments: [], collection: true });
  for (const bad of ['', '/', '/etc/passwd', 'a//b', '../x', 'a/../b', 'a/./b', '.', 'a/..', 'a\0b', 'x/\uD800', 'a'.repeat(5000)]) {
    t.notOk(parseRelativePath(bad).ok, JSON.stringify(bad.slice(0, 20)));
  }
  t.notOk(parseRelativePath(undefined as unknown as string).ok);
  // a well-formed surrogate pair (emoji) is fine
  t.ok(parseRelativePath('data/😀').ok);
});

t.test('encodeSegments percent-encodes every reserved character per segment', async (t) => {
  t.equal(encodeSegments(['a b', '#?%', 'é\n'], false), 'a%20b/%23%3F%25/%C3%A9%0A');
  t.equal(encodeSegments(['job', 'run'], true), 'job/run/');
  t.equal(encodeSegments([], true), '');
  t.equal(encodeSegments(['a/b'], false), 'a%2Fb');
  const base = new URL('http://h/dav%20root/');
  t.equal(resolveUnder(base, ['x y', 'z'], true).toString(), 'http://h/dav%20root/x%20y/z/');
  t.equal(resolveUnder(base, [], true).toString(), 'http://h/dav%20root/');
});

t.test('decodePathSegments reduces absolute hrefs and paths to decoded segments', async (t) => {
  t.same(decodePathSegments('http://other:1/dav/a%20b/'), ['dav', 'a b']);
  t.same(decodePathSegments('/dav/a%20b/%c3%a9'), ['dav', 'a b', 'é']);
  t.same(decodePathSegments("/dav/it's"), ['dav', "it's"]);
  t.same(decodePathSegments('/'), []);
  // literal ? and # are part of the name (webdav-server sends hrefs encoded with encodeURI)
  t.same(decodePathSegments('/a?x=1#f'), ['a?x=1#f']);
  t.same(decodePathSegments('http://h:1/d/#h/?q/100%25/a+b&c'), ['d', '#h', '?q', '100%', 'a+b&c']);
  t.same(decodePathSegments('http://h:1'), []);
  t.equal(decodePathSegments('/a/%E0%A4%A'), null);
  t.equal(decodePathSegments('/a/%ZZ'), null);
});
