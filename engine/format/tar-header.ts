/**
 * POSIX tar (pax interchange format) headers: encoding for our writer,
 * decoding for our reader.
 *
 * Writer: a POSIX ustar header (magic `ustar\0`, version `00`), preceded by a
 * pax extended header (`x`) only when a value does not fit ustar: a path or
 * link target that is not ASCII or too long, a size ≥ 8 GiB, an id ≥ 2^21, a
 * negative or huge mtime, extended attributes (`SCHILY.xattr.<name>`, raw
 * bytes, as GNU tar and star write them). Numbers that do not fit their octal
 * field are also written base-256 (GNU), so readers that ignore pax still get
 * the right size. uname/gname are left empty (restore works on numeric ids).
 *
 * Reader: ustar, pax (`x` and `g`), GNU (`ustar  ` magic, `L`/`K` long names,
 * base-256 numbers) and v7 headers, which covers what the Rust reference's tar
 * crate writes (GNU headers with long-name extensions).
 */
import { BastionError } from '../../core/errors.ts';

/** Tar block size. */
export const BLOCK = 512;
/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);

/** Entry types we write and tell apart when reading. */
export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';

/** What the writer needs to encode one entry. */
export interface TarHeaderInput {
  /** Archive path, relative, no trailing slash (added for directories). */
  path: string;
  type: Exclude<TarEntryType, 'other'>;
  /** Permission bits (st_mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Content size; 0 for anything but files. */
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Symlink target or hard-link target path. */
  linkname?: string;
  /** Extended attributes: name → raw value. */
  xattrs?: Record<string, Uint8Array>;
}

const MAX_OCTAL_11 = 0o77777777777; // size and mtime fields: 11 digits
const MAX_OCTAL_7 = 0o7777777; // mode, uid, gid fields: 7 digits
const ASCII_RE = /^[\x01-\x7f]*$/;

/** Bytes of padding after `size` bytes of content. */
export function paddingFor(size: number): number {
  const r = size % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

/** The header block(s) of one entry: an optional pax header with its records, then the ustar header. */
export function encodeHeader(h: TarHeaderInput): Buffer {
  const path = h.type === 'dir' ? `${h.path}/` : h.path;
  const pax: Array<[string, Uint8Array | string]> = [];
  let name = path;
  let prefix = '';
  if (!ASCII_RE.test(path) || Buffer.byteLength(path) > 100) {
    const split = ASCII_RE.test(path) ? splitUstar(path) : null;
    if (split) {
      [prefix, name] = split;
    } else {
      pax.push(['path', path]);
      name = asciiFallback(path, 100);
    }
  }
  let linkname = h.linkname ?? '';
  if (linkname !== '' && (!ASCII_RE.test(linkname) || Buffer.byteLength(linkname) > 100)) {
    pax.push(['linkpath', linkname]);
    linkname = asciiFallback(linkname, 100);
  }
  if (h.size > MAX_OCTAL_11) pax.push(['size', String(h.size)]);
  if (h.uid > MAX_OCTAL_7) pax.push(['uid', String(h.uid)]);
  if (h.gid > MAX_OCTAL_7) pax.push(['gid', String(h.gid)]);
  if (h.mtime < 0 || h.mtime > MAX_OCTAL_11) pax.push(['mtime', String(h.mtime)]);
  if (h.xattrs) {
    for (const k of Object.keys(h.xattrs).sort()) pax.push([`SCHILY.xattr.${k}`, h.xattrs[k]!]);
  }

  const typeflag = h.type === 'file' ? '0' : h.type === 'dir' ? '5' : h.type === 'symlink' ? '2' : '1';
  const main = ustarBlock({ name, prefix, mode: h.mode & 0o7777, uid: h.uid, gid: h.gid, size: h.size, mtime: h.mtime, typeflag, linkname });
  if (pax.length === 0) return main;
  const records = encodePaxRecords(pax);
  const base = path.replace(/\/$/, '').split('/').pop() ?? 'entry';
  const paxHeader = ustarBlock({
    name: asciiFallback(`PaxHeader/${base}`, 100),
    prefix: '',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: records.length,
    mtime: Math.min(Math.max(h.mtime, 0), MAX_OCTAL_11),
    typeflag: 'x',
    linkname: '',
  });
  return Buffer.concat([paxHeader, records, Buffer.alloc(paddingFor(records.length)), main]);
}

/** Split an ASCII path into ustar prefix (≤ 155) and name (≤ 100) at a `/`, or null. */
function splitUstar(path: string): [string, string] | null {
  if (path.length > 256) return null;
  for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (prefix.length <= 155 && name.length <= 100 && name.length > 0 && prefix.length > 0) return [prefix, name];
  }
  return null;
}

/** An ASCII stand-in for a field whose real value is in a pax record. */
function asciiFallback(s: string, max: number): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    out += c >= 0x20 && c < 0x7f ? ch : '_';
    if (out.length >= max) break;
  }
  return out.slice(0, max);
}

