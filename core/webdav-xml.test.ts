import t from 'tap';
import { childElement, decodeXmlText, MAX_XML_DEPTH, parseXml, textContent, XmlParseError } from './webdav-xml.ts';

t.test('parses namespaces: prefixed, default, redeclared', async (t) => {
  const x = parseXml(`<?xml version="1.0" encoding="utf-8"?>
<!-- a comment -->
<D:multistatus xmlns:D="DAV:" xmlns:z="urn:other">
  <D:response><D:href>/a</D:href><z:x D:attr='v'/></D:response>
  <response xmlns="DAV:"><href>/b</href></response>
  <q:response xmlns:q="DAV:"><q:href><![CDATA[/c<&>]]></q:href></q:response>
</D:multistatus>`);
  t.equal(x.ns, 'DAV:');
  t.equal(x.name, 'multistatus');
  const responses = x.children.filter((c) => typeof c !== 'string');
  t.equal(responses.length, 3);
  t.same(
    responses.map((r) => typeof r !== 'string' && r.ns + '|' + r.name),
    ['DAV:|response', 'DAV:|response', 'DAV:|response'],
  );
  const first = responses[0]!;
  if (typeof first === 'string') throw new Error('unreachable');
  const other = childElement(first, 'urn:other', 'x');
  t.ok(other);
  t.equal(other?.attrs['D:attr'], 'v');
  const third = responses[2]!;
  if (typeof third === 'string') throw new Error('unreachable');
  t.equal(textContent(childElement(third, 'DAV:', 'href')!), '/c<&>');
});

t.test('decodes the predefined entities and character references', async (t) => {
  t.equal(decodeXmlText('a &amp; b &lt;&gt;&quot;&apos; &#233;&#x1F600;'), `a & b <>"' é😀`);
  t.equal(textContent(parseXml('<a>x&amp;y</a>')), 'x&y');
  for (const bad of ['&foo;', '&#xD800;', '&#0;', '&#x110000;', '&amp', '&#12a;']) t.throws(() => decodeXmlText(bad), XmlParseError, bad);
});

t.test('refuses DOCTYPE, mismatched tags, undeclared prefixes, junk', async (t) => {
  const bad = [
    '<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
    '<a><b></a></b>',
    '<a>',
    '</a>',
    '<p:a/>',
    '<a/><b/>',
    'text only',
    '',
    '<a b=c/>',
    '<a b="1" b="2"/>',
    '<a b="<"/>',
    '<a><!-- unterminated </a>',
    '<a><![CDATA[ unterminated </a>',
    '<1a/>',
    '<a>x</a>trailing',
  ];
  for (const b of bad) t.throws(() => parseXml(b), XmlParseError, JSON.stringify(b));
});

t.test('bounds nesting depth', async (t) => {
  const ok = '<a>'.repeat(MAX_XML_DEPTH) + '</a>'.repeat(MAX_XML_DEPTH);
  t.doesNotThrow(() => parseXml(ok));
  const deep = '<a>'.repeat(MAX_XML_DEPTH + 1) + '</a>'.repeat(MAX_XML_DEPTH + 1);
  t.throws(() => parseXml(deep), XmlParseError);
});

t.test('a large flat document parses in one pass', async (t) => {
  const n = 20_000;
  const body = '<d:multistatus xmlns:d="DAV:">' + '<d:response><d:href>/x</d:href></d:response>'.repeat(n) + '</d:multistatus>';
  const x = parseXml(body);
  t.equal(x.children.length, n);
});
