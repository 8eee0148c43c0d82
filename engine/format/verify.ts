/**
 * Verify a run directory without writing anything out: every payload part
 * against the manifest (size, hash), the entries index against the manifest
 * (count) and every file's content against its entry record (size, BLAKE3).
 * archive_v1 walks the tar stream and the entries index side by side (both
 * are in archive order); raw_tree_v1 reads each `data/<path>`.
 *
 * Problems are counted, with at most {@link MAX_SAMPLE_ERRORS} sample
 * messages, instead of stopping at the first one, so an operator learns how
 * much is damaged. A problem that makes the rest unreadable (a corrupt part
 * under the zstd stream, a wrong identity) ends the walk and is reported as
 * `fatal`.
 */
import { BastionError } from '../../core/errors.ts';
import { rawTreeDataName, type EntryRecord } from '../../core/artifact-format.ts';
import type { RunDirReader } from '../targets/target.ts';
import { createHasher } from './hashing.ts';
import { RunReader, type OpenRunOptions } from './run-reader.ts';

/** Most sample errors kept (the reference keeps 10). */
export const MAX_SAMPLE_ERRORS = 10;
/** Hash memory for cross-checking hard links, in entries (older ones are forgotten). */
const HARDLINK_MEMORY = 100_000;

/** The outcome of a verify. */
export interface VerifyReport {
  ok: boolean;
  format: 'archive_v1' | 'raw_tree_v1';
  entries_count: number;
  files_total: number;
  files_ok: number;
  files_failed: number;
  parts_total: number;
  sample_errors: string[];
  /** The error that stopped the walk early, if any (code and message). */
  fatal: { code: string; message: string } | null;
}

class Tally {
  files_total = 0;
  files_ok = 0;
  files_failed = 0;
  entries = 0;
  samples: string[] = [];
  fail(msg: string): void {
    this.files_failed++;
    if (this.samples.length < MAX_SAMPLE_ERRORS) this.samples.push(msg);
  }
  note(msg: string): void {
    if (this.samples.length < MAX_SAMPLE_ERRORS) this.samples.push(msg);
  }
}

/** Verify the run in `reader`. Opening errors (no complete.json, bad manifest) are thrown, not reported. */
export async function verifyRun(reader: RunDirReader, opts: OpenRunOptions & { signal?: AbortSignal } = {}): Promise<VerifyReport> {
  const run = await RunReader.open(reader, opts);
  const t = new Tally();
  let fatal: VerifyReport['fatal'] = null;
  let structural = false;
  try {
    if (run.manifest.pipeline.format === 'raw_tree_v1') await verifyRawTree(run, t, opts.signal);
    else structural = await verifyArchive(run, t, opts.signal);
  } catch (e) {
    if (!(e instanceof BastionError)) throw e;
    if (e.code === 'backup_aborted') throw e;
    fatal = { code: e.code, message: e.message };
  }
  return {
    ok: fatal === null && !structural && t.files_failed === 0,
    format: run.manifest.pipeline.format,
    entries_count: t.entries,
    files_total: t.files_total,
    files_ok: t.files_ok,
    files_failed: t.files_failed,
    parts_total: run.manifest.artifacts.length,
    sample_errors: t.samples,
    fatal,
  };
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new BastionError('backup_aborted', 'verify canceled', { cause: signal.reason });
}

async function verifyRawTree(run: RunReader, t: Tally, signal: AbortSignal | undefined): Promise<void> {
  const h = await createHasher('blake3');
  for await (const e of run.entries()) {
    checkAbort(signal);
    t.entries++;
    if (e.kind !== 'file') continue;
    t.files_total++;
    const name = rawTreeDataName(e.path);
    const size = await run.reader.size(name);
    if (size === null) {
      t.fail(`missing file: ${e.path}`);
      continue;
    }
    if (size !== e.size) {
      t.fail(`size mismatch: ${e.path}`);
      continue;
    }
    const hasher = e.hash_alg === 'blake3' ? h : await createHasher(e.hash_alg ?? 'blake3');
    for await (const c of await run.reader.open(name)) hasher.update(c as Buffer);
    if (hasher.digestHex() !== e.hash) t.fail(`hash mismatch: ${e.path}`);
    else t.files_ok++;
  }
}

/** Returns true when the structure (entries vs payload) disagrees. */
async function verifyArchive(run: RunReader, t: Tally, signal: AbortSignal | undefined): Promise<boolean> {
  const records = run.entries()[Symbol.asyncIterator]();
  const recent = new Map<string, { size: number; hash: string }>();
  const h = await createHasher('blake3');
  let structural = false;
  const nextRecord = async (): Promise<EntryRecord | null> => {
    const r = await records.next();
    if (r.done) return null;
    t.entries++;
    return r.value;
  };
  try {
    for await (const te of run.tarEntries()) {
      checkAbort(signal);
      const rec = await nextRecord();
      if (!rec) {
        structural = true;
        t.note(`payload entry not in the entries index: ${te.path}`);
        continue;
      }
      if (rec.path !== te.path) {
        structural = true;
        t.note(`entries index and payload disagree: ${rec.path} / ${te.path}`);
        continue;
      }
      if (rec.kind !== 'file') continue;
      t.files_total++;
      if (te.type === 'hardlink') {
        const target = recent.get(te.linkname);
        // The target's own content was checked when it went by; only the records must agree.
        if (target && (target.size !== rec.size || target.hash !== rec.hash)) t.fail(`hash mismatch: ${rec.path} (hard link to ${te.linkname})`);
        else t.files_ok++;
        continue;
      }
      if (te.type !== 'file') {
        t.fail(`not a file in the payload: ${rec.path}`);
        continue;
      }
      const hasher = rec.hash_alg === 'blake3' ? h : await createHasher(rec.hash_alg ?? 'blake3');
      let n = 0;
      for await (const c of te.body()) {
        n += c.length;
        hasher.update(c);
      }
      const hash = hasher.digestHex();
      if (n !== rec.size) t.fail(`size mismatch: ${rec.path}`);
      else if (hash !== rec.hash) t.fail(`hash mismatch: ${rec.path}`);
      else t.files_ok++;
      recent.set(rec.path, { size: n, hash });
      if (recent.size > HARDLINK_MEMORY) recent.delete(recent.keys().next().value!);
    }
    let extra = 0;
    while ((await nextRecord()) !== null) extra++;
    if (extra > 0) {
      structural = true;
      t.note(`${extra} entries index record(s) not in the payload`);
    }
  } finally {
    await records.return?.(undefined);
  }
  return structural;
}
