import t from 'tap';
import { GetfattrParser, unescapeOctal, type XattrMap } from './xattrs.ts';

t.test('getfattr output: escapes, empty values, chunk boundaries anywhere', async (t) => {
  const out = Buffer.concat([
    Buffer.from('# file: /s/a\\012b\nuser.k=0saGVsbG8=\n\n'),
    Buffer.from('# file: /s/back\\134slash\nuser.we\\075ird=0sMQ==\nuser.empty=0s\nuser.hex=0x00ff\nuser.txt="q\\042"\n\n'),
    Buffer.from('# file: /s/'),
    Buffer.from([0xc3, 0xbc]), // ü, raw UTF-8
    Buffer.from('\nuser.u=0seA==\n\n# file: /s/bad'),
    Buffer.from([0xff]),
    Buffer.from('\nuser.x=0sAA==\n\n# file: /s/none\n\n'),
  ]);
  for (const step of [1, 3, 7, out.length]) {
    const map = new Map<string, XattrMap>();
    const p = new GetfattrParser(map);
    for (let i = 0; i < out.length; i += step) p.push(out.subarray(i, i + step));
    p.end();
    t.same(Object.fromEntries(map), {
      '/s/a\nb': { 'user.k': 'aGVsbG8=' },
      '/s/back\\slash': { 'user.we=ird': 'MQ==', 'user.empty': '', 'user.hex': 'AP8=', 'user.txt': Buffer.from('q"').toString('base64') },
      '/s/ü': { 'user.u': 'eA==' },
    }, `chunks of ${step}`);
  }
});

t.test('octal unescaping leaves other backslashes alone', async (t) => {
  t.same(unescapeOctal(Buffer.from('a\\012b\\134\\9x\\01')), Buffer.from('a\nb\\\\9x\\01'));
});
