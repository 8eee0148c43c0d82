/**
 * BLAKE3 with WebAssembly SIMD: four chunks (or four parent nodes) are
 * compressed at once, one per 32-bit lane, and a 64-chunk (64 KiB) subtree is
 * reduced inside the same kernel before the JS side sees one chaining value.
 *
 * Why our own: hashing is the largest cost a backup adds on top of tar and
 * zstd (every source byte and every payload byte, ≈ 1.7 GB per GiB of
 * source). hash-wasm's portable BLAKE3 runs at ≈ 0.95 GB/s here; this kernel
 * is measured in bench output and must equal hash-wasm's digests (tested on
 * every length around the chunk and batch boundaries, and on random splits).
 *
 * The WebAssembly module is generated below (no toolchain needed): one
 * function `hash4(in, stride, nblocks, lastLen, flagsAll, flagsStart,
 * flagsEnd, params, out)` that runs the BLAKE3 compression over `nblocks`
 * consecutive 64-byte blocks in each of 4 lanes (lane i reads at
 * in + i·stride), with the chaining value and per-lane counters taken from
 * `params`, and writes each lane's 8-word result to out + 32·i. The same
 * kernel serves chunks (16 blocks, CHUNK_START/CHUNK_END), the final partial
 * chunk, parents (1 block, PARENT) and the root (ROOT).
 *
 * Spec: https://github.com/BLAKE3-team/BLAKE3-specs (IV, message schedule,
 * flags, tree). Only the default hash mode (no key, no derive_key), 32-byte output.
 */

const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const MSG_PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const CHUNK_START = 1;
const CHUNK_END = 2;
const PARENT = 4;
const ROOT = 8;
const CHUNK_LEN = 1024;

// ---- a minimal WebAssembly binary writer ----------------------------------------------

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const name = (s: string): number[] => [...uleb(s.length), ...Array.from(Buffer.from(s, 'utf8'))];

const I32 = 0x7f;
const V128 = 0x7b;

