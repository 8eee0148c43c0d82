/**
 * The on-disk artifact format of a run directory (`<base>/<job_id>/<run_id>/`),
 * byte-compatible with the earlier Rust implementation (reference §6):
 *
 * - `payload.part000001`, `payload.part000002`, … (archive_v1 only): the
 *   byte stream tar (PAX) → zstd level 3 → optional age, cut at
 *   `split_bytes`; every part but the last is exactly `split_bytes` long and a
 *   zero-byte part is never recorded.
 * - `entries.jsonl.zst`: zstd (level 3) of one compact JSON record per line,
 *   fields in the order of {@link EntryRecord}.
 * - `manifest.json`: pretty-printed JSON (2-space indent, no trailing newline,
 *   as serde_json's `to_vec_pretty`), fields in the order of {@link Manifest}.
 * - `complete.json`: `{}`, written last; a run is restorable only when it exists.
 * - raw_tree_v1: plain files under `data/<entry path>` and no payload parts.
 *
 * Pure: names, schemas, serialisation. I/O lives in engine/format.
 */
import { z } from 'zod';
import { isUuid } from './ids.ts';

/** Prefix of payload part names; the index follows as 6 digits from 1. */
export const PAYLOAD_PART_PREFIX = 'payload.part';
/** Largest part index that fits the 6-digit name. */
export const MAX_PART_INDEX = 999_999;
export const ENTRIES_INDEX_NAME = 'entries.jsonl.zst';
export const MANIFEST_NAME = 'manifest.json';
export const COMPLETE_NAME = 'complete.json';
/** Folder of a raw_tree_v1 run that holds the file contents. */
export const RAW_TREE_DATA_DIR = 'data';
/** Suffix of a file being written (local_dir writes `<name>.partial` then renames). */
export const PARTIAL_SUFFIX = '.partial';
/** zstd level of the payload and of the entries index (reference: 3). */
export const ZSTD_LEVEL = 3;
/** The only manifest version there is. */
export const FORMAT_VERSION = 1;

/** `payload.part000001` for index 1. */
export function partName(index: number): string {
  if (!Number.isInteger(index) || index < 1 || index > MAX_PART_INDEX) {
    throw new RangeError(`part index must be an integer in 1..${MAX_PART_INDEX}, got ${index}`);
  }
  return PAYLOAD_PART_PREFIX + String(index).padStart(6, '0');
}

/** The index of a part name, or null when `name` is not exactly `payload.part` + 6 digits ≥ 1. */
export function parsePartName(name: string): number | null {
  const m = /^payload\.part(\d{6})$/.exec(name);
  if (!m) return null;
  const n = Number(m[1]);
  return n >= 1 ? n : null;
}

/** The run-directory name of a raw_tree_v1 file: `data/<path>`. */
export function rawTreeDataName(entryPath: string): string {
  return `${RAW_TREE_DATA_DIR}/${entryPath}`;
}

/**
 * True for a relative POSIX path usable as an entry path or a run-directory
 * name: non-empty, no leading `/`, no empty, `.` or `..` segment, no NUL.
 * Any other byte (newline, backslash, non-ASCII) is allowed: file names may
 * hold them and they must round-trip.
 */
export function isSafeRelativePath(p: string): boolean {
  if (p.length === 0 || p.includes('\0') || p.startsWith('/')) return false;
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.' || seg === '..') return false;
  }
  return true;
}

const RFC3339_RE = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 timestamp (what the reference writes with `time::Rfc3339`). */
export const rfc3339Schema = z
  .string()
  .max(64)
  .refine((s) => RFC3339_RE.test(s) && !Number.isNaN(Date.parse(s)), 'must be an RFC 3339 timestamp');

const uuidSchema = z.string().refine(isUuid, 'must be a lower-case UUID');
const sizeSchema = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** Hash algorithms the reference defines; we write blake3 and can verify both. */
export const hashAlgSchema = z.enum(['blake3', 'sha256']);
export type HashAlg = z.infer<typeof hashAlgSchema>;
const hexHashSchema = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex digits');

export const artifactPartSchema = z.object({
  name: z.string().refine((n) => parsePartName(n) !== null, 'must be payload.part + 6 digits'),
  size: sizeSchema.min(1),
  hash_alg: hashAlgSchema,
  hash: hexHashSchema,
});
export type ArtifactPart = z.infer<typeof artifactPartSchema>;

