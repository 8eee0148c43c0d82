/**
 * Content hashes of the format: BLAKE3 (hex, 256 bits) for everything we
 * write; SHA-256 is accepted when verifying, since the reference's manifest
 * type allows it. BLAKE3 runs on the calling thread: our WebAssembly SIMD
 * kernel (blake3-simd.ts, ≈ 1.47 GB/s of CPU time here) where the runtime has
 * SIMD, else hash-wasm's portable build (≈ 1.03 GB/s). A backup hashes every
 * source byte and every payload byte, so this is its largest cost after zstd.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { createBLAKE3 } from 'hash-wasm';
import { Blake3Simd, blake3SimdAvailable } from './blake3-simd.ts';
import type { HashAlg } from '../../core/artifact-format.ts';

/** An incremental hasher. */
export interface Hasher {
  update(data: Uint8Array): void;
  /** Lower-case hex digest; the hasher is reset and can be reused. */
  digestHex(): string;
}

/** A new incremental hasher for `alg`. */
export async function createHasher(alg: HashAlg = 'blake3'): Promise<Hasher> {
  if (alg === 'sha256') {
    let h = createHash('sha256');
    return {
      update: (d) => void h.update(d),
      digestHex: () => {
        const hex = h.digest('hex');
        h = createHash('sha256');
        return hex;
      },
    };
  }
  if (blake3SimdAvailable()) {
    const simd = new Blake3Simd();
    return { update: (d) => simd.update(d), digestHex: () => simd.digestHex() };
  }
  const h = await createBLAKE3();
  h.init();
  return {
    update: (d) => void h.update(d),
    digestHex: () => {
      const hex = h.digest('hex');
      h.init();
      return hex;
    },
  };
}

/** Hash of one buffer. */
export async function hashBytes(data: Uint8Array, alg: HashAlg = 'blake3'): Promise<string> {
  const h = await createHasher(alg);
  h.update(data);
  return h.digestHex();
}

/** BLAKE3 of a local file, read in 1 MiB chunks. With `noFollow`, a final symlink is refused (ELOOP). */
export async function hashFile(path: string, opts: { noFollow?: boolean } = {}): Promise<string> {
  const fh = await fs.open(path, fsConstants.O_RDONLY | (opts.noFollow ? fsConstants.O_NOFOLLOW : 0));
  try {
    const h = await createHasher('blake3');
    const buf = Buffer.allocUnsafe(1024 * 1024);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
    return h.digestHex();
  } finally {
    await fh.close();
  }
}