/** Instruction emitter for the kernel body. */
class Code {
  readonly bytes: number[] = [];
  get(i: number): this {
    this.bytes.push(0x20, ...uleb(i));
    return this;
  }
  set(i: number): this {
    this.bytes.push(0x21, ...uleb(i));
    return this;
  }
  tee(i: number): this {
    this.bytes.push(0x22, ...uleb(i));
    return this;
  }
  i32(n: number): this {
    this.bytes.push(0x41, ...sleb(n | 0));
    return this;
  }
  op(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  simd(opcode: number, ...imm: number[]): this {
    this.bytes.push(0xfd, ...uleb(opcode), ...imm);
    return this;
  }
  i32load(offset: number): this {
    return this.op(0x28, 2, ...uleb(offset));
  }
  v128load(offset: number): this {
    return this.simd(0x00, 0, ...uleb(offset));
  }
  v128store(offset: number): this {
    return this.simd(0x0b, 0, ...uleb(offset));
  }
  shuffle(lanes: number[]): this {
    return this.simd(0x0d, ...lanes);
  }
  splat(): this {
    return this.simd(0x11);
  }
  add(): this {
    return this.simd(0xae, ...[]);
  }
  xor(): this {
    return this.simd(0x51);
  }
  or(): this {
    return this.simd(0x50);
  }
  shl(): this {
    return this.simd(0xab);
  }
  shrU(): this {
    return this.simd(0xad);
  }
}

/** Byte shuffle rotating every 32-bit lane right by 16 or 8 bits. */
const ROT16 = Array.from({ length: 16 }, (_, i) => (i & ~3) + ((i + 2) & 3));
const ROT8 = Array.from({ length: 16 }, (_, i) => (i & ~3) + ((i + 1) & 3));

function buildKernel(): Uint8Array {
  // Parameters.
  const P_IN = 0, P_STRIDE = 1, P_NBLOCKS = 2, P_LASTLEN = 3, P_FALL = 4, P_FSTART = 5, P_FEND = 6, P_PARAMS = 7, P_OUT = 8;
  // Locals: i32 b, p0..p3; v128 h0..h7, v0..v15, m0..m15, t0..t3.
  const L_B = 9, L_P = 10; // p0..p3 = 10..13
  const I32_LOCALS = 5;
  const L_H = 14; // h0..h7 = 14..21
  const L_V = 22; // v0..v15 = 22..37
  const L_M = 38; // m0..m15 = 38..53
  const L_T = 54; // t0..t3 = 54..57
  const V128_LOCALS = 8 + 16 + 16 + 4;

  const c = new Code();
  // h = splat(cv words from params); p_i = in + i·stride; b = 0.
  for (let i = 0; i < 8; i++) c.get(P_PARAMS).i32load(4 * i).splat().set(L_H + i);
  for (let i = 0; i < 4; i++) c.get(P_IN).get(P_STRIDE).i32(i).op(0x6c /* i32.mul */).op(0x6a /* i32.add */).set(L_P + i);
  c.i32(0).set(L_B);

  c.op(0x03, 0x40); // loop
  // Message words, transposed so that m_j holds word j of the current block of each lane.
  for (let k = 0; k < 4; k++) {
    for (let lane = 0; lane < 4; lane++) c.get(L_P + lane).v128load(16 * k).set(L_T + lane);
    const lo = [0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23];
    const hi = [8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31];
    // t0' = (a0 b0 a1 b1), t1' = (a2 b2 a3 b3), t2' = (c0 d0 c1 d1), t3' = (c2 d2 c3 d3); kept in m slots as scratch.
    c.get(L_T + 0).get(L_T + 1).shuffle(lo).set(L_M + 4 * k + 0);
    c.get(L_T + 0).get(L_T + 1).shuffle(hi).set(L_M + 4 * k + 1);
    c.get(L_T + 2).get(L_T + 3).shuffle(lo).set(L_M + 4 * k + 2);
    c.get(L_T + 2).get(L_T + 3).shuffle(hi).set(L_M + 4 * k + 3);
    const low64 = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
    const high64 = [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31];
    c.get(L_M + 4 * k + 0).get(L_M + 4 * k + 2).shuffle(low64).set(L_T + 0); // a0 b0 c0 d0
    c.get(L_M + 4 * k + 0).get(L_M + 4 * k + 2).shuffle(high64).set(L_T + 1); // a1 b1 c1 d1
    c.get(L_M + 4 * k + 1).get(L_M + 4 * k + 3).shuffle(low64).set(L_T + 2); // a2 b2 c2 d2
    c.get(L_M + 4 * k + 1).get(L_M + 4 * k + 3).shuffle(high64).set(L_T + 3); // a3 b3 c3 d3
    for (let j = 0; j < 4; j++) c.get(L_T + j).set(L_M + 4 * k + j);
  }
  // State: v0..7 = h, v8..11 = IV, v12/v13 = counters, v14 = block length, v15 = flags.
  for (let i = 0; i < 8; i++) c.get(L_H + i).set(L_V + i);
  for (let i = 0; i < 4; i++) c.i32(IV[i]!).splat().set(L_V + 8 + i);
  c.get(P_PARAMS).v128load(32).set(L_V + 12);
  c.get(P_PARAMS).v128load(48).set(L_V + 13);
  // isLast = b == nblocks - 1 (kept on the stack for two selects via a temporary i32 local: reuse P_STRIDE? no: recompute).
  const isLast = () => c.get(L_B).get(P_NBLOCKS).i32(1).op(0x6b /* i32.sub */).op(0x46 /* i32.eq */);
  c.get(P_LASTLEN).i32(64);
  isLast();
  c.op(0x1b /* select */).splat().set(L_V + 14);
  c.get(P_FALL);
  c.get(P_FSTART).i32(0).get(L_B).op(0x45 /* i32.eqz */).op(0x1b).op(0x72 /* i32.or */);
  c.get(P_FEND).i32(0);
  isLast();
  c.op(0x1b).op(0x72).splat().set(L_V + 15);

  const rotr = (n: number, t: number) => {
    if (n === 16) c.tee(t).get(t).shuffle(ROT16);
    else if (n === 8) c.tee(t).get(t).shuffle(ROT8);
    else c.tee(t).i32(n).shrU().get(t).i32(32 - n).shl().or();
  };
  const g = (a: number, b: number, cc: number, d: number, mx: number, my: number) => {
    const [A, B, C, D] = [L_V + a, L_V + b, L_V + cc, L_V + d];
    c.get(A).get(B).add().get(L_M + mx).add().set(A);
    c.get(D).get(A).xor();
    rotr(16, L_T);
    c.set(D);
    c.get(C).get(D).add().set(C);
    c.get(B).get(C).xor();
    rotr(12, L_T);
    c.set(B);
    c.get(A).get(B).add().get(L_M + my).add().set(A);
    c.get(D).get(A).xor();
    rotr(8, L_T);
    c.set(D);
    c.get(C).get(D).add().set(C);
    c.get(B).get(C).xor();
    rotr(7, L_T);
    c.set(B);
  };
  let s = Array.from({ length: 16 }, (_, i) => i);
  for (let round = 0; round < 7; round++) {
    g(0, 4, 8, 12, s[0]!, s[1]!);
    g(1, 5, 9, 13, s[2]!, s[3]!);
    g(2, 6, 10, 14, s[4]!, s[5]!);
    g(3, 7, 11, 15, s[6]!, s[7]!);
    g(0, 5, 10, 15, s[8]!, s[9]!);
    g(1, 6, 11, 12, s[10]!, s[11]!);
    g(2, 7, 8, 13, s[12]!, s[13]!);
    g(3, 4, 9, 14, s[14]!, s[15]!);
    s = MSG_PERMUTATION.map((p) => s[p]!);
  }
  for (let i = 0; i < 8; i++) c.get(L_V + i).get(L_V + 8 + i).xor().set(L_H + i);
  for (let i = 0; i < 4; i++) c.get(L_P + i).i32(64).op(0x6a).set(L_P + i);
  c.get(L_B).i32(1).op(0x6a).tee(L_B).get(P_NBLOCKS).op(0x49 /* i32.lt_u */).op(0x0d, 0); // br_if 0
  c.op(0x0b); // end loop

  // Transpose h0..h7 back to lane order and store 32 bytes per lane.
  const lo = [0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23];
  const hi = [8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31];
  const low64 = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
  const high64 = [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31];
  for (let half = 0; half < 2; half++) {
    const h = L_H + 4 * half;
    c.get(h + 0).get(h + 1).shuffle(lo).set(L_M + 0);
    c.get(h + 0).get(h + 1).shuffle(hi).set(L_M + 1);
    c.get(h + 2).get(h + 3).shuffle(lo).set(L_M + 2);
    c.get(h + 2).get(h + 3).shuffle(hi).set(L_M + 3);
    const rows: Array<[number, number, number[]]> = [
      [0, 2, low64],
      [0, 2, high64],
      [1, 3, low64],
      [1, 3, high64],
    ];
    rows.forEach(([x, y, sel], lane) => {
      c.get(P_OUT).get(L_M + x).get(L_M + y).shuffle(sel).v128store(32 * lane + 16 * half);
    });
  }
  c.op(0x0b); // end function

  const type = [0x60, ...vec(Array.from({ length: 9 }, () => [I32])), ...vec([])];
  const body = [...vec([[...uleb(I32_LOCALS), I32], [...uleb(V128_LOCALS), V128]]), ...c.bytes];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([type])),
    ...section(3, vec([[0]])),
    ...section(5, vec([[0x00, ...uleb(MEMORY_PAGES)]])),
    ...section(7, vec([[...name('mem'), 0x02, 0], [...name('hash4'), 0x00, 0]])),
    ...section(10, vec([[...uleb(body.length), ...body]])),
  ];
  return Uint8Array.from(bytes);
}