export const artifactFormatSchema = z.enum(['archive_v1', 'raw_tree_v1']);

export const pipelineSchema = z.object({
  /** Missing in manifests written before raw_tree_v1 existed: archive_v1. */
  format: artifactFormatSchema.default('archive_v1'),
  tar: z.enum(['pax', 'none']),
  compression: z.enum(['zstd', 'none']),
  encryption: z.enum(['none', 'age']),
  /** Name of the identity secret that decrypts (age only). */
  encryption_key: z.string().min(1).max(128).optional(),
  /** Part size; 0 for raw_tree_v1. */
  split_bytes: sizeSchema,
});
export type Pipeline = z.infer<typeof pipelineSchema>;

export const entryIndexRefSchema = z.object({
  name: z.literal(ENTRIES_INDEX_NAME),
  count: sizeSchema,
});

/** `manifest.json`. Unknown keys are ignored on read (forward compatibility), never written. */
export const manifestSchema = z
  .object({
    format_version: z.literal(FORMAT_VERSION),
    job_id: uuidSchema,
    run_id: uuidSchema,
    started_at: rfc3339Schema,
    ended_at: rfc3339Schema,
    pipeline: pipelineSchema,
    artifacts: z.array(artifactPartSchema).max(MAX_PART_INDEX),
    entry_index: entryIndexRefSchema,
  })
  .superRefine((m, ctx) => {
    const p = m.pipeline;
    if (p.format === 'raw_tree_v1') {
      if (p.tar !== 'none' || p.compression !== 'none' || p.encryption !== 'none' || p.split_bytes !== 0 || m.artifacts.length !== 0) {
        ctx.addIssue({ code: 'custom', path: ['pipeline'], message: 'raw_tree_v1 has no tar, compression, encryption, split or parts' });
      }
    } else if (p.tar !== 'pax' || p.compression !== 'zstd' || p.split_bytes < 1) {
      ctx.addIssue({ code: 'custom', path: ['pipeline'], message: 'archive_v1 is tar pax + zstd with split_bytes ≥ 1' });
    }
    if (p.encryption === 'none' && p.encryption_key !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['pipeline', 'encryption_key'], message: 'only age encryption names a key' });
    }
    m.artifacts.forEach((a, i) => {
      if (a.name !== partName(i + 1)) {
        ctx.addIssue({ code: 'custom', path: ['artifacts', i, 'name'], message: `must be ${partName(i + 1)} (parts are numbered from 1 without gaps)` });
      }
      if (a.size > p.split_bytes || (i < m.artifacts.length - 1 && a.size !== p.split_bytes)) {
        ctx.addIssue({ code: 'custom', path: ['artifacts', i, 'size'], message: 'every part but the last is exactly split_bytes long' });
      }
    });
  });
export type Manifest = z.infer<typeof manifestSchema>;

export const entryKindSchema = z.enum(['file', 'dir', 'symlink']);
export type EntryKind = z.infer<typeof entryKindSchema>;

const base64Schema = z.string().regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, 'must be base64');

/**
 * One line of `entries.jsonl.zst`. `hash_alg`/`hash` are always present, null
 * for directories and symlinks; the metadata fields are written for
 * raw_tree_v1 only (archive_v1 keeps metadata in the tar headers), as the
 * reference does. A hard link is a `file` with the size and hash of its
 * first path; in raw_tree_v1 every member carries the same `hardlink_group`.
 */
export const entryRecordSchema = z
  .object({
    path: z.string().max(65_536).refine(isSafeRelativePath, 'must be a relative path without empty, . or .. segments'),
    kind: entryKindSchema,
    size: sizeSchema,
    hash_alg: hashAlgSchema.nullable(),
    hash: hexHashSchema.nullable(),
    /** Modification time, unix seconds. */
    mtime: z.number().int().optional(),
    /** Full st_mode (file type bits included, e.g. 0o100644 = 33188). */
    mode: z.number().int().min(0).max(0xffff_ffff).optional(),
    uid: z.number().int().min(0).optional(),
    gid: z.number().int().min(0).optional(),
    /** Extended attributes: name → base64 of the raw value. */
    xattrs: z.record(z.string().min(1).max(255), base64Schema).optional(),
    symlink_target: z.string().min(1).max(65_536).optional(),
    /** `dev:ino` of the inode shared by all members of a hard-link group. */
    hardlink_group: z.string().regex(/^\d+:\d+$/).optional(),
  })
  .superRefine((e, ctx) => {
    if (e.kind === 'file') {
      if (e.hash_alg === null || e.hash === null) ctx.addIssue({ code: 'custom', path: ['hash'], message: 'a file has a hash' });
    } else {
      if (e.hash_alg !== null || e.hash !== null) ctx.addIssue({ code: 'custom', path: ['hash'], message: 'only files have a hash' });
    }
    if (e.symlink_target !== undefined && e.kind !== 'symlink') {
      ctx.addIssue({ code: 'custom', path: ['symlink_target'], message: 'only symlinks have a target' });
    }
    if (e.hardlink_group !== undefined && e.kind !== 'file') {
      ctx.addIssue({ code: 'custom', path: ['hardlink_group'], message: 'only files are hard-linked' });
    }
  });
