import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { testDatabase } from '../../test/db.ts';
import { openSecret, sealSecret } from './secret-box.ts';
import { parseSecretKey, SecretKeyProvider, secretKeyId, SECRET_KEY_FILE, type SecretKey } from './secret-key.ts';
import { putWebdavSecret, readSecret, resolveWebdavCredentials } from './secret-store.ts';

const keyOf = (bytes = randomBytes(32)): SecretKey => ({ bytes, id: secretKeyId(bytes) });
const PASSWORD = 'hunter2-ÄÖÜ-correct horse battery staple';

t.test('seal/open: round trip; another key, node, kind, name or a flipped bit is refused', async (t) => {
  const key = keyOf();
  const ref = { nodeId: 'hub', kind: 'webdav', name: 'nas' };
  const sealed = sealSecret(key, ref, Buffer.from(PASSWORD));
  t.equal(openSecret(key, ref, sealed).toString(), PASSWORD);
  t.notOk(sealed.ciphertext.includes(Buffer.from(PASSWORD)), 'ciphertext does not contain the plaintext');
  t.not(sealSecret(key, ref, Buffer.from(PASSWORD)).nonce.toString('hex'), sealed.nonce.toString('hex'), 'a fresh nonce per write');

  t.throws(() => openSecret(keyOf(), ref, sealed), { code: 'secret_key_mismatch', kind: 'config' }, 'another key');
  const sameIdOtherBytes: SecretKey = { bytes: randomBytes(32), id: key.id };
  t.throws(() => openSecret(sameIdOtherBytes, ref, sealed), { code: 'secret_corrupt' }, 'wrong key bytes under a matching id');
  for (const other of [{ ...ref, nodeId: randomUUID() }, { ...ref, kind: 'backup_age_identity' }, { ...ref, name: 'nas2' }]) {
    t.throws(() => openSecret(key, other, sealed), { code: 'secret_corrupt', kind: 'config' }, `AAD binds ${JSON.stringify(other)}`);
  }
  for (let i = 0; i < sealed.ciphertext.length; i += 7) {
    const tampered = Buffer.from(sealed.ciphertext);
    tampered[i]! ^= 0x01;
    t.throws(() => openSecret(key, ref, { ...sealed, ciphertext: tampered }), { code: 'secret_corrupt' });
  }
  const badNonce = Buffer.from(sealed.nonce);
  badNonce[0]! ^= 0x80;
  t.throws(() => openSecret(key, ref, { ...sealed, nonce: badNonce }), { code: 'secret_corrupt' });
  t.throws(() => sealSecret(key, ref, Buffer.alloc(0)), { code: 'invalid_secret' });
});

t.test('key parsing: exactly 32 bytes of canonical base64; the error never echoes the value', async (t) => {
  const good = randomBytes(32).toString('base64');
  t.equal(parseSecretKey(good + '\n', 'X').bytes.length, 32);
  for (const bad of ['', 'not base64!', randomBytes(16).toString('base64'), randomBytes(33).toString('base64'), good.slice(0, -2) + '==']) {
    try {
      parseSecretKey(bad, 'BASTION_SECRET_KEY');
      t.fail(`accepted ${JSON.stringify(bad)}`);
    } catch (e) {
      t.match(e, { code: 'secret_key_unavailable', details: { field: 'BASTION_SECRET_KEY' } });
      if (bad.length > 4) t.notOk((e as Error).message.includes(bad), 'value not in the message');
    }
  }
});