// ---- memory layout and the incremental hasher -------------------------------------------

const MEMORY_PAGES = 2; // 128 KiB, fixed
const PARAMS = 0; // cv (8 words), counter lo (4 words), counter hi (4 words)
const OUT = 64; // 4 × 32 bytes
const LEVEL_A = 256; // up to 64 chaining values
const LEVEL_B = LEVEL_A + 64 * 32; // up to 32
const INPUT = 4096;
const BATCH_CHUNKS = 64;
const BATCH = BATCH_CHUNKS * CHUNK_LEN; // 64 KiB; INPUT + BATCH + 64 bytes of padding < 128 KiB

type Kernel = (inp: number, stride: number, nblocks: number, lastLen: number, flagsAll: number, flagsStart: number, flagsEnd: number, params: number, out: number) => void;

/** The part of the WebAssembly JS API we use (the project's TS libs do not declare it). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

let compiled: object | null | undefined;

/** The compiled kernel module, or null when this runtime has no WebAssembly SIMD. */
function kernelModule(): object | null {
  if (compiled !== undefined) return compiled;
  const bytes = buildKernel();
  compiled = wasm && wasm.validate(bytes) ? new wasm.Module(bytes) : null;
  return compiled;
}

/** True when the SIMD kernel can run here. */
export function blake3SimdAvailable(): boolean {
  return kernelModule() !== null;
}

