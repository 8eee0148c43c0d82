/**
 * Reading back what a raw_tree_v1 run stored, before complete.json makes it a
 * snapshot. A WebDAV server may accept a PUT and keep the file under another
 * name: rclone 1.60 answers 201 to `line%0Abreak`, lists it as `line␊break`
 * (U+240A) and answers 404 to HEAD/GET of the name it accepted. Status codes
 * alone would end such a run `success` with a file no restore can read, so
 * every data file written (and the entries index) must be in the run
 * directory's listing with the size written.
 *
 * Cost, measured in requests: one recursive listing (PROPFIND Depth 1 per
 * directory of the run; raw_tree_v1 puts every file in its own directory, so
 * D directories cost D requests next to the N PUTs of the files), plus a HEAD
 * only for a file the listing does not show with its size (a server that lists
 * names in another Unicode form but serves the written one passes on that
 * HEAD) — and after the first file a HEAD confirms as missing, no more HEADs.
 * Memory: the listing as a map (name → size), like the listing itself; the
 * expected names stream from the local entries index, never all in memory.
 *
 * Targets that only store what they were told (local_dir: a rename that
 * succeeded stored exactly that name) are not listed: their writers cannot
 * list, and this check is not called for them.
 */
import fs from 'node:fs';
import { ENTRIES_INDEX_NAME, rawTreeDataName } from '../../core/artifact-format.ts';
import { BastionError } from '../../core/errors.ts';
import type { RunDirReader, RunDirWriter, StoredFile } from '../targets/target.ts';
import { checkAbort } from './backup-context.ts';
import { readEntriesIndex } from './entries-index.ts';

/** A writer that can also list its run directory (WebDAV: WebdavRunDir is both). */
export type ListingWriter = RunDirWriter & Pick<RunDirReader, 'list'>;

/** The writer, when it can list what it stored; null for targets that need no read-back (local_dir). */
export function listingWriter(writer: RunDirWriter): ListingWriter | null {
  return typeof (writer as Partial<RunDirReader>).list === 'function' ? (writer as ListingWriter) : null;
}

/** One file that must be readable under its own name. */
export interface ExpectedFile {
  name: string;
  size: number;
}

/** The first file that cannot be read back, and why. */
export interface StoredMismatch {
  name: string;
  size: number;
  /** Size found under the name (HEAD), or null when the name is not there. */
  found: number | null;
  /** target_name_unsupported: the name is not there but the directory holds an unexpected file of that size (stored under another name). */
  code: 'target_name_unsupported' | 'target_lost_file';
  /** Files expected and not confirmed after the first failure (no more HEADs are spent on them). */
  alsoMissing: number;
  /** For name_unsupported: the name the target shows instead (the first candidate). */
  storedAs?: string;
}

function dirOf(name: string): string {
  const i = name.lastIndexOf('/');
  return i < 0 ? '' : name.slice(0, i);
}

/**
 * Compare a listing with the files that must be there (pure except for
 * `probe`, called only for files the listing does not show with their size).
 * Matched names are removed from `listed`; what remains at the end are
 * files nobody expected (stale files of an earlier attempt, or files kept
 * under another name), used to name the failure.
 */
export async function findStoredMismatch(
  listed: Map<string, number>,
  expected: AsyncIterable<ExpectedFile> | Iterable<ExpectedFile>,
  probe: (name: string) => Promise<number | null>,
): Promise<StoredMismatch | null> {
  let first: Omit<StoredMismatch, 'code' | 'alsoMissing'> | null = null;
  let alsoMissing = 0;
  for await (const f of expected) {
    if (listed.get(f.name) === f.size) {
      listed.delete(f.name);
      continue;
    }
    if (first !== null) {
      alsoMissing++;
      continue;
    }
    const found = await probe(f.name);
    if (found === f.size) continue;
    first = { name: f.name, size: f.size, found };
  }
  if (first === null) return null;
  if (first.found !== null) return { ...first, code: 'target_lost_file', alsoMissing };
  const dir = dirOf(first.name);
  for (const [name, size] of listed) {
    if (size === first.size && dirOf(name) === dir && name !== first.name) return { ...first, code: 'target_name_unsupported', alsoMissing, storedAs: name };
  }
  return { ...first, code: 'target_lost_file', alsoMissing };
}

/** The error a run fails with for `m`; paths are JSON-quoted so a newline or a control character shows as `\n`, not as a line break. */
export function storedMismatchError(m: StoredMismatch, location: string): BastionError {
  const path = JSON.stringify(m.name);
  const more = m.alsoMissing > 0 ? ` (and ${m.alsoMissing} more files not checked further)` : '';
  if (m.code === 'target_name_unsupported') {
    return new BastionError(
      'target_name_unsupported',
      `${path} was accepted by the target but is listed as ${JSON.stringify(m.storedAs)} and cannot be read under its own name at ${location}${more}; the run is not a snapshot. Use archive_v1 for such names, or a server that keeps names as written`,
      { details: { path, reason: 'name_changed_by_target' } },
    );
  }
  const why = m.found === null ? 'is missing' : `has ${m.found} bytes instead of the ${m.size} written`;
  return new BastionError('target_lost_file', `${path} ${why} when read back from ${location}${more}; the run is not a snapshot`, {
    details: { path, reason: m.found === null ? 'missing' : 'size_mismatch' },
  });
}

/** The data files an entries index names (raw_tree_v1: one per `file` record), then the index itself. */
async function* expectedFiles(entriesPath: string, entriesIndex: ExpectedFile, signal: AbortSignal | undefined): AsyncGenerator<ExpectedFile> {
  let n = 0;
  for await (const r of readEntriesIndex(fs.createReadStream(entriesPath))) {
    if ((++n & 1023) === 0) checkAbort(signal);
    if (r.kind === 'file') yield { name: rawTreeDataName(r.path), size: r.size };
  }
  yield entriesIndex;
}

/**
 * Fail unless every data file of the local entries index at `entriesPath`,
 * and the stored entries index itself, can be read back from `writer` under
 * its name with its size. Throws `target_name_unsupported` or
 * `target_lost_file` naming the first offending path.
 */
export async function verifyStoredTree(writer: ListingWriter, entriesPath: string, entriesIndexSize: number, signal?: AbortSignal): Promise<void> {
  const listed = new Map<string, number>((await writer.list()).map((f: StoredFile) => [f.name, f.size]));
  checkAbort(signal);
  const mismatch = await findStoredMismatch(listed, expectedFiles(entriesPath, { name: ENTRIES_INDEX_NAME, size: entriesIndexSize }, signal), (name) =>
    writer.storedSize(name),
  );
  if (mismatch) throw storedMismatchError(mismatch, writer.location);
}
