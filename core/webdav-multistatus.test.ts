import t from 'tap';
import { parseContentLength, parseMultistatus, parsePropfindChildren, parseStatusLine } from './webdav-multistatus.ts';

function response(href: string, opts: { collection?: boolean; size?: number | string; status?: string; extra?: string } = {}): string {
  const rt = opts.collection ? '<D:resourcetype><D:collection/></D:resourcetype>' : '<D:resourcetype/>';
  const len = opts.size === undefined ? '' : `<D:getcontentlength>${opts.size}</D:getcontentlength>`;
  return `<D:response><D:href>${href}</D:href><D:propstat><D:prop>${rt}${len}</D:prop><D:status>${opts.status ?? 'HTTP/1.1 200 OK'}</D:status></D:propstat>${opts.extra ?? ''}</D:response>`;
}
const ms = (...r: string[]) => `<?xml version="1.0"?><D:multistatus xmlns:D="DAV:">${r.join('')}</D:multistatus>`;

t.test('webdav-server style: absolute hrefs with another host, encoded names', async (t) => {
  const xml = ms(
    response('http://127.0.0.1:9999/base/job/run/', { collection: true }),
    response('http://127.0.0.1:9999/base/job/run/payload.part000001', { size: 1234 }),
    response('http://127.0.0.1:9999/base/job/run/data/', { collection: true }),
    response('http://127.0.0.1:9999/base/job/run/a%20b%23c%3F%0A%C3%A9', { size: '0' }),
  );
  const r = parsePropfindChildren(xml, '/base/job/run/');
  t.same(r, {
    ok: true,
    children: [
      { name: 'payload.part000001', collection: false, size: 1234 },
      { name: 'data', collection: true, size: null },
      { name: 'a b#c?\né', collection: false, size: 0 },
    ],
  });
});

t.test('webdav-server encodes hrefs with encodeURI: literal # and ? in names', async (t) => {
  const xml = ms(
    response('http://127.0.0.1:1/d/#h/', { collection: true }),
    response('http://127.0.0.1:1/d/#h/?q/', { collection: true }),
    response("http://127.0.0.1:1/d/#h/a+b&amp;c=d;e'f(g)%5Bh%5D%7Bi%7D~!@$,.txt", { size: 1 }),
  );
  t.same(parsePropfindChildren(xml, '/d/%23h/'), {
    ok: true,
    children: [
      { name: '?q', collection: true, size: null },
      { name: "a+b&c=d;e'f(g)[h]{i}~!@$,.txt", collection: false, size: 1 },
    ],
  });
});

t.test('rclone style: path hrefs, self without trailing slash, different encoding than ours', async (t) => {
  const xml = ms(response('/base/job%20x/run', { collection: true }), response("/base/job%20x/run/it%27s", { size: 5 }), response("/base/job%20x/run/it's%202", { size: 6 }));
  const r = parsePropfindChildren(xml, '/base/job%20x/run/');
  t.same(r, { ok: true, children: [{ name: "it's", collection: false, size: 5 }, { name: "it's 2", collection: false, size: 6 }] });
});

t.test('non-200 propstats are skipped; a response with only a 404 propstat is dropped', async (t) => {
  const mixed =
    '<D:response><D:href>/r/f</D:href>' +
    '<D:propstat><D:prop><D:getcontentlength>10</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>' +
    '<D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>' +
    '</D:response>';
  const only404 = '<D:response><D:href>/r/g</D:href><D:propstat><D:prop><D:getcontentlength/></D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat></D:response>';
  const statusOnly = '<D:response><D:href>/r/h</D:href><D:status>HTTP/1.1 423 Locked</D:status></D:response>';
  const r = parsePropfindChildren(ms(response('/r/', { collection: true }), mixed, only404, statusOnly), '/r/');
  t.same(r, { ok: true, children: [{ name: 'f', collection: false, size: 10 }] });
});

t.test('self entry that is a file is an error', async (t) => {
  const r = parsePropfindChildren(ms(response('/r/file', { size: 3 })), '/r/file/');
  t.same(r.ok ? null : r.reason, 'not_a_collection');
});

t.test('hostile hrefs: traversal, encoded slash, foreign paths, bad encoding', async (t) => {
  const self = response('/r/', { collection: true });
  const dotdot = parsePropfindChildren(ms(self, response('/r/%2E%2E', { collection: true })), '/r/');
  t.equal(dotdot.ok ? 'ok' : dotdot.reason, 'bad_response');
  const slash = parsePropfindChildren(ms(self, response('/r/a%2Fb', { size: 1 })), '/r/');
  t.equal(slash.ok ? 'ok' : slash.reason, 'bad_response');
  const nul = parsePropfindChildren(ms(self, response('/r/a%00', { size: 1 })), '/r/');
  t.equal(nul.ok ? 'ok' : nul.reason, 'bad_response');
  const badEnc = parsePropfindChildren(ms(self, response('/r/%E0%A4%A', { size: 1 })), '/r/');
  t.equal(badEnc.ok ? 'ok' : badEnc.reason, 'bad_response');
  // entries outside the collection or deeper than one level are ignored, never deleted
  const foreign = parsePropfindChildren(ms(self, response('/other/x', { size: 1 }), response('/r/a/b', { size: 1 }), response('/r/../../etc', { size: 1 })), '/r/');
  t.same(foreign, { ok: true, children: [] });
  const noSelf = parsePropfindChildren(ms(response('/elsewhere/', { collection: true })), '/r/');
  t.equal(noSelf.ok ? 'ok' : noSelf.reason, 'bad_response');
  const notXml = parsePropfindChildren('<html>oops', '/r/');
  t.equal(notXml.ok ? 'ok' : notXml.reason, 'bad_response');
  const wrongRoot = parsePropfindChildren('<D:prop xmlns:D="DAV:"/>', '/r/');
  t.equal(wrongRoot.ok ? 'ok' : wrongRoot.reason, 'bad_response');
});

t.test('duplicates collapse; sizes are validated', async (t) => {
  const r = parsePropfindChildren(ms(response('/r/', { collection: true }), response('/r/a', { size: 'x' }), response('/r/a', { size: 2 })), '/r/');
  t.same(r, { ok: true, children: [{ name: 'a', collection: false, size: null }] });
  t.equal(parseContentLength(' 42 '), 42);
  t.equal(parseContentLength('-1'), null);
  t.equal(parseContentLength('1e3'), null);
  t.equal(parseContentLength('99999999999999999'), null);
  t.equal(parseStatusLine('HTTP/1.1 200 OK'), 200);
  t.equal(parseStatusLine(' HTTP/2 404 '), 404);
  t.equal(parseStatusLine('200'), 0);
  t.same(parseMultistatus(ms()), []);
});
