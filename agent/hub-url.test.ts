import t from 'tap';
import { enrollUrl, hubUrlSchema, socketUrl } from './hub-url.ts';

t.test('normalises and derives the endpoints', async (t) => {
  const ok = (v: string) => {
    const r = hubUrlSchema.safeParse(v);
    if (!r.success) throw new Error(`${v}: ${r.error.issues[0]?.message}`);
    return r.data;
  };
  t.equal(ok('HTTPS://Hub.Example.com:443/bastion/'), 'https://hub.example.com/bastion');
  t.equal(ok('http://127.0.0.1:8787'), 'http://127.0.0.1:8787');
  t.equal(ok('http://[::1]:8787/'), 'http://[::1]:8787');
  t.equal(socketUrl(ok('https://hub.example.com/bastion')), 'wss://hub.example.com/bastion/agent/ws', 'keeps the base path');
  t.equal(socketUrl(ok('http://127.0.0.1:1')), 'ws://127.0.0.1:1/agent/ws');
  t.equal(enrollUrl(ok('http://127.0.0.1:1/x')), 'http://127.0.0.1:1/x/agent/enroll');
});

t.test('hostile values are refused with a reason, never echoed', async (t) => {
  const bad = [
    '',
    'hub.example.com',
    'ftp://hub.example.com',
    'file:///etc/passwd',
    'javascript:alert(1)',
    'https://admin:hunter2@hub.example.com',
    'https://hub.example.com/?key=bak_x',
    'https://hub.example.com/#frag',
    'https://hub.example.com/a b',
    'https://hub.example.com/\u0000',
    'https://hub.example.com\n/evil',
    'x'.repeat(3000),
  ];
  for (const v of bad) {
    const r = hubUrlSchema.safeParse(v);
    t.notOk(r.success, JSON.stringify(v.slice(0, 60)));
    if (!r.success) t.notMatch(r.error.issues[0]?.message ?? '', /hunter2|etc\/passwd/);
  }
});
