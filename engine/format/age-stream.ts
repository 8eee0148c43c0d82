/**
 * age's STREAM payload encryption: the plaintext cut into 64 KiB chunks, each
 * sealed with ChaCha20-Poly1305 under the payload key, nonce = 11-byte
 * big-endian chunk counter + a last-chunk flag byte. The final chunk is never
 * empty unless the whole plaintext is. OpenSSL's ChaCha20-Poly1305 (node:crypto)
 * does ≈ 2.7 GB/s here, so encryption costs little next to zstd.
 */
import crypto from 'node:crypto';
import { BastionError } from '../../core/errors.ts';
import type { ByteQueue } from './byte-queue.ts';

/** Plaintext bytes per STREAM chunk. */
export const AGE_CHUNK = 64 * 1024;
const TAG = 16;

function nonceFor(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeBigUInt64BE(BigInt(counter), 3);
  n[11] = last ? 1 : 0;
  return n;
}

/** Push-style STREAM encryptor: feed plaintext, get ciphertext, then `final()`. */
export class AgeStreamEncryptor {
  private readonly key: Buffer;
  private pending: Buffer = Buffer.alloc(0);
  private counter = 0;
  private finished = false;

  constructor(payloadKey: Buffer) {
    this.key = payloadKey;
  }

  /**
   * Ciphertext for every complete chunk known not to be the last one. The
   * last (possibly full) chunk is held back until more data or `final()`.
   */
  update(data: Buffer): Buffer {
    if (this.finished) throw new Error('age stream already finished');
    const all = this.pending.length ? Buffer.concat([this.pending, data]) : data;
    if (all.length <= AGE_CHUNK) {
      this.pending = Buffer.from(all);
      return Buffer.alloc(0);
    }
    const emit = Math.ceil(all.length / AGE_CHUNK) - 1;
    const out = Buffer.allocUnsafe(emit * (AGE_CHUNK + TAG));
    for (let i = 0; i < emit; i++) this.seal(all.subarray(i * AGE_CHUNK, (i + 1) * AGE_CHUNK), false, out, i * (AGE_CHUNK + TAG));
    this.pending = Buffer.from(all.subarray(emit * AGE_CHUNK));
    return out;
  }

  /** The last chunk. */
  final(): Buffer {
    if (this.finished) throw new Error('age stream already finished');
    this.finished = true;
    const out = Buffer.allocUnsafe(this.pending.length + TAG);
    this.seal(this.pending, true, out, 0);
    this.pending = Buffer.alloc(0);
    return out;
  }

  private seal(chunk: Buffer, last: boolean, out: Buffer, off: number): void {
    const c = crypto.createCipheriv('chacha20-poly1305', this.key, nonceFor(this.counter++, last), { authTagLength: TAG });
    const n = c.update(chunk).copy(out, off);
    c.final();
    c.getAuthTag().copy(out, off + n);
  }
}

function tampered(counter: number): BastionError {
  return new BastionError('artifact_corrupt', `age: payload chunk ${counter} fails authentication (tampered or truncated)`, { details: { reason: 'age_payload' } });
}

/** Decrypt the STREAM payload that follows the header and nonce in `q`. */
export async function* decryptAgeStream(q: ByteQueue, payloadKey: Buffer): AsyncGenerator<Buffer> {
  for (let counter = 0; ; counter++) {
    const sealed = await q.readUpTo(AGE_CHUNK + TAG);
    const last = sealed.length < AGE_CHUNK + TAG || (await q.atEnd());
    if (sealed.length < TAG) throw tampered(counter);
    const d = crypto.createDecipheriv('chacha20-poly1305', payloadKey, nonceFor(counter, last), { authTagLength: TAG });
    d.setAuthTag(sealed.subarray(sealed.length - TAG));
    let plain: Buffer;
    try {
      plain = Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG)), d.final()]);
    } catch {
      throw tampered(counter);
    }
    if (last && plain.length === 0 && counter > 0) throw tampered(counter);
    if (plain.length) yield plain;
    if (last) return;
  }
}
