/**
 * Streaming tar reader: yields each entry with its metadata and a body to
 * consume before asking for the next one (an unconsumed body is skipped).
 * Memory stays at one chunk plus one header whatever the entry sizes.
 *
 * Paths are normalised (leading `./` and trailing `/` removed) and must be
 * relative without `..`: anything else is `artifact_corrupt`, so a hostile
 * archive cannot name files outside a restore directory.
 */
import { BastionError } from '../../core/errors.ts';
import { isSafeRelativePath } from '../../core/artifact-format.ts';
import { ByteQueue } from './byte-queue.ts';
import { BLOCK, decodeHeader, decodePaxRecords, isZeroBlock, paddingFor, type RawHeader, type TarEntryType } from './tar-header.ts';

/** One decoded entry. */
export interface TarEntry {
  path: string;
  type: TarEntryType;
  /** The raw type flag (`0`, `5`, `2`, `1`, `3`…). */
  typeflag: string;
  /** Permission bits. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  /** Symlink target or hard-link target path ('' otherwise). */
  linkname: string;
  /** `SCHILY.xattr.*` records: name → raw value. */
  xattrs: Record<string, Buffer>;
}

/** An entry and its content. */
export interface TarEntryWithBody extends TarEntry {
  /** The content in chunks (empty for anything but files); read it at most once. */
  body(): AsyncIterable<Buffer>;
}

const MAX_META_BYTES = 16 * 1024 * 1024;
const READ_CHUNK = 1024 * 1024;

function corrupt(msg: string, reason = 'tar_format'): BastionError {
  return new BastionError('artifact_corrupt', `tar: ${msg}`, { details: { reason } });
}

/** Normalise an archive path; `artifact_corrupt` for absolute paths or `..`. */
export function normalizeArchivePath(raw: string): string {
  let p = raw;
  while (p.startsWith('./')) p = p.slice(2);
  p = p.replace(/\/+$/, '');
  if (!isSafeRelativePath(p)) throw corrupt(`unsafe path in archive: ${JSON.stringify(raw.slice(0, 200))}`, 'unsafe_path');
  return p;
}

/** Read entries from a tar byte stream (already decrypted and decompressed). */
export async function* readTar(src: AsyncIterable<Uint8Array>): AsyncGenerator<TarEntryWithBody> {
  const q = new ByteQueue(src);
  let globalPax = new Map<string, Buffer>();
  let pax: Map<string, Buffer> | null = null;
  let longName: Buffer | null = null;
  let longLink: Buffer | null = null;
  try {
    for (;;) {
      if (await q.atEnd()) throw corrupt('archive ends without the end-of-archive marker', 'truncated');
      const block = await q.readExact(BLOCK, 'tar header');
      if (isZeroBlock(block)) return; // end of archive; trailing zeros are ignored
      const h = decodeHeader(block);
      if (h.typeflag === 'x' || h.typeflag === 'g' || h.typeflag === 'L' || h.typeflag === 'K') {
        if (h.size > MAX_META_BYTES) throw corrupt('extended header too large');
        const data = await q.readExact(h.size, 'tar extended header');
        await q.skip(paddingFor(h.size), 'tar padding');
        if (h.typeflag === 'x') pax = decodePaxRecords(data);
        else if (h.typeflag === 'g') globalPax = new Map([...globalPax, ...decodePaxRecords(data)]);
        else if (h.typeflag === 'L') longName = cstring(data);
        else longLink = cstring(data);
        continue;
      }
      const entry = buildEntry(h, new Map([...globalPax, ...(pax ?? [])]), longName, longLink);
      pax = null;
      longName = null;
      longLink = null;
      // Hard links, links and directories carry no content even if a size is set (POSIX).
      const contentSize = entry.type === 'file' || entry.type === 'other' ? entry.size : 0;
      let remaining = contentSize;
      let bodyTaken = false;
      const body = async function* (): AsyncGenerator<Buffer> {
        if (bodyTaken) throw new Error('tar entry body read twice');
        bodyTaken = true;
        while (remaining > 0) {
          const b = await q.readSome(Math.min(remaining, READ_CHUNK));
          if (b === null) throw corrupt(`content of ${entry.path} is truncated`, 'truncated');
          remaining -= b.length;
          yield b;
        }
      };
      yield { ...entry, body };
      if (remaining > 0) await q.skip(remaining, 'tar content');
      remaining = 0;
      await q.skip(paddingFor(contentSize), 'tar padding');
    }
  } finally {
    await q.close();
  }
}

function cstring(b: Buffer): Buffer {
  const nul = b.indexOf(0);
  return nul < 0 ? b : b.subarray(0, nul);
}

function buildEntry(h: RawHeader, pax: Map<string, Buffer>, longName: Buffer | null, longLink: Buffer | null): TarEntry {
  let pathBytes = longName ?? (h.prefix.length ? Buffer.concat([h.prefix, Buffer.from('/'), h.name]) : h.name);
  const paxPath = pax.get('path');
  if (paxPath) pathBytes = paxPath;
  let linkBytes = longLink ?? h.linkname;
  const paxLink = pax.get('linkpath');
  if (paxLink) linkBytes = paxLink;
  const num = (key: string, fallback: number): number => {
    const v = pax.get(key);
    if (!v) return fallback;
    const s = v.toString('latin1');
    if (!/^-?\d+(\.\d+)?$/.test(s)) throw corrupt(`bad pax ${key}`);
    const n = Math.floor(Number(s));
    if (!Number.isSafeInteger(n)) throw corrupt(`pax ${key} out of range`);
    return n;
  };
  const xattrs: Record<string, Buffer> = {};
  for (const [k, v] of pax) if (k.startsWith('SCHILY.xattr.')) xattrs[k.slice('SCHILY.xattr.'.length)] = v;
  const typeflag = h.typeflag;
  const type: TarEntryType =
    typeflag === '0' || typeflag === '7' ? 'file' : typeflag === '5' ? 'dir' : typeflag === '2' ? 'symlink' : typeflag === '1' ? 'hardlink' : 'other';
  const size = num('size', h.size);
  if (size < 0) throw corrupt('negative size');
  const rawPath = pathBytes.toString('utf8');
  const linkname = linkBytes.toString('utf8');
  return {
    path: normalizeArchivePath(rawPath),
    type,
    typeflag,
    mode: h.mode & 0o7777,
    uid: num('uid', h.uid),
    gid: num('gid', h.gid),
    size,
    mtime: num('mtime', h.mtime),
    linkname: type === 'hardlink' ? normalizeArchivePath(linkname) : linkname,
    xattrs,
  };
}
