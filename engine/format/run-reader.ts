/**
 * Reading a run directory of either format through a RunDirReader: the
 * manifest, the entries index, the payload (every part checked against the
 * manifest's size and hash as it streams by), the tar entries, one file.
 * Used by verify, restore and the tests. Everything streams: memory does not
 * grow with the snapshot size.
 */
import { BastionError } from '../../core/errors.ts';
import {
  COMPLETE_NAME,
  ENTRIES_INDEX_NAME,
  FORMAT_VERSION,
  MANIFEST_NAME,
  manifestSchema,
  rawTreeDataName,
  isSafeRelativePath,
  type EntryRecord,
  type Manifest,
} from '../../core/artifact-format.ts';
import type { RunDirReader } from '../targets/target.ts';
import { ByteQueue } from './byte-queue.ts';
import { parseIdentity, type AgeIdentity } from './age-keys.ts';
import { payloadKey, readAgeHeader } from './age-header.ts';
import { decryptAgeStream } from './age-stream.ts';
import { readEntriesIndex } from './entries-index.ts';
import { createHasher } from './hashing.ts';
import { readTar, type TarEntryWithBody } from './tar-reader.ts';
import { createZstdDecompressor } from './zstd.ts';

/** How to open a run. */
export interface OpenRunOptions {
  /** age identity (`AGE-SECRET-KEY-1…`) for encrypted payloads. */
  identity?: string;
  /** Refuse runs without complete.json (default true: an incomplete run is not a snapshot). */
  requireComplete?: boolean;
}

const MAX_SMALL_FILE = 256 * 1024 * 1024;

/** Wrap a generator so that `onClose` runs however iteration ends. */
async function* closing<T>(gen: AsyncGenerator<T>, onClose: () => Promise<void>): AsyncGenerator<T> {
  try {
    yield* gen;
  } finally {
    await onClose();
  }
}

function corrupt(msg: string, reason: string, extra: Record<string, unknown> = {}): BastionError {
  return new BastionError('artifact_corrupt', msg, { details: { reason, ...extra } });
}

