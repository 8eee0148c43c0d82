import t from 'tap';
import { NO_TRUSTED_PROXIES, normalizeAddress, parseTrustedProxies, resolveClient } from './client-address.ts';
import { originAllowed } from './origin.ts';

t.test('normalizeAddress', (t) => {
  const cases: Array<[string, string | undefined]> = [
    ['127.0.0.1', '127.0.0.1'],
    [' 10.1.2.3 ', '10.1.2.3'],
    ['::1', '::1'],
    ['[::1]', '::1'],
    ['0000:0000:0000:0000:0000:0000:0000:0001', '::1'],
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['0000:0000:0000:0000:0000:ffff:7f00:0001', '127.0.0.1'],
    ['FE80::1%eth0', 'fe80::1'],
    ['2001:DB8::A', '2001:db8::a'],
    ['localhost', undefined],
    ['1.2.3', undefined],
    ['300.1.1.1', undefined],
    ['', undefined],
    ["1.2.3.4' or 1=1", undefined],
  ];
  for (const [input, want] of cases) t.equal(normalizeAddress(input), want, JSON.stringify(input));
  t.end();
});

t.test('parseTrustedProxies: addresses and networks; bad entries name themselves', (t) => {
  const p = parseTrustedProxies('10.0.0.0/8, 192.168.1.5 ,fd00::/8,');
  t.same(p.networks, ['10.0.0.0/8', '192.168.1.5', 'fd00::/8']);
  t.ok(p.contains('10.200.3.4'));
  t.ok(p.contains('::ffff:10.0.0.1'), 'IPv4-mapped peer');
  t.ok(p.contains('192.168.1.5'));
  t.notOk(p.contains('192.168.1.6'));
  t.ok(p.contains('fd12::1'));
  t.notOk(p.contains('fe80::1'));
  t.notOk(p.contains('garbage'));
  t.throws(() => parseTrustedProxies('10.0.0.0/33'), /10\.0\.0\.0\/33.*prefix/);
  t.throws(() => parseTrustedProxies('10.0.0.0/x'), /prefix/);
  t.throws(() => parseTrustedProxies('proxy.example.com'), /not an IP address/);
  t.same(parseTrustedProxies('').networks, []);
  t.end();
});

t.test('resolveClient: forwarding headers only from trusted peers, right to left', (t) => {
  const trusted = parseTrustedProxies('10.0.0.0/8');
  const xff = (v: string, proto?: string) => ({ 'x-forwarded-for': v, ...(proto ? { 'x-forwarded-proto': proto } : {}) });
  t.same(resolveClient('203.0.113.9', xff('1.1.1.1', 'https'), trusted), { address: '203.0.113.9', secure: false, viaTrustedProxy: false }, 'untrusted peer: headers ignored');
  t.same(resolveClient('10.0.0.2', xff('198.51.100.7', 'https'), trusted), { address: '198.51.100.7', secure: true, viaTrustedProxy: true });
  t.equal(resolveClient('10.0.0.2', xff('6.6.6.6, 198.51.100.7, 10.0.0.9'), trusted).address, '198.51.100.7', 'trusted hops skipped; the forged left entry is not used');
  t.equal(resolveClient('10.0.0.2', xff('10.0.0.7, 10.0.0.8'), trusted).address, '10.0.0.7', 'all trusted: the leftmost');
  t.equal(resolveClient('10.0.0.2', xff('198.51.100.7, not-an-ip'), trusted).address, '10.0.0.2', 'malformed hop: the peer');
  t.equal(resolveClient('10.0.0.2', {}, trusted).address, '10.0.0.2', 'no header: the peer');
  t.equal(resolveClient('10.0.0.2', xff('1.2.3.4', 'http, https'), trusted).secure, true, 'nearest proxy scheme');
  t.equal(resolveClient('::ffff:10.0.0.2', xff('198.51.100.7'), trusted).address, '198.51.100.7');
  t.equal(resolveClient('10.0.0.2', xff('198.51.100.7'), NO_TRUSTED_PROXIES).address, '10.0.0.2');
  t.end();
});

t.test('originAllowed', (t) => {
  t.ok(originAllowed({ host: 'bastion.example:8787', origin: 'http://bastion.example:8787' }, false));
  t.ok(originAllowed({ host: 'bastion.example' }, false), 'no Origin: not a browser');
  t.ok(originAllowed({ host: 'bastion.example', origin: 'https://bastion.example' }, true));
  t.ok(originAllowed({ host: 'bastion.example:443', origin: 'https://bastion.example' }, true), 'default port');
  t.notOk(originAllowed({ host: 'bastion.example:8787', origin: 'http://bastion.example:8788' }, false), 'port');
  t.notOk(originAllowed({ host: 'bastion.example', origin: 'http://bastion.example' }, true), 'scheme');
  t.notOk(originAllowed({ host: 'bastion.example', origin: 'https://evil.example' }, true), 'host');
  t.notOk(originAllowed({ host: 'bastion.example', origin: 'null' }, false), 'opaque origin');
  t.notOk(originAllowed({ origin: 'http://x' }, false), 'no Host');
  t.end();
});
