import t from 'tap';
import { BastionError } from '../../core/errors.ts';
import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, SCRYPT_PARAMS, checkPassword, hashPassword, verifyPassword } from './password.ts';

t.test('hash and verify round trip; wrong passwords and tampered hashes fail', async (t) => {
  const hash = await hashPassword('correct horse battery');
  t.match(hash, new RegExp(`^\\$scrypt\\$ln=${SCRYPT_PARAMS.ln},r=${SCRYPT_PARAMS.r},p=${SCRYPT_PARAMS.p}\\$[A-Za-z0-9+/]{22}\\$[A-Za-z0-9+/]{43}$`));
  t.equal(await verifyPassword('correct horse battery', hash), true);
  t.equal(await verifyPassword('correct horse batterY', hash), false);
  t.equal(await verifyPassword('', hash), false);
  t.not(await hashPassword('correct horse battery'), hash, 'a new salt every time');
  const parts = hash.split('$');
  const flipped = [...parts];
  flipped[4] = (parts[4] as string).startsWith('A') ? `B${(parts[4] as string).slice(1)}` : `A${(parts[4] as string).slice(1)}`;
  t.equal(await verifyPassword('correct horse battery', flipped.join('$')), false, 'changed key');
  for (const bad of ['', 'plain', '$scrypt$ln=15,r=8,p=1$$', '$scrypt$ln=40,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$' + 'A'.repeat(43), '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA']) {
    t.equal(await verifyPassword('x', bad), false, `malformed or absurd hash ${bad.slice(0, 20)} verifies as false`);
  }
});

t.test('NFC: the same password typed with combining characters verifies', async (t) => {
  const hash = await hashPassword('caf\u00e9-long-enough');
  t.equal(await verifyPassword('cafe\u0301-long-enough', hash), true);
});

t.test('length rules count characters, not bytes', (t) => {
  t.throws(() => checkPassword('x'.repeat(MIN_PASSWORD_LENGTH - 1)), { code: 'invalid_password', details: { reason: 'min_length' } });
  t.equal(checkPassword('密'.repeat(MIN_PASSWORD_LENGTH)), '密'.repeat(MIN_PASSWORD_LENGTH));
  t.equal(checkPassword('😀'.repeat(MIN_PASSWORD_LENGTH)).length, MIN_PASSWORD_LENGTH * 2, 'astral characters count once');
  t.throws(() => checkPassword('x'.repeat(MAX_PASSWORD_LENGTH + 1)), { code: 'invalid_password', details: { reason: 'max_length' } });
  t.throws(() => checkPassword(12345678901234 as unknown), BastionError);
  t.end();
});
