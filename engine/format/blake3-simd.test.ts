import t from 'tap';
import crypto from 'node:crypto';
import { createBLAKE3 } from 'hash-wasm';
import { Blake3Simd, blake3SimdAvailable } from './blake3-simd.ts';

t.test('SIMD BLAKE3 equals hash-wasm on every boundary and on random splits', { skip: !blake3SimdAvailable() && 'no WebAssembly SIMD' }, async (t) => {
  const ref = await createBLAKE3();
  const digest = (b: Uint8Array) => ref.init().update(b).digest('hex');
  const ours = new Blake3Simd();
  t.equal(ours.digestHex(), 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262', 'empty input (official vector)');
  const data = crypto.randomBytes(300 * 1024 + 7);
  const KiB = 1024;
  const lengths = new Set<number>([1, 63, 64, 65, 1023, 1024, 1025, 2048, 2049, 3072, 4095, 4096, 4097, 5 * KiB, 16 * KiB, 63 * KiB, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 65 * KiB, 128 * KiB, 128 * KiB + 1, 129 * KiB + 5, 192 * KiB, 256 * KiB + 1024, data.length]);
  for (let i = 0; i < 30; i++) lengths.add(Math.floor(Math.random() * data.length));
  for (const n of lengths) {
    const slice = data.subarray(0, n);
    ours.update(slice);
    t.equal(ours.digestHex(), digest(slice), `length ${n} in one update`);
    // The same bytes fed in random pieces give the same digest.
    let off = 0;
    while (off < n) {
      const k = Math.min(n - off, 1 + Math.floor(Math.random() * 70_000));
      ours.update(slice.subarray(off, off + k));
      off += k;
    }
    t.equal(ours.digestHex(), digest(slice), `length ${n} in random pieces`);
  }
});

t.test('a large input across many batches', { skip: !blake3SimdAvailable() && 'no WebAssembly SIMD' }, async (t) => {
  const ref = await createBLAKE3();
  const big = crypto.randomBytes(5 * 1024 * 1024 + 12345);
  const ours = new Blake3Simd();
  for (let off = 0; off < big.length; off += 1024 * 1024) ours.update(big.subarray(off, off + 1024 * 1024));
  t.equal(ours.digestHex(), ref.init().update(big).digest('hex'));
});