/** Incremental BLAKE3-256 on the SIMD kernel (each instance owns 128 KiB of wasm memory). */
export class Blake3Simd {
  private readonly kernel: Kernel;
  private readonly mem: Uint8Array;
  private readonly words: Uint32Array;
  /** Bytes buffered at INPUT (never more than BATCH). */
  private pending = 0;
  /** Chunks already folded into the stack. */
  private chunks = 0;
  private readonly stack: Uint32Array[] = [];

  constructor() {
    const mod = kernelModule();
    if (!mod) throw new Error('WebAssembly SIMD is not available');
    const inst = new wasm!.Instance(mod, {});
    this.kernel = inst.exports.hash4 as Kernel;
    const memory = inst.exports.mem as { buffer: ArrayBuffer };
    this.mem = new Uint8Array(memory.buffer);
    this.words = new Uint32Array(memory.buffer);
  }

  update(data: Uint8Array): void {
    let off = 0;
    while (off < data.length) {
      if (this.pending === BATCH) {
        // More input follows, so the buffered chunks are not the last one: fold them.
        this.foldBatch();
        this.pending = 0;
      }
      const n = Math.min(BATCH - this.pending, data.length - off);
      this.mem.set(n === data.length ? data : data.subarray(off, off + n), INPUT + this.pending);
      this.pending += n;
      off += n;
    }
  }

