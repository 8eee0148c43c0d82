import t from 'tap';
import { ConfigError, loadConfig, type SettingName } from './config.ts';

const ALL: SettingName[] = ['databaseUrl', 'dataDir', 'listen', 'logLevel', 'workerConcurrency'];

t.test('defaults', async (t) => {
  const c = loadConfig({}, {}, ALL);
  t.same(c.listen, { host: '127.0.0.1', port: 8787 });
  t.equal(c.databaseUrl, undefined);
  t.equal(c.logLevel, 'info');
  t.equal(c.workerConcurrency, 4);
  t.ok(c.dataDir.startsWith('/') && c.dataDir.endsWith('/data'));
});

t.test('flags win over the environment', async (t) => {
  const c = loadConfig({ listen: '0.0.0.0:9000' }, { BASTION_LISTEN: '127.0.0.1:1' }, ALL);
  t.same(c.listen, { host: '0.0.0.0', port: 9000 });
  t.same(loadConfig({}, { BASTION_LISTEN: '[::1]:8080' }, ALL).listen, { host: '::1', port: 8080 });
  t.same(loadConfig({}, { BASTION_LISTEN: 'localhost:0' }, ALL).listen, { host: 'localhost', port: 0 });
});

const hostile: Array<[Record<string, string>, Record<string, string>, string, RegExp]> = [
  [{}, { BASTION_LISTEN: 'nonsense' }, 'BASTION_LISTEN', /host:port/],
  [{}, { BASTION_LISTEN: '127.0.0.1:70000' }, 'BASTION_LISTEN', /host:port/],
  [{}, { BASTION_LISTEN: '127.0.0.1:-1' }, 'BASTION_LISTEN', /host:port/],
  [{}, { BASTION_LISTEN: 'a b:80' }, 'BASTION_LISTEN', /host:port/],
  [{ listen: ':80' }, {}, '--listen', /host:port/],
  [{}, { DATABASE_URL: 'mysql://x@y/z' }, 'DATABASE_URL', /postgres:\/\//],
  [{}, { DATABASE_URL: 'not a url' }, 'DATABASE_URL', /postgres:\/\//],
  [{ 'database-url': 'postgres:///nohost' }, {}, '--database-url', /postgres:\/\//],
  [{}, { BASTION_LOG_LEVEL: 'loud' }, 'BASTION_LOG_LEVEL', /one of fatal, error/],
  [{}, { BASTION_WORKER_CONCURRENCY: '0' }, 'BASTION_WORKER_CONCURRENCY', /at least 1/],
  [{}, { BASTION_WORKER_CONCURRENCY: '1.5' }, 'BASTION_WORKER_CONCURRENCY', /whole number/],
  [{}, { BASTION_WORKER_CONCURRENCY: 'ten' }, 'BASTION_WORKER_CONCURRENCY', /whole number/],
  [{ 'worker-concurrency': '100000' }, {}, '--worker-concurrency', /at most 256/],
];

t.test('hostile values: one message naming the setting as written and the problem', async (t) => {
  for (const [flags, env, setting, problem] of hostile) {
    try {
      loadConfig(flags, env, ALL);
      t.fail(`accepted ${JSON.stringify({ flags, env })}`);
    } catch (e) {
      t.type(e, ConfigError);
      const err = e as ConfigError;
      t.equal(err.setting, setting, JSON.stringify({ flags, env }));
      t.match(err.message, problem);
      t.notMatch(err.message, /\n/, 'single line');
    }
  }
});

t.test('settings a command does not use are ignored', async (t) => {
  const c = loadConfig({}, { BASTION_LISTEN: 'nonsense' }, ['databaseUrl', 'dataDir']);
  t.same(c.listen, { host: '127.0.0.1', port: 8787 });
});

t.test('an empty environment variable counts as unset', async (t) => {
  t.equal(loadConfig({}, { DATABASE_URL: '' }, ALL).databaseUrl, undefined);
});
