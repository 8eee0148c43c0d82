import { pino } from 'pino';
import t from 'tap';
import { createPool } from '../db/pool.ts';
import { testDatabase } from '../test/db.ts';
import { createGateway } from './app.ts';

async function start(t: { teardown(fn: () => unknown): void }, deps: Parameters<typeof createGateway>[0]): Promise<string> {
  const gw = createGateway(deps);
  const port = await gw.listen('127.0.0.1', 0);
  t.teardown(() => gw.close());
  return `http://127.0.0.1:${port}`;
}

const logger = pino({ level: 'silent' });

t.test('healthy and ready', async (t) => {
  const { pool } = await testDatabase(t);
  const base = await start(t, { pool, logger, version: '9.9.9', workersRunning: () => true });
  const h = await fetch(`${base}/healthz`);
  t.equal(h.status, 200);
  t.match(await h.json(), { status: 'ok', version: '9.9.9' });
  const r = await fetch(`${base}/readyz`);
  t.equal(r.status, 200);
  t.match(await r.json(), { status: 'ready', checks: { database: { ok: true }, migrations: { ok: true }, workers: { ok: true } } });
});

t.test('not ready when workers are down, the schema is behind, or the database is gone', async (t) => {
  const { pool } = await testDatabase(t);
  const noWorkers = await start(t, { pool, logger, version: '1', workersRunning: () => false });
  const a = await fetch(`${noWorkers}/readyz`);
  t.equal(a.status, 503);
  t.match(await a.json(), { status: 'not_ready', checks: { workers: { ok: false }, database: { ok: true } } });

  await pool.query('delete from bastion_private.migrations where id = (select max(id) from bastion_private.migrations)');
  const behind = await start(t, { pool, logger, version: '1' });
  const b = await fetch(`${behind}/readyz`);
  t.equal(b.status, 503);
  t.match(await b.json(), { checks: { migrations: { ok: false } } });
  t.notOk('workers' in ((await (await fetch(`${behind}/readyz`)).json()) as { checks: object }).checks, 'no worker check in a process without workers');

  const dead = createPool({ connectionString: 'postgres://x:y@127.0.0.1:1/none', max: 1 });
  t.teardown(() => dead.end());
  const gone = await start(t, { pool: dead, logger, version: '1' });
  const c = await fetch(`${gone}/readyz`);
  t.equal(c.status, 503);
  t.match(await c.json(), { checks: { database: { ok: false } } });
  const h = await fetch(`${gone}/healthz`);
  t.equal(h.status, 200, 'healthz only says the process is alive');
});