  /** Hex digest of everything since the last digest; the hasher is then reset. */
  digestHex(): string {
    const pending = this.pending;
    const fullChunks = pending === 0 ? 0 : Math.ceil(pending / CHUNK_LEN) - 1;
    for (let c = 0; c < fullChunks; c += 4) {
      const lanes = Math.min(4, fullChunks - c);
      this.setParams(this.chunks, 1);
      this.kernel(INPUT + c * CHUNK_LEN, CHUNK_LEN, 16, 64, 0, CHUNK_START, CHUNK_END, PARAMS, OUT);
      const cvs = Array.from({ length: lanes }, (_, i) => this.outCv(i)); // before a merge reuses OUT
      for (const cv of cvs) this.push(cv, 1);
    }
    // As the reference does at the end of every update: merge what the chunk
    // count allows, so that no two unmerged subtrees sit on top of the stack.
    this.mergeTo(popcount(this.chunks));
    const lastLen = pending - fullChunks * CHUNK_LEN;
    const nblocks = Math.max(1, Math.ceil(lastLen / 64));
    const blockLast = lastLen - (nblocks - 1) * 64;
    const start = INPUT + fullChunks * CHUNK_LEN;
    this.mem.fill(0, start + lastLen, start + nblocks * 64);
    this.setParams(this.chunks, 0);
    let cv: Uint32Array;
    if (this.stack.length === 0) {
      this.kernel(start, 0, nblocks, blockLast, 0, CHUNK_START, CHUNK_END | ROOT, PARAMS, OUT);
      cv = this.outCv(0);
    } else {
      this.kernel(start, 0, nblocks, blockLast, 0, CHUNK_START, CHUNK_END, PARAMS, OUT);
      cv = this.outCv(0);
      while (this.stack.length > 0) {
        const left = this.stack.pop()!;
        cv = this.parent(left, cv, this.stack.length === 0 ? ROOT : 0);
      }
    }
    this.pending = 0;
    this.chunks = 0;
    this.stack.length = 0;
    return Buffer.from(cv.buffer, cv.byteOffset, 32).toString('hex');
  }

  /** Lane parameters: IV as chaining value, counter base + lane·step. */
  private setParams(counter: number, step: number): void {
    const w = this.words;
    for (let i = 0; i < 8; i++) w[PARAMS / 4 + i] = IV[i]!;
    for (let lane = 0; lane < 4; lane++) {
      const c = counter + lane * step;
      w[PARAMS / 4 + 8 + lane] = c >>> 0;
      w[PARAMS / 4 + 12 + lane] = Math.floor(c / 0x1_0000_0000) >>> 0;
    }
  }

  private outCv(lane: number): Uint32Array {
    return this.words.slice(OUT / 4 + 8 * lane, OUT / 4 + 8 * lane + 8);
  }

  /** Fold 64 full chunks (a complete subtree: batches start at multiples of 64 chunks) into one chaining value. */
  private foldBatch(): void {
    for (let g = 0; g < BATCH_CHUNKS; g += 4) {
      this.setParams(this.chunks + g, 1);
      this.kernel(INPUT + g * CHUNK_LEN, CHUNK_LEN, 16, 64, 0, CHUNK_START, CHUNK_END, PARAMS, LEVEL_A + g * 32);
    }
    // Parent levels: 64 → 32 → … → 1, four parents per kernel call (each parent block is two adjacent CVs).
    let from = LEVEL_A;
    let to = LEVEL_B;
    this.setParams(0, 0);
    for (let n = BATCH_CHUNKS / 2; n >= 1; n >>= 1) {
      for (let p = 0; p < n; p += 4) this.kernel(from + p * 64, 64, 1, 64, PARENT, 0, 0, PARAMS, to + p * 32);
      [from, to] = [to, from];
    }
    this.push(this.words.slice(from / 4, from / 4 + 8), BATCH_CHUNKS);
  }

  /** Add the chaining value of a complete subtree of `size` chunks, merging lazily (the last one may become the root). */
  private push(cv: Uint32Array, size: number): void {
    this.mergeTo(popcount(this.chunks));
    this.stack.push(cv);
    this.chunks += size;
  }

  private mergeTo(keep: number): void {
    while (this.stack.length > keep) {
      const right = this.stack.pop()!;
      const left = this.stack.pop()!;
      this.stack.push(this.parent(left, right, 0));
    }
  }

  private parent(left: Uint32Array, right: Uint32Array, extra: number): Uint32Array {
    const w = this.words;
    w.set(left, LEVEL_B / 4);
    w.set(right, LEVEL_B / 4 + 8);
    this.setParams(0, 0);
    this.kernel(LEVEL_B, 0, 1, 64, PARENT, 0, extra, PARAMS, OUT);
    return this.outCv(0);
  }
}

function popcount(n: number): number {
  let c = 0;
  while (n > 0) {
    c += n % 2;
    n = Math.floor(n / 2);
  }
  return c;
}