t.test('key file: created 0600 on first encrypt, never on decrypt, shared by racing processes, refused when readable by others', async (t) => {
  const dir = path.join(t.testdir(), 'data');
  const reader = new SecretKeyProvider({ dataDir: dir });
  await t.rejects(reader.get({ create: false }), { code: 'secret_key_unavailable', details: { reason: 'missing' } });
  await t.rejects(fs.stat(path.join(dir, SECRET_KEY_FILE)), { code: 'ENOENT' }, 'decrypting does not create a key');

  // Eight providers (as eight processes would) create at once: one key wins.
  const providers = Array.from({ length: 8 }, () => new SecretKeyProvider({ dataDir: dir }));
  const keys = await Promise.all(providers.map((p) => p.get({ create: true })));
  t.equal(new Set(keys.map((k) => k.id)).size, 1, 'every provider got the same key');
  const st = await fs.stat(path.join(dir, SECRET_KEY_FILE));
  t.equal(st.mode & 0o777, 0o600);
  t.same((await fs.readdir(dir)).filter((n) => n.endsWith('.tmp')), [], 'no temporary files left');
  t.equal((await new SecretKeyProvider({ dataDir: dir }).get({ create: false })).id, keys[0]!.id, 'read back');

  await fs.chmod(path.join(dir, SECRET_KEY_FILE), 0o644);
  await t.rejects(new SecretKeyProvider({ dataDir: dir }).get({ create: false }), { code: 'secret_key_unavailable', details: { reason: 'permissions' } });

  const env = randomBytes(32).toString('base64');
  t.equal((await new SecretKeyProvider({ dataDir: dir, envKey: env }).get({ create: false })).id, secretKeyId(Buffer.from(env, 'base64')), 'BASTION_SECRET_KEY wins');
});

t.test('stored secrets: only ciphertext in the database; list shows no value; tampering and moved rows are refused', async (t) => {
  const { pool } = await testDatabase(t);
  const keys = new SecretKeyProvider({ dataDir: path.join(t.testdir(), 'data') });
  t.equal(await putWebdavSecret(pool, keys, 'hub', 'nas', { username: 'backup', password: PASSWORD }), true, 'created');
  t.equal(await putWebdavSecret(pool, keys, 'hub', 'nas', { username: 'backup', password: PASSWORD + '!' }), false, 'replaced');
  t.same(await resolveWebdavCredentials(pool, keys, 'hub', 'nas'), { username: 'backup', password: PASSWORD + '!' });

  const { rows: raw } = await pool.query<{ row: Buffer }>(`select convert_to(s::text, 'UTF8') as row from bastion_private.secrets s`);
  t.equal(raw.length, 1);
  t.notOk(raw[0]!.row.includes(Buffer.from('hunter2')), 'no plaintext at rest (the whole row as text)');
  const { rows: listed } = await pool.query('select * from bastion.list_secrets()');
  t.same(Object.keys(listed[0]).sort(), ['created_at', 'key_id', 'kind', 'name', 'node_id', 'updated_at']);
  t.match(listed[0], { node_id: 'hub', kind: 'webdav', name: 'nas' });

  await t.rejects(resolveWebdavCredentials(pool, keys, 'hub', 'missing'), { code: 'secret_not_found', kind: 'config', message: /missing.*does not exist on node hub/ });

  // A DBA copies the row to another name and another node: neither opens.
  await pool.query(`insert into bastion_private.secrets (node_id, kind, name, key_id, nonce, ciphertext) select node_id, kind, 'copy', key_id, nonce, ciphertext from bastion_private.secrets where name = 'nas'`);
  await t.rejects(resolveWebdavCredentials(pool, keys, 'hub', 'copy'), { code: 'secret_corrupt', kind: 'config' });
  const agent = randomUUID();
  await pool.query(`insert into bastion_private.secrets (node_id, kind, name, key_id, nonce, ciphertext) select $1, kind, name, key_id, nonce, ciphertext from bastion_private.secrets where name = 'nas'`, [agent]);
  await t.rejects(resolveWebdavCredentials(pool, keys, agent, 'nas'), { code: 'secret_corrupt' });
  // A flipped byte in the stored ciphertext.
  await pool.query(`update bastion_private.secrets set ciphertext = set_byte(ciphertext, 3, get_byte(ciphertext, 3) # 1) where name = 'nas' and node_id = 'hub'`);
  await t.rejects(resolveWebdavCredentials(pool, keys, 'hub', 'nas'), { code: 'secret_corrupt' });
  // Opened with a different key.
  await putWebdavSecret(pool, keys, 'hub', 'nas', { username: 'backup', password: PASSWORD });
  await t.rejects(resolveWebdavCredentials(pool, SecretKeyProvider.fromKey(keyOf()), 'hub', 'nas'), { code: 'secret_key_mismatch' });
  // Content that is not a login.
  const { sealSecret: seal } = await import('./secret-box.ts');
  const key = await keys.get({ create: false });
  const junk = seal(key, { nodeId: 'hub', kind: 'webdav', name: 'junk' }, Buffer.from('{"user":"x"}'));
  await pool.query('select bastion.put_secret($1, $2, $3, $4, $5, $6)', ['hub', 'webdav', 'junk', junk.keyId, junk.nonce, junk.ciphertext]);
  await t.rejects(resolveWebdavCredentials(pool, keys, 'hub', 'junk'), { code: 'invalid_secret', kind: 'config' });
  t.equal(await readSecret(pool, keys, { nodeId: 'hub', kind: 'backup_age_identity', name: 'nas' }), null, 'kinds are separate scopes');
});

