import { randomBytes } from 'node:crypto';
import t from 'tap';
import { testDatabase } from '../../test/db.ts';
import { makeUser } from '../../test/factories.ts';
import { PRUNE_AUTH_STATE, pruneAuthState } from './prune-auth-state.ts';

t.test('deletes expired sessions and idle throttle rows, keeps live ones', async (t) => {
  const { pool, db } = await testDatabase(t);
  const user = await makeUser(db);
  const live = randomBytes(32);
  const expired = randomBytes(32);
  await pool.query(`insert into bastion_private.sessions (token_hash, user_id, created_at, expires_at) values ($1, $3, now(), now() + interval '1 day'), ($2, $3, now() - interval '8 days', now() - interval '1 day')`, [live, expired, user.id]);
  await pool.query(`insert into bastion_private.login_throttle (client_address, window_started_at, failures, updated_at) values
    ('192.0.2.1', now() - interval '40 days', 3, now() - interval '40 days'),
    ('192.0.2.2', now(), 3, now()),
    ('192.0.2.3', now() - interval '40 days', 10, now() - interval '40 days')`);
  // Still locked although idle: kept until the lock ends.
  await pool.query(`update bastion_private.login_throttle set locked_until = now() + interval '5 minutes' where client_address = '192.0.2.3'`);
  const logs: string[] = [];
  await pruneAuthState({}, { withPgClient: (fn: (c: unknown) => unknown) => pool.connect().then(async (c) => { try { return await fn(c); } finally { c.release(); } }), logger: { info: (m: string) => logs.push(m) } } as never);
  const sessions = await pool.query('select token_hash from bastion_private.sessions');
  t.same(sessions.rows.map((r) => Buffer.from(r.token_hash).toString('hex')), [live.toString('hex')]);
  const throttle = await pool.query('select client_address from bastion_private.login_throttle order by 1');
  t.same(throttle.rows.map((r) => r.client_address), ['192.0.2.2', '192.0.2.3']);
  t.match(logs[0], /pruned 2 /);
  t.equal(PRUNE_AUTH_STATE, 'prune-auth-state');
});