async function readSmall(reader: RunDirReader, name: string): Promise<Buffer> {
  const size = await reader.size(name);
  if (size === null) throw new BastionError('artifact_missing', `${name} is missing in ${reader.location}`, { details: { name } });
  if (size > MAX_SMALL_FILE) throw corrupt(`${name} is ${size} bytes, more than a ${name} can be`, 'too_large', { name });
  const chunks: Buffer[] = [];
  for await (const c of await reader.open(name)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** An opened run directory. */
export class RunReader {
  readonly reader: RunDirReader;
  readonly manifest: Manifest;
  private readonly identity: AgeIdentity | null;

  private constructor(reader: RunDirReader, manifest: Manifest, identity: AgeIdentity | null) {
    this.reader = reader;
    this.manifest = manifest;
    this.identity = identity;
  }

  /** Check complete.json, parse and validate manifest.json. */
  static async open(reader: RunDirReader, opts: OpenRunOptions = {}): Promise<RunReader> {
    if (opts.requireComplete !== false) {
      const complete = await readSmall(reader, COMPLETE_NAME).catch((e) => {
        if (e instanceof BastionError && e.code === 'artifact_missing') {
          throw new BastionError('artifact_missing', `${COMPLETE_NAME} is missing: the run never completed`, { details: { name: COMPLETE_NAME, reason: 'incomplete' } });
        }
        throw e;
      });
      let parsed: unknown;
      try {
        parsed = JSON.parse(complete.toString('utf8'));
      } catch {
        parsed = null;
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw corrupt(`${COMPLETE_NAME} is not a JSON object`, 'complete_json');
    }
    const raw = await readSmall(reader, MANIFEST_NAME);
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw));
    } catch {
      throw corrupt(`${MANIFEST_NAME} is not valid JSON`, 'manifest');
    }
    const version = (json as { format_version?: unknown } | null)?.format_version;
    if (version !== FORMAT_VERSION) {
      throw new BastionError('artifact_unsupported', `${MANIFEST_NAME}: format_version ${JSON.stringify(version)} is not supported (expected ${FORMAT_VERSION})`, {
        details: { field: 'format_version', reason: 'unsupported_version' },
      });
    }
    const parsed = manifestSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw corrupt(`${MANIFEST_NAME}: ${issue?.path.join('.')}: ${issue?.message}`, 'manifest', { field: issue?.path.join('.') });
    }
    const identity = opts.identity !== undefined ? parseIdentity(opts.identity) : null;
    return new RunReader(reader, parsed.data, identity);
  }

  /** Entry records in archive order; the count must match the manifest. */
  async *entries(): AsyncGenerator<EntryRecord> {
    const size = await this.reader.size(ENTRIES_INDEX_NAME);
    if (size === null) throw new BastionError('artifact_missing', `${ENTRIES_INDEX_NAME} is missing`, { details: { name: ENTRIES_INDEX_NAME } });
    let n = 0;
    for await (const e of readEntriesIndex(await this.reader.open(ENTRIES_INDEX_NAME))) {
      n++;
      yield e;
    }
    if (n !== this.manifest.entry_index.count) {
      throw corrupt(`${ENTRIES_INDEX_NAME} has ${n} records, the manifest says ${this.manifest.entry_index.count}`, 'entries_count');
    }
  }

  /**
   * The stored payload bytes (parts concatenated), each part checked against
   * the manifest's size and hash as it is read: `artifact_missing` for a
   * missing part, `artifact_corrupt` at the end of a part that does not match.
   */
  async *payload(): AsyncGenerator<Buffer> {
    if (this.manifest.pipeline.format !== 'archive_v1') throw new BastionError('artifact_unsupported', 'raw_tree_v1 runs have no payload', { details: { reason: 'no_payload' } });
    for (const part of this.manifest.artifacts) {
      const stored = await this.reader.size(part.name);
      if (stored === null) throw new BastionError('artifact_missing', `${part.name} is missing`, { details: { name: part.name } });
      if (stored !== part.size) throw corrupt(`${part.name} is ${stored} bytes, the manifest says ${part.size}`, 'part_size', { name: part.name });
      const h = await createHasher(part.hash_alg);
      let n = 0;
      for await (const c of await this.reader.open(part.name)) {
        const b = c as Buffer;
        n += b.length;
        if (n > part.size) throw corrupt(`${part.name} is longer than the manifest says`, 'part_size', { name: part.name });
        h.update(b);
        yield b;
      }
      if (n !== part.size) throw corrupt(`${part.name} ended after ${n} of ${part.size} bytes`, 'part_size', { name: part.name });
      if (h.digestHex() !== part.hash) throw corrupt(`${part.name} does not match its ${part.hash_alg} hash`, 'part_hash', { name: part.name });
    }
  }

  /** The tar stream: payload → age (when encrypted) → zstd. Stopping early closes every stream below. */
  async *tarStream(): AsyncGenerator<Buffer> {
    let plain: AsyncIterable<Buffer> = this.payload();
    if (this.manifest.pipeline.encryption === 'age') {
      if (!this.identity) {
        throw new BastionError('decryption_failed', `the payload is age-encrypted${this.manifest.pipeline.encryption_key ? ` (key ${this.manifest.pipeline.encryption_key})` : ''}; an identity is required`, {
          details: { reason: 'identity_required' },
        });
      }
      const q = new ByteQueue(plain);
      try {
        const { fileKey, nonce } = await readAgeHeader(q, this.identity);
        plain = closing(decryptAgeStream(q, payloadKey(fileKey, nonce)), () => q.close());
      } catch (e) {
        await q.close();
        throw e;
      }
    }
    const z = createZstdDecompressor();
    let stopped = false;
    let feedError: unknown = null;
    const waitWritable = () =>
      new Promise<void>((resolve) => {
        const done = () => {
          z.off('drain', done);
          z.off('close', done);
          z.off('error', done);
          resolve();
        };
        z.once('drain', done);
        z.once('close', done);
        z.once('error', done);
      });
    const feed = (async () => {
      try {
        for await (const c of plain) {
          if (stopped) break;
          if (!z.write(c)) await waitWritable();
          if (stopped) break;
        }
        if (!stopped) z.end();
      } catch (e) {
        feedError = e;
        z.destroy(e as Error);
      }
    })();
    try {
      for await (const c of z) yield c as Buffer;
    } catch (e) {
      if (feedError instanceof BastionError) throw feedError;
      if (e instanceof BastionError) throw e;
      throw corrupt(`payload does not decompress: ${(e as Error).message}`, 'zstd');
    } finally {
      stopped = true;
      z.destroy();
      await feed;
    }
    if (feedError) throw feedError;
  }

  /** Tar entries of the payload, each with its content stream. */
  tarEntries(): AsyncGenerator<TarEntryWithBody> {
    return readTar(this.tarStream());
  }

  /**
   * The content of one file, checked against its entry record's size and hash
   * (`artifact_corrupt` at the end when it does not match). archive_v1 scans
   * the tar stream up to the file (hard links are resolved to their first path).
   */
  async *readFile(path: string): AsyncGenerator<Buffer> {
    if (!isSafeRelativePath(path)) throw new BastionError('invalid_path', 'path must be a relative path without ..', { details: { field: 'path' } });
    let record: EntryRecord | null = null;
    for await (const e of this.entries()) if (e.path === path) record = e;
    if (!record) throw new BastionError('not_found', `${path} is not in this snapshot`, { details: { field: 'path' } });
    if (record.kind !== 'file') throw new BastionError('invalid_input', `${path} is a ${record.kind}, not a file`, { details: { field: 'path', reason: record.kind } });
    const h = await createHasher(record.hash_alg ?? 'blake3');
    let n = 0;
    for await (const c of this.rawContent(path)) {
      n += c.length;
      h.update(c);
      yield c;
    }
    if (n !== record.size || h.digestHex() !== record.hash) {
      throw corrupt(`${path}: content does not match its recorded size and hash`, 'file_hash', { path });
    }
  }

  private async *rawContent(path: string): AsyncGenerator<Buffer> {
    if (this.manifest.pipeline.format === 'raw_tree_v1') {
      const name = rawTreeDataName(path);
      if ((await this.reader.size(name)) === null) throw new BastionError('artifact_missing', `${name} is missing`, { details: { name } });
      for await (const c of await this.reader.open(name)) yield c as Buffer;
      return;
    }
    let want = path;
    for (let hop = 0; hop < 2; hop++) {
      let link: string | null = null;
      for await (const e of this.tarEntries()) {
        if (e.path !== want) continue;
        if (e.type === 'hardlink') {
          link = e.linkname;
          break;
        }
        yield* e.body();
        return;
      }
      if (link === null) break;
      want = link;
    }
    throw corrupt(`${path} is in the entries index but not in the payload`, 'missing_in_payload', { path });
  }
}
