/**
 * The target snapshot: where a run's data lives, frozen at run start and copied
 * onto the snapshot index and onto delete/cleanup tasks, so later edits of the
 * job never change where old data is looked for. Holds no credentials: WebDAV
 * URLs are stored redacted and credentials are looked up by `secret_name` in the
 * snapshot's node scope when they are needed.
 */
import { z } from 'zod';
import { isNodeId } from './ids.ts';
import { redactUrl } from './redact.ts';

/** An absolute POSIX path with no `.`/`..` components, NUL bytes or empty segments beyond the root. */
export const absolutePathSchema = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => p.startsWith('/'), 'must be an absolute path')
  .refine((p) => !p.includes('\0'), 'must not contain NUL bytes')
  .refine((p) => p === '/' || !p.split('/').slice(1).some((s) => s === '.' || s === '..'), 'must not contain . or .. components');

/** A WebDAV base URL: http or https, no credentials, no query or fragment. */
export const webdavBaseUrlSchema = z
  .string()
  .max(2048)
  .refine((u) => {
    try {
      const url = new URL(u);
      return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL')
  .refine((u) => {
    try {
      const url = new URL(u);
      return url.username === '' && url.password === '';
    } catch {
      return true;
    }
  }, 'must not contain credentials; store them in a secret');

/** Names of node-scoped secrets: short, printable, no path separators. */
export const secretNameSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, ".", "_" and "-" only');

export const localDirTargetSchema = z.object({
  type: z.literal('local_dir'),
  base_dir: absolutePathSchema,
});

export const webdavTargetSchema = z.object({
  type: z.literal('webdav'),
  base_url: webdavBaseUrlSchema,
  secret_name: secretNameSchema,
});

/** A storage target as recorded in a snapshot (no part size, no limits: only what locates the data). */
export const targetLocationSchema = z.discriminatedUnion('type', [localDirTargetSchema, webdavTargetSchema]);

export const targetSnapshotSchema = z.object({
  node_id: z.string().refine(isNodeId, "must be 'hub' or an agent UUID"),
  target: targetLocationSchema,
});

export type LocalDirTarget = z.infer<typeof localDirTargetSchema>;
export type WebdavTarget = z.infer<typeof webdavTargetSchema>;
export type TargetLocation = z.infer<typeof targetLocationSchema>;
export type TargetSnapshot = z.infer<typeof targetSnapshotSchema>;
export type TargetType = TargetLocation['type'];

/** Build the snapshot stored on a run at start: WebDAV URLs redacted with a trailing slash. */
export function makeTargetSnapshot(nodeId: string, target: TargetLocation): TargetSnapshot {
  if (target.type === 'webdav') {
    return { node_id: nodeId, target: { type: 'webdav', base_url: redactUrl(target.base_url, { trailingSlash: true }), secret_name: target.secret_name } };
  }
  return { node_id: nodeId, target: { type: 'local_dir', base_dir: target.base_dir } };
}
