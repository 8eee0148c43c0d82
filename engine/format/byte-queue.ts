/**
 * Pull-based reads of exact byte counts from an async stream of chunks (tar
 * headers, age headers), without copying more than needed: chunks are kept as
 * received and sliced.
 */
import { BastionError } from '../../core/errors.ts';

/** Reads exact amounts from an async iterable of byte chunks. */
export class ByteQueue {
  private readonly it: AsyncIterator<Uint8Array>;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private done = false;
  /** Bytes handed out so far (for error messages). */
  position = 0;

  constructor(src: AsyncIterable<Uint8Array>) {
    this.it = src[Symbol.asyncIterator]();
  }

  private async fill(min: number): Promise<boolean> {
    while (this.buffered < min && !this.done) {
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        break;
      }
      const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      if (b.length === 0) continue;
      this.chunks.push(b);
      this.buffered += b.length;
    }
    return this.buffered >= min;
  }

  /** Exactly `n` bytes; `artifact_corrupt` when the stream ends first. */
  async readExact(n: number, what = 'data'): Promise<Buffer> {
    if (!(await this.fill(n))) {
      throw new BastionError('artifact_corrupt', `unexpected end of stream while reading ${what} at byte ${this.position + this.buffered}`, { details: { reason: 'truncated' } });
    }
    return this.take(n);
  }

  /** `n` bytes, or fewer only when the stream ends first (empty at the end). */
  async readUpTo(n: number): Promise<Buffer> {
    await this.fill(n);
    return this.take(Math.min(n, this.buffered));
  }

  /** Up to `max` bytes (at least 1), or null at the end of the stream. */
  async readSome(max: number): Promise<Buffer | null> {
    if (!(await this.fill(1))) return null;
    return this.take(Math.min(max, this.chunks[0]!.length));
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    return !(await this.fill(1));
  }

  /** Discard `n` bytes; `artifact_corrupt` when the stream ends first. */
  async skip(n: number, what = 'data'): Promise<void> {
    let left = n;
    while (left > 0) {
      const b = await this.readSome(left);
      if (b === null) throw new BastionError('artifact_corrupt', `unexpected end of stream while skipping ${what}`, { details: { reason: 'truncated' } });
      left -= b.length;
    }
  }

  /** Stop reading the source (closes it). */
  async close(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    if (!this.done) {
      this.done = true;
      await this.it.return?.();
    }
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    this.position += n;
    this.buffered -= n;
    const first = this.chunks[0]!;
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}
