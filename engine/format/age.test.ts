import t from 'tap';
import crypto from 'node:crypto';
import { Decrypter, Encrypter, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { BastionError } from '../../core/errors.ts';
import { bech32Decode, bech32Encode } from './bech32.ts';
import { ByteQueue } from './byte-queue.ts';
import { generateAgeIdentity, parseIdentity, parseRecipient } from './age-keys.ts';
import { createAgeSession, deserializeAgeSession, payloadKey, readAgeHeader, serializeAgeSession } from './age-header.ts';
import { AGE_CHUNK, AgeStreamEncryptor, decryptAgeStream } from './age-stream.ts';

/** Encrypt with our implementation, feeding the plaintext in uneven pieces. */
function ourEncrypt(recipient: string, plain: Buffer, piece = 10_000): Buffer {
  const session = createAgeSession(parseRecipient(recipient));
  const enc = new AgeStreamEncryptor(payloadKey(session.fileKey, session.nonce));
  const out: Buffer[] = [session.header, session.nonce];
  for (let i = 0; i < plain.length; i += piece) out.push(enc.update(plain.subarray(i, i + piece)));
  out.push(enc.final());
  return Buffer.concat(out);
}

async function* chunks(b: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

async function ourDecrypt(identity: string, cipher: Buffer, chunkSize = 7777): Promise<Buffer> {
  const q = new ByteQueue(chunks(cipher, chunkSize));
  const { fileKey, nonce } = await readAgeHeader(q, parseIdentity(identity));
  const out: Buffer[] = [];
  for await (const c of decryptAgeStream(q, payloadKey(fileKey, nonce))) out.push(c);
  return Buffer.concat(out);
}

/** The error code a promise rejects with ('resolved' when it does not reject). */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return e instanceof BastionError ? e.code : `not a BastionError: ${String(e)}`;
  }
}

// Sizes around the 64 KiB chunk boundary matter: the last chunk may be full but never empty.
const SIZES = [0, 1, AGE_CHUNK - 1, AGE_CHUNK, AGE_CHUNK + 1, 3 * AGE_CHUNK, 200_000];

t.test('bech32 round trip and checksum', async (t) => {
  const bytes = crypto.randomBytes(32);
  const s = bech32Encode('age', bytes);
  t.same(Buffer.from(bech32Decode(s)!.bytes), bytes);
  t.same(Buffer.from(bech32Decode(s.toUpperCase())!.bytes), bytes);
  const flipped = s.slice(0, -1) + (s.endsWith('q') ? 'p' : 'q');
  t.equal(bech32Decode(flipped), null, 'checksum error detected');
  t.equal(bech32Decode(s.slice(0, 10) + s.slice(10).toUpperCase()), null, 'mixed case refused');
  t.equal(bech32Decode('age1'), null);
});

t.test('our ciphertext decrypts with the age-encryption package', async (t) => {
  const identity = await generateX25519Identity();
  const recipient = await identityToRecipient(identity);
  for (const size of SIZES) {
    const plain = crypto.randomBytes(size);
    const cipher = ourEncrypt(recipient, plain);
    const d = new Decrypter();
    d.addIdentity(identity);
    t.same(Buffer.from(await d.decrypt(cipher)), plain, `size ${size}`);
  }
});

t.test('the package ciphertext decrypts with ours', async (t) => {
  const { identity, recipient } = generateAgeIdentity();
  for (const size of SIZES) {
    const plain = crypto.randomBytes(size);
    const e = new Encrypter();
    e.addRecipient(recipient);
    const cipher = Buffer.from(await e.encrypt(plain));
    t.same(await ourDecrypt(identity, cipher), plain, `size ${size}`);
  }
});

t.test('a serialised session reproduces the same ciphertext', async (t) => {
  const { recipient } = generateAgeIdentity();
  const s1 = createAgeSession(parseRecipient(recipient));
  const s2 = deserializeAgeSession(JSON.parse(JSON.stringify(serializeAgeSession(s1))))!;
  const plain = crypto.randomBytes(150_000);
  const run = (s: typeof s1, piece: number) => {
    const enc = new AgeStreamEncryptor(payloadKey(s.fileKey, s.nonce));
    const parts = [s.header, s.nonce];
    for (let i = 0; i < plain.length; i += piece) parts.push(enc.update(plain.subarray(i, i + piece)));
    parts.push(enc.final());
    return Buffer.concat(parts);
  };
  t.same(run(s2, 4096), run(s1, 65_536), 'same bytes whatever the feeding pattern');
  t.equal(deserializeAgeSession({ file_key: 'x' }), null);
});

t.test('wrong identity, tampering and truncation are refused', async (t) => {
  const a = generateAgeIdentity();
  const b = generateAgeIdentity();
  const plain = crypto.randomBytes(3 * AGE_CHUNK + 5);
  const cipher = ourEncrypt(a.recipient, plain);
  t.equal(await codeOf(ourDecrypt(b.identity, cipher)), 'decryption_failed');
  const flipped = Buffer.from(cipher);
  flipped[flipped.length - 100]! ^= 1;
  t.equal(await codeOf(ourDecrypt(a.identity, flipped)), 'artifact_corrupt');
  // Cutting exactly at a chunk boundary must not pass for a shorter file.
  const headerLen = cipher.indexOf('\n', cipher.indexOf('---')) + 1 + 16;
  t.equal(await codeOf(ourDecrypt(a.identity, cipher.subarray(0, headerLen + 2 * (AGE_CHUNK + 16)))), 'artifact_corrupt');
  // Swap one base64 character for another valid one (the first character of a
  // field, so the encoding stays canonical): a different share cannot unwrap
  // the file key; a different MAC fails the header check.
  const swap = (buf: Buffer, at: number) => {
    const out = Buffer.from(buf);
    out[at] = out[at] === 0x41 ? 0x42 : 0x41; // 'A' <-> 'B'
    return out;
  };
  const shareAt = cipher.indexOf('X25519 ') + 7;
  t.equal(await codeOf(ourDecrypt(a.identity, swap(cipher, shareAt))), 'decryption_failed', 'another share');
  const macAt = cipher.indexOf('--- ') + 4;
  t.equal(await codeOf(ourDecrypt(a.identity, swap(cipher, macAt))), 'artifact_corrupt', 'another MAC');
  t.equal(await codeOf(ourDecrypt(a.identity, Buffer.from('not age at all\n'))), 'artifact_corrupt');
});

t.test('malformed keys are invalid_encryption_key and never echoed', async (t) => {
  const { identity } = generateAgeIdentity();
  for (const bad of ['', 'age1', 'age1qqqq', identity, 'ssh-ed25519 AAAA']) {
    try {
      parseRecipient(bad);
      t.fail('accepted');
    } catch (e) {
      t.equal((e as BastionError).code, 'invalid_encryption_key');
      if (bad.length > 10) t.notMatch((e as Error).message, bad);
    }
  }
  const broken = identity.slice(0, -1) + (identity.endsWith('Q') ? 'P' : 'Q');
  try {
    parseIdentity(broken);
    t.fail('accepted');
  } catch (e) {
    t.equal((e as BastionError).code, 'invalid_encryption_key');
    t.notMatch((e as Error).message, broken.slice(16));
  }
});
