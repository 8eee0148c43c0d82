/**
 * Extended attributes of a source tree, read in ONE `getfattr` process per
 * source path (Node has no xattr API, and spawning per file would cost ~1 ms
 * per file). When `getfattr` (Debian package `attr`) is missing, no xattrs are
 * recorded and the run summary says so.
 *
 * Memory: the result holds only files that have at least one attribute. On a
 * system where every file carries one (SELinux labels) that is roughly
 * path + value bytes per file; the walk order of getfattr is readdir order,
 * not ours, so the output cannot be merged as a stream.
 */
import { spawn } from 'node:child_process';
import { isUtf8 } from 'node:buffer';

/** name → base64 of the raw value. */
export type XattrMap = Record<string, string>;

/** What one getfattr run produced. */
export interface XattrScan {
  /** False when getfattr is not installed: nothing was read. */
  available: boolean;
  /** Absolute path → attributes, for paths with at least one attribute. */
  byPath: Map<string, XattrMap>;
  /** Problems getfattr reported (unreadable files), first lines only. */
  problems: string[];
}

let getfattrMissing = false;

/**
 * Read every attribute (all namespaces: `-m -`) of `root` and below. With
 * `follow`, symlinks to directories are walked (`-L`) as the backup walk does;
 * otherwise links are neither followed nor dereferenced (`-P -h`).
 */
export async function scanXattrs(root: string, follow: boolean, signal?: AbortSignal): Promise<XattrScan> {
  const byPath = new Map<string, XattrMap>();
  const problems: string[] = [];
  if (getfattrMissing) return { available: false, byPath, problems };
  const args = ['-R', '-d', '-m', '-', '-e', 'base64', '--absolute-names', ...(follow ? ['-L'] : ['-P', '-h']), '--', root];
  const child = spawn('getfattr', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' }, signal });
  const parser = new GetfattrParser(byPath);
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => parser.push(b));
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    if (stderr.length < 8192) stderr += s;
  });
  const outcome = await new Promise<{ spawnError?: NodeJS.ErrnoException; code: number | null }>((resolve) => {
    child.once('error', (e: NodeJS.ErrnoException) => resolve({ spawnError: e, code: null }));
    child.once('close', (code) => resolve({ code }));
  });
  if (outcome.spawnError) {
    if (outcome.spawnError.code === 'ENOENT') {
      getfattrMissing = true;
      return { available: false, byPath, problems };
    }
    throw outcome.spawnError;
  }
  parser.end();
  if (outcome.code !== 0) {
    for (const line of stderr.split('\n')) if (line.trim() !== '' && problems.length < 20) problems.push(line.trim());
  }
  return { available: true, byPath, problems };
}

/**
 * Parser of `getfattr -d -e base64 --absolute-names` output, fed in chunks:
 *
 *     # file: /abs/path\012with\134escapes
 *     user.name=0sBASE64
 *
 * getfattr escapes control characters, backslash and `=` in names as `\ooo`
 * (octal); other bytes are raw, so lines are decoded as bytes first.
 */
export class GetfattrParser {
  private readonly out: Map<string, XattrMap>;
  private rest: Buffer = Buffer.alloc(0);
  private current: string | null = null;
  private attrs: XattrMap = {};

  constructor(out: Map<string, XattrMap>) {
    this.out = out;
  }

  push(chunk: Buffer): void {
    let buf = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    let nl: number;
    while ((nl = buf.indexOf(0x0a)) >= 0) {
      this.line(buf.subarray(0, nl));
      buf = buf.subarray(nl + 1);
    }
    this.rest = Buffer.from(buf);
  }

  end(): void {
    if (this.rest.length) this.line(this.rest);
    this.rest = Buffer.alloc(0);
    this.flush();
  }

  private flush(): void {
    if (this.current !== null && Object.keys(this.attrs).length > 0) this.out.set(this.current, this.attrs);
    this.current = null;
    this.attrs = {};
  }

  private line(raw: Buffer): void {
    if (raw.length === 0) return;
    const FILE = '# file: ';
    if (raw.subarray(0, FILE.length).toString('latin1') === FILE) {
      this.flush();
      const bytes = unescapeOctal(raw.subarray(FILE.length));
      // A name that is not UTF-8 is not backed up (the walk skips it), so its attributes are not needed.
      this.current = isUtf8(bytes) ? bytes.toString('utf8') : null;
      return;
    }
    if (this.current === null || raw[0] === 0x23 /* # */) return;
    const eq = raw.indexOf(0x3d /* = */);
    const nameBytes = unescapeOctal(eq < 0 ? raw : raw.subarray(0, eq));
    if (!isUtf8(nameBytes)) return;
    const value = eq < 0 ? Buffer.alloc(0) : decodeValue(raw.subarray(eq + 1).toString('latin1'));
    this.attrs[nameBytes.toString('utf8')] = value.toString('base64');
  }
}

function decodeValue(v: string): Buffer {
  if (v.startsWith('0s')) return Buffer.from(v.slice(2), 'base64');
  if (v.startsWith('0x')) return Buffer.from(v.slice(2), 'hex');
  if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) return unescapeOctal(Buffer.from(v.slice(1, -1), 'latin1'));
  return Buffer.from(v, 'latin1');
}

/** Turn `\ooo` sequences into bytes; everything else is kept as is. */
export function unescapeOctal(src: Buffer): Buffer {
  if (!src.includes(0x5c)) return Buffer.from(src);
  const out: number[] = [];
  for (let i = 0; i < src.length; i++) {
    const b = src[i]!;
    if (b === 0x5c && i + 3 < src.length && isOctal(src[i + 1]) && isOctal(src[i + 2]) && isOctal(src[i + 3])) {
      out.push((((src[i + 1]! - 48) << 6) | ((src[i + 2]! - 48) << 3) | (src[i + 3]! - 48)) & 0xff);
      i += 3;
    } else {
      out.push(b);
    }
  }
  return Buffer.from(out);
}

function isOctal(b: number | undefined): boolean {
  return b !== undefined && b >= 0x30 && b <= 0x37;
}
