/**
 * Cuts the payload byte stream (zstd, possibly age-encrypted) into parts of
 * `split_bytes` — `payload.part000001`, … — hashing each with BLAKE3 and
 * storing it through a {@link FileSink}. Every part but the last is exactly
 * `split_bytes` long; a part is opened only when a byte for it arrives, so no
 * empty part is ever written.
 *
 * Resume: before a part is produced, the stored copy is looked up
 * ({@link trustedStoredCopy}). If there is one, the part's bytes are only
 * hashed, not written; at the end of the part the size and hash must equal the
 * stored copy's, otherwise the stored parts from here on belong to a different
 * archive (the source changed) and {@link ResumeMismatch} tells the writer to
 * start again, writing every part from this one on.
 */
import { partName, type ArtifactPart } from '../../core/artifact-format.ts';
import { BastionError } from '../../core/errors.ts';
import type { RunDirWriter } from '../targets/target.ts';
import { openFileSink, trustedStoredCopy, type FileSink } from './file-sink.ts';
import { createHasher, type Hasher } from './hashing.ts';
import type { JournalRecord, ResumeJournal } from './resume-journal.ts';

/** A stored part differs from the regenerated one: restart with writes from `partIndex` on. */
export class ResumeMismatch extends Error {
  readonly partIndex: number;

  constructor(partIndex: number) {
    super(`stored ${partName(partIndex)} differs from the regenerated one`);
    this.partIndex = partIndex;
  }
}

/** Where parts go and how. */
export interface PartWriterOptions {
  writer: RunDirWriter;
  journal: ResumeJournal;
  stagingDir: string;
  splitBytes: number;
  /** Parts with an index ≥ this are always written (after a ResumeMismatch). */
  writeFrom: number;
  /** Called after each part is stored or skipped. */
  onPart?: (part: ArtifactPart, skipped: boolean) => void;
  /** Checked before each part starts. */
  signal?: AbortSignal | undefined;
}

/** The payload splitter of one attempt. */
export class PartWriter {
  private readonly o: PartWriterOptions;
  private readonly hasher: Hasher;
  private readonly parts: ArtifactPart[] = [];
  private index = 0;
  private size = 0;
  private open = false;
  private sink: FileSink | null = null;
  private expected: JournalRecord | null = null;
  /** Bytes of parts that were already stored and skipped. */
  skippedBytes = 0;
  skippedParts = 0;

  private constructor(o: PartWriterOptions, hasher: Hasher) {
    this.o = o;
    this.hasher = hasher;
  }

  static async create(o: PartWriterOptions): Promise<PartWriter> {
    return new PartWriter(o, await createHasher('blake3'));
  }

  /** Append payload bytes. */
  async write(buf: Buffer): Promise<void> {
    let p = 0;
    while (p < buf.length) {
      if (!this.open) await this.startPart();
      const n = Math.min(this.o.splitBytes - this.size, buf.length - p);
      const piece = p === 0 && n === buf.length ? buf : buf.subarray(p, p + n);
      this.hasher.update(piece);
      if (this.sink) await this.sink.write(piece);
      this.size += n;
      p += n;
      if (this.size === this.o.splitBytes) await this.endPart();
    }
  }

  /** Store the last part and return every part's name, size and hash. */
  async finish(): Promise<ArtifactPart[]> {
    if (this.open) await this.endPart();
    return this.parts;
  }

  /** Remove the partial file of the part being written, if any. */
  async abort(): Promise<void> {
    await this.sink?.abort();
    this.sink = null;
  }

  private async startPart(): Promise<void> {
    if (this.o.signal?.aborted) throw new BastionError('backup_aborted', undefined, { cause: this.o.signal.reason });
    this.index++;
    this.size = 0;
    this.open = true;
    const name = partName(this.index);
    this.expected = this.index < this.o.writeFrom ? await trustedStoredCopy(this.o.writer, this.o.journal, name) : null;
    this.sink = this.expected ? null : await openFileSink(this.o.writer, name, this.o.stagingDir);
  }

  private async endPart(): Promise<void> {
    const name = partName(this.index);
    const hash = this.hasher.digestHex();
    this.open = false;
    const part: ArtifactPart = { name, size: this.size, hash_alg: 'blake3', hash };
    if (this.expected) {
      if (this.expected.size !== this.size || this.expected.hash !== hash) throw new ResumeMismatch(this.index);
      this.skippedBytes += this.size;
      this.skippedParts++;
    } else {
      const sink = this.sink!;
      this.sink = null;
      await sink.commit();
    }
    await this.o.journal.record(name, this.size, hash);
    this.parts.push(part);
    this.o.onPart?.(part, this.expected !== null);
    this.expected = null;
  }
}