/** pax records `"<len> <key>=<value>\n"`, where len counts the whole record, itself included. */
export function encodePaxRecords(records: Array<[string, Uint8Array | string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of records) {
    const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
    const rest = Buffer.byteLength(key) + v.length + 3; // ' ', '=', '\n'
    let len = rest + 1;
    while (String(len).length + rest !== len) len = rest + String(len).length;
    parts.push(Buffer.from(`${len} ${key}=`, 'utf8'), v, Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

interface UstarFields {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
}

function ustarBlock(f: UstarFields): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(f.name, 0, 100, 'utf8');
  writeNumber(b, 100, 8, f.mode);
  writeNumber(b, 108, 8, f.uid);
  writeNumber(b, 116, 8, f.gid);
  writeNumber(b, 124, 12, f.size);
  writeNumber(b, 136, 12, f.mtime);
  b.write(f.typeflag, 156, 1, 'latin1');
  b.write(f.linkname, 157, 100, 'utf8');
  b.write('ustar\0', 257, 6, 'latin1');
  b.write('00', 263, 2, 'latin1');
  b.write(f.prefix, 345, 155, 'utf8');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return b;
}

/** Octal with a NUL terminator when it fits, else GNU base-256 (0x80 marker, big-endian). */
function writeNumber(b: Buffer, off: number, width: number, value: number): void {
  const digits = width - 1;
  if (value >= 0 && value < 8 ** digits) {
    b.write(value.toString(8).padStart(digits, '0') + '\0', off, width, 'latin1');
    return;
  }
  let v = BigInt(Math.trunc(value));
  const neg = v < 0n;
  if (neg) v = (1n << BigInt(8 * width)) + v; // two's complement over the field
  for (let i = width - 1; i >= 1; i--) {
    b[off + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  b[off] = neg ? 0xff : 0x80;
}

/** A decoded raw header block (before pax/GNU extensions are applied). */
export interface RawHeader {
  name: Buffer;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: Buffer;
  /** POSIX ustar prefix (empty for GNU and v7 headers). */
  prefix: Buffer;
}

function corrupt(msg: string): BastionError {
  return new BastionError('artifact_corrupt', `tar: ${msg}`, { details: { reason: 'tar_format' } });
}

/** True when the block is all zeros (end-of-archive marker). */
export function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** Decode one header block; checks the checksum (unsigned or signed sum, as old tars used either). */
export function decodeHeader(b: Buffer): RawHeader {
  if (b.length !== BLOCK) throw corrupt('short header block');
  const stored = readNumber(b, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const v = i >= 148 && i < 156 ? 0x20 : b[i]!;
    unsigned += v;
    signed += v > 127 ? v - 256 : v;
  }
  if (stored !== unsigned && stored !== signed) throw corrupt('header checksum mismatch');
  const magic = b.toString('latin1', 257, 263);
  const posix = magic === 'ustar\0';
  return {
    name: cstr(b, 0, 100),
    mode: readNumber(b, 100, 8),
    uid: readNumber(b, 108, 8),
    gid: readNumber(b, 116, 8),
    size: readNumber(b, 124, 12),
    mtime: readNumber(b, 136, 12),
    typeflag: b[156] === 0 ? '0' : String.fromCharCode(b[156]!),
    linkname: cstr(b, 157, 100),
    prefix: posix ? cstr(b, 345, 155) : Buffer.alloc(0),
  };
}

function cstr(b: Buffer, off: number, len: number): Buffer {
  const field = b.subarray(off, off + len);
  const nul = field.indexOf(0);
  return Buffer.from(nul < 0 ? field : field.subarray(0, nul));
}

/** Octal (space/NUL padded) or base-256 numeric field. */
export function readNumber(b: Buffer, off: number, width: number): number {
  const first = b[off]!;
  if (first & 0x80) {
    const neg = first === 0xff;
    let v = BigInt(first & 0x7f);
    if (neg) v = 0xffn;
    for (let i = 1; i < width; i++) v = (v << 8n) | BigInt(b[off + i]!);
    if (neg) v -= 1n << BigInt(8 * width);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt('numeric field out of range');
    return Number(v);
  }
  const s = b.toString('latin1', off, off + width).replace(/[\0 ]+$/, '').replace(/^[ \0]+/, '');
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw corrupt('bad octal field');
  const v = parseInt(s, 8);
  if (!Number.isSafeInteger(v)) throw corrupt('numeric field out of range');
  return v;
}

/** Parse pax records into key → raw value bytes. */
export function decodePaxRecords(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // some writers pad with NULs
    const sp = data.indexOf(0x20, pos);
    if (sp < 0) throw corrupt('bad pax record');
    const lenStr = data.toString('latin1', pos, sp);
    if (!/^\d{1,9}$/.test(lenStr)) throw corrupt('bad pax record length');
    const len = Number(lenStr);
    const end = pos + len;
    if (len < 5 || end > data.length || data[end - 1] !== 0x0a) throw corrupt('bad pax record length');
    const eq = data.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq >= end) throw corrupt('pax record without =');
    out.set(data.toString('utf8', sp + 1, eq), Buffer.from(data.subarray(eq + 1, end - 1)));
    pos = end;
  }
  return out;
}
