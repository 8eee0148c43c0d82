/**
 * The job spec (`jobs.spec`, jsonb): what to back up, where to, in which
 * format. Schedule, timezone, overlap policy and node live in their own job
 * columns. Validated with this schema everywhere a spec enters the system (API,
 * CLI, SQL callers through the worker) and again when a run starts, so a spec
 * edited by hand in psql cannot run unchecked.
 */
import { z } from 'zod';
import { retentionPolicySchema } from './retention-policy.ts';
import { absolutePathSchema, targetLocationSchema } from './target-snapshot.ts';

/** Smallest and default archive part size (reference: 1 MiB minimum, 256 MiB default). */
export const MIN_PART_SIZE_BYTES = 1024 * 1024;
export const DEFAULT_PART_SIZE_BYTES = 256 * 1024 * 1024;
/** Largest part we accept: parts are staged whole before a WebDAV upload. */
export const MAX_PART_SIZE_BYTES = 64 * 1024 * 1024 * 1024;

/** A glob pattern for include/exclude: relative or absolute, `*`, `**`, `?`, `[...]`. */
const globSchema = z
  .string()
  .min(1)
  .max(1024)
  .refine((g) => !g.includes('\0'), 'must not contain NUL bytes');

export const filesystemSourceSchema = z.strictObject({
  type: z.literal('filesystem'),
  /** Absolute paths to back up (files or directories). */
  paths: z.array(absolutePathSchema).min(1).max(1000),
  /** When non-empty, only entries matching one of these are backed up (directories are still walked). */
  include: z.array(globSchema).max(1000).default([]),
  /** Entries matching one of these are skipped (a matching directory is not descended into). */
  exclude: z.array(globSchema).max(1000).default([]),
  /** keep: store symlinks as links; follow: store what they point to; skip: leave them out. */
  symlinks: z.enum(['keep', 'follow', 'skip']).default('keep'),
});

export const encryptionSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('none') }),
  z.strictObject({
    type: z.literal('age'),
    /** age X25519 recipient (`age1…`). */
    recipient: z.string().regex(/^age1[02-9ac-hj-np-z]{58}$/, 'must be an age X25519 recipient (age1…)'),
    /** Name of the identity secret that can decrypt (recorded in the manifest as encryption_key). */
    key_name: z.string().min(1).max(128).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/).optional(),
  }),
]);

export const jobSpecSchema = z
  .strictObject({
    v: z.literal(1).default(1),
    source: filesystemSourceSchema,
    target: targetLocationSchema,
    format: z.enum(['archive_v1', 'raw_tree_v1']).default('archive_v1'),
    encryption: encryptionSchema.default({ type: 'none' }),
    part_size_bytes: z.number().int().min(MIN_PART_SIZE_BYTES).max(MAX_PART_SIZE_BYTES).default(DEFAULT_PART_SIZE_BYTES),
    /** null: inherit the hub default (settings.default_retention). */
    retention: retentionPolicySchema.nullable().default(null),
  })
  .superRefine((spec, ctx) => {
    if (spec.format === 'raw_tree_v1' && spec.encryption.type !== 'none') {
      ctx.addIssue({ code: 'custom', path: ['encryption'], message: 'raw_tree_v1 stores plain files and cannot be encrypted', params: { reason: 'unsupported_with_raw_tree' } });
    }
  });

export type FilesystemSource = z.infer<typeof filesystemSourceSchema>;
export type Encryption = z.infer<typeof encryptionSchema>;
export type JobSpec = z.infer<typeof jobSpecSchema>;
export type JobSpecInput = z.input<typeof jobSpecSchema>;
export type ArtifactFormat = JobSpec['format'];
