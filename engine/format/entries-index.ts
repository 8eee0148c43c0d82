/**
 * `entries.jsonl.zst`: one compact JSON record per stored entry, in archive
 * order, zstd level 3. Written to a local staging file during the walk (it is
 * small next to the payload: ≈ 40 bytes per entry compressed) and stored
 * after the payload; read back as a stream with every line validated.
 */
import fs from 'node:fs/promises';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { BastionError } from '../../core/errors.ts';
import { entryRecordSchema, serializeEntryRecord, type EntryRecord } from '../../core/artifact-format.ts';
import { createZstdCompressor, createZstdDecompressor } from './zstd.ts';

const BATCH_BYTES = 256 * 1024;
const MAX_LINE_BYTES = 1024 * 1024;

/** Writes the entries index to a local file. */
export class EntriesIndexWriter {
  private readonly z = createZstdCompressor();
  private readonly done: Promise<void>;
  private batch: string[] = [];
  private batchBytes = 0;
  /** Records written. */
  count = 0;

  private constructor(fh: fs.FileHandle) {
    const out = fh.createWriteStream();
    this.z.pipe(out);
    this.done = new Promise<void>((resolve, reject) => {
      out.once('close', resolve);
      out.once('error', reject);
      this.z.once('error', reject);
    });
    this.done.catch(() => {});
  }

  /** Start a new index file at `path` (truncated). */
  static async create(path: string): Promise<EntriesIndexWriter> {
    return new EntriesIndexWriter(await fs.open(path, 'w', 0o600));
  }

  /**
   * Append one record. Not re-validated here (the writers build typed records;
   * a zod parse per entry would cost seconds per million files); the readers
   * validate every line, and the round-trip tests read every index back.
   */
  async add(record: EntryRecord): Promise<void> {
    const line = serializeEntryRecord(record) + '\n';
    this.batch.push(line);
    this.batchBytes += line.length;
    this.count++;
    if (this.batchBytes >= BATCH_BYTES) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.batch.length === 0) return;
    const data = Buffer.from(this.batch.join(''), 'utf8');
    this.batch = [];
    this.batchBytes = 0;
    if (!this.z.write(data)) await once(this.z, 'drain');
  }

  /** Finish the file. */
  async close(): Promise<void> {
    await this.flush();
    this.z.end();
    await this.done;
  }

  /** Drop the file being written (on failure). */
  destroy(): void {
    this.z.destroy();
  }
}

function corrupt(msg: string): BastionError {
  return new BastionError('artifact_corrupt', `entries index: ${msg}`, { details: { reason: 'entries_index' } });
}

/** Records of an entries index stream (compressed bytes in), each validated. */
export async function* readEntriesIndex(compressed: Readable): AsyncGenerator<EntryRecord> {
  const z = createZstdDecompressor();
  compressed.once('error', (e) => z.destroy(e));
  compressed.pipe(z);
  let rest = Buffer.alloc(0);
  let lineNo = 0;
  const parse = (line: Buffer): EntryRecord => {
    lineNo++;
    let json: unknown;
    try {
      json = JSON.parse(line.toString('utf8'));
    } catch {
      throw corrupt(`line ${lineNo} is not JSON`);
    }
    const r = entryRecordSchema.safeParse(json);
    if (!r.success) throw corrupt(`line ${lineNo}: ${r.error.issues[0]?.path.join('.')} ${r.error.issues[0]?.message}`);
    return r.data;
  };
  try {
    for await (const chunk of z) {
      let buf = rest.length ? Buffer.concat([rest, chunk as Buffer]) : (chunk as Buffer);
      let nl: number;
      while ((nl = buf.indexOf(0x0a)) >= 0) {
        if (nl > 0) yield parse(buf.subarray(0, nl));
        buf = buf.subarray(nl + 1);
      }
      if (buf.length > MAX_LINE_BYTES) throw corrupt(`line ${lineNo + 1} is longer than ${MAX_LINE_BYTES} bytes`);
      rest = Buffer.from(buf);
    }
  } catch (e) {
    if (e instanceof BastionError) throw e;
    throw new BastionError('artifact_corrupt', `entries index: ${(e as Error).message}`, { details: { reason: 'entries_index' }, cause: e });
  } finally {
    compressed.destroy();
    z.destroy();
  }
  if (rest.length) yield parse(rest);
}