t.test('hostile secret input: bad names, nodes, logins and payloads are refused without echoing values', async (t) => {
  const { pool } = await testDatabase(t);
  const keys = SecretKeyProvider.fromKey(keyOf());
  for (const name of ['', '-x', 'a/b', 'a b', 'x'.repeat(129), 'nas\n', '../etc']) {
    await t.rejects(putWebdavSecret(pool, keys, 'hub', name, { username: 'u', password: 'p' }), { code: 'invalid_secret', details: { field: 'name' } }, JSON.stringify(name));
  }
  await t.rejects(putWebdavSecret(pool, keys, randomUUID(), 'nas', { username: 'u', password: 'p' }), { code: 'node_not_found' });
  await t.rejects(putWebdavSecret(pool, keys, 'HUB', 'nas', { username: 'u', password: 'p' }), { code: 'invalid_input', details: { field: 'node_id' } });
  const secretish = 'p4ss\nword-do-not-echo';
  try {
    await putWebdavSecret(pool, keys, 'hub', 'nas', { username: 'u', password: secretish });
    t.fail('accepted a password with a line break');
  } catch (e) {
    t.match(e, { code: 'invalid_secret', details: { field: 'password' } });
    t.notOk(JSON.stringify({ m: (e as Error).message, d: (e as { details?: unknown }).details }).includes('do-not-echo'));
  }
  await t.rejects(putWebdavSecret(pool, keys, 'hub', 'nas', { username: 'a:b', password: 'p' }), { code: 'invalid_secret', details: { field: 'username' } });
  await t.rejects(putWebdavSecret(pool, keys, 'hub', 'nas', { username: 'u', password: 'p', extra: 1 } as never), { code: 'invalid_secret' });
  await t.rejects(pool.query(`select bastion.put_secret('hub', 'webdav', 'nas', 'zz', '\\x00'::bytea, '\\x00'::bytea)`), { message: 'invalid_secret', code: 'BA400' });
  await t.rejects(pool.query(`select bastion.delete_secret('hub', 'webdav', 'nope')`), { message: 'secret_not_found', code: 'BA404' });
});

t.test('roles: only admins store, delete or list secrets', async (t) => {
  const { pool } = await testDatabase(t);
  const c = await pool.connect();
  t.teardown(() => c.release());
  const sealed = sealSecret(keyOf(), { nodeId: 'hub', kind: 'webdav', name: 'nas' }, Buffer.from('{}'));
  for (const role of ['bastion_viewer', 'bastion_operator']) {
    for (const sql of ['select bastion.list_secrets()', `select bastion.delete_secret('hub', 'webdav', 'nas')`, 'select bastion.put_secret($1, $2, $3, $4, $5, $6)']) {
      await c.query('begin');
      await c.query(`set local role ${role}`);
      const args = sql.includes('$1') ? ['hub', 'webdav', 'nas', sealed.keyId, sealed.nonce, sealed.ciphertext] : [];
      await t.rejects(c.query(sql, args), { code: '42501' }, `${role}: ${sql.slice(0, 40)}`);
      await c.query('rollback');
    }
    await c.query('begin');
    await c.query(`set local role ${role}`);
    await t.rejects(c.query('select * from bastion_private.secrets'), { code: '42501' }, `${role} cannot read the table`);
    await c.query('rollback');
  }
  await c.query('begin');
  await c.query('set local role bastion_admin');
  await c.query('select bastion.put_secret($1, $2, $3, $4, $5, $6)', ['hub', 'webdav', 'nas', sealed.keyId, sealed.nonce, sealed.ciphertext]);
  const { rows } = await c.query('select name from bastion.list_secrets()');
  t.same(rows, [{ name: 'nas' }]);
  await c.query('rollback');
});
