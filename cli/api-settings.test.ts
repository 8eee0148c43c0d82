import t from 'tap';
import { ConfigError, loadConfig } from './config.ts';

t.test('BASTION_TRUSTED_PROXIES and BASTION_GRAPHIQL', (t) => {
  const c = loadConfig({}, { BASTION_TRUSTED_PROXIES: '10.0.0.0/8, ::1', BASTION_GRAPHIQL: 'off' }, ['trustedProxies', 'graphiql']);
  t.same(c.trustedProxies.networks, ['10.0.0.0/8', '::1']);
  t.ok(c.trustedProxies.contains('10.1.2.3'));
  t.equal(c.graphiql, false);
  const d = loadConfig({}, {}, ['trustedProxies', 'graphiql']);
  t.same(d.trustedProxies.networks, [], 'none trusted by default');
  t.equal(d.graphiql, true, 'Ruru on by default');
  t.equal(loadConfig({ graphiql: 'on' }, { BASTION_GRAPHIQL: 'off' }, ['graphiql']).graphiql, true, 'the flag wins');
  t.throws(() => loadConfig({}, { BASTION_TRUSTED_PROXIES: '10.0.0.0/40' }, ['trustedProxies']), new ConfigError('BASTION_TRUSTED_PROXIES', ''));
  t.throws(() => loadConfig({}, { BASTION_TRUSTED_PROXIES: 'proxy.local' }, ['trustedProxies']), /invalid BASTION_TRUSTED_PROXIES: "proxy.local" is not an IP address or CIDR network/);
  t.throws(() => loadConfig({ 'trusted-proxies': '1.2.3.4/x' }, {}, ['trustedProxies']), /invalid --trusted-proxies: .*prefix/);
  t.throws(() => loadConfig({}, { BASTION_GRAPHIQL: 'maybe' }, ['graphiql']), /invalid BASTION_GRAPHIQL: expected on or off/);
  t.end();
});