export type EntryRecord = z.infer<typeof entryRecordSchema>;

/** `complete.json`: an empty object; extra keys from a future version are tolerated. */
export const completeSchema = z.object({});
/** The bytes of `complete.json` (serde_json pretty of `{}`). */
export const COMPLETE_BYTES: Uint8Array = new TextEncoder().encode('{}');

/** `manifest.json` bytes: fields in the reference's order, pretty-printed like serde_json. */
export function serializeManifest(m: Manifest): Uint8Array {
  const pipeline: Record<string, unknown> = {
    format: m.pipeline.format,
    tar: m.pipeline.tar,
    compression: m.pipeline.compression,
    encryption: m.pipeline.encryption,
  };
  if (m.pipeline.encryption_key !== undefined) pipeline.encryption_key = m.pipeline.encryption_key;
  pipeline.split_bytes = m.pipeline.split_bytes;
  const ordered = {
    format_version: m.format_version,
    job_id: m.job_id,
    run_id: m.run_id,
    started_at: m.started_at,
    ended_at: m.ended_at,
    pipeline,
    artifacts: m.artifacts.map((a) => ({ name: a.name, size: a.size, hash_alg: a.hash_alg, hash: a.hash })),
    entry_index: { name: m.entry_index.name, count: m.entry_index.count },
  };
  return new TextEncoder().encode(JSON.stringify(ordered, null, 2));
}

/** Parse and validate `manifest.json` bytes; throws a ZodError or SyntaxError. */
export function parseManifest(bytes: Uint8Array): Manifest {
  return manifestSchema.parse(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)));
}

/**
 * One entries-index line without its newline: compact JSON, fields in the
 * reference's order, optional fields omitted when undefined. JSON.stringify
 * and serde_json escape the same characters (quote, backslash, C0 controls),
 * so the bytes match the reference's for the same record.
 */
export function serializeEntryRecord(e: EntryRecord): string {
  const o: Record<string, unknown> = { path: e.path, kind: e.kind, size: e.size, hash_alg: e.hash_alg, hash: e.hash };
  if (e.mtime !== undefined) o.mtime = e.mtime;
  if (e.mode !== undefined) o.mode = e.mode;
  if (e.uid !== undefined) o.uid = e.uid;
  if (e.gid !== undefined) o.gid = e.gid;
  if (e.xattrs !== undefined) {
    // serde's BTreeMap orders keys by bytes; sort the same way.
    const sorted: Record<string, string> = {};
    for (const k of Object.keys(e.xattrs).sort(compareUtf8)) sorted[k] = e.xattrs[k]!;
    o.xattrs = sorted;
  }
  if (e.symlink_target !== undefined) o.symlink_target = e.symlink_target;
  if (e.hardlink_group !== undefined) o.hardlink_group = e.hardlink_group;
  return JSON.stringify(o);
}

/** Order two strings by their UTF-8 bytes (what Rust's String ordering and our walk use). */
export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * True when a run directory's file listing looks like Bastion data (reference
 * §6: complete.json, manifest.json, entries.jsonl.zst, a payload part or a
 * `.partial`); deletion and cleanup refuse anything else.
 */
export function looksLikeRunDir(names: readonly string[]): boolean {
  return names.some(
    (n) => n === COMPLETE_NAME || n === MANIFEST_NAME || n === ENTRIES_INDEX_NAME || n.startsWith(PAYLOAD_PART_PREFIX) || n.endsWith(PARTIAL_SUFFIX),
  );
}
