/**
 * The WebDAV storage target: a run directory `<base_url>/<job_id>/<run_id>/`
 * as a RunDirWriter / RunDirReader (engine/targets/target.ts), plus the two
 * maintenance primitives the delete and incomplete-cleanup queues call
 * ({@link deleteRunDir}, {@link cleanupIncompleteRunDir}) so those queues never
 * deal with WebDAV details.
 *
 * - Collections are created with MKCOL on first need and remembered per run
 *   directory, so a raw_tree_v1 upload of N files in D directories costs D
 *   MKCOLs, not N. The cache holds promises, so concurrent puts into the same
 *   new directory share one MKCOL.
 * - `openStream` returns null: a WebDAV PUT needs a replayable body with a known
 *   length for retries, so the format code stages to a file and calls putFile.
 * - Resume is the format code's decision: it compares `storedSize` (HEAD) with
 *   the staged size and skips equal files (manifest.json and complete.json are
 *   always re-sent).
 */
import type { Readable } from 'node:stream';
import { isUuid } from '../../core/ids.ts';
import { WebdavError } from '../../core/webdav-errors.ts';
import { parseRelativePath } from '../../core/webdav-path.ts';
import type { RunDirReader, RunDirWriter, StoredFile } from './target.ts';
import { WebdavClient } from './webdav-client.ts';
import type { WebdavClientOptions, WebdavCredentials } from './webdav-client.ts';

/** Client settings a target may tune (the URL and credentials are given separately). */
export type WebdavTargetClientOptions = Omit<WebdavClientOptions, 'baseUrl' | 'credentials'>;

/** What locates and opens one run directory on a WebDAV server. */
export interface WebdavRunDirOptions {
  /** The target's base URL (from the job spec or the run's target snapshot). */
  baseUrl: string;
  /** From the node-scoped WebDAV secret. */
  credentials: WebdavCredentials;
  jobId: string;
  runId: string;
  client?: WebdavTargetClientOptions;
}

function idError(field: 'jobId' | 'runId'): WebdavError {
  return new WebdavError(`WebDAV run directory: ${field} must be a lower-case UUID`, { kind: 'config', reason: 'invalid_path' });
}

/** The relative collection of a run: `<job_id>/<run_id>/`. Throws a `config` WebdavError unless both are UUIDs. */
export function runDirPath(jobId: string, runId: string): string {
  if (!isUuid(jobId)) throw idError('jobId');
  if (!isUuid(runId)) throw idError('runId');
  return `${jobId}/${runId}/`;
}

/**
 * One run directory on a WebDAV server, readable and writable. Call
 * {@link WebdavRunDir.close} when done (it releases pooled connections).
 */
export class WebdavRunDir implements RunDirWriter, RunDirReader {
  /** Redacted URL of the run collection (no credentials). */
  readonly location: string;
  readonly #client: WebdavClient;
  readonly #root: string;
  /** Relative collection path inside the run dir ('' = the run dir) → its creation. */
  readonly #collections = new Map<string, Promise<void>>();

  /** Throws a `config` WebdavError for non-UUID ids, an invalid base URL, missing credentials or bad options. */
  constructor(opts: WebdavRunDirOptions) {
    this.#root = runDirPath(opts.jobId, opts.runId);
    this.#client = new WebdavClient({ ...opts.client, baseUrl: opts.baseUrl, credentials: opts.credentials });
    this.location = this.#client.urlOf(this.#root, true);
  }

  /** Release pooled connections. */
  close(): void {
    this.#client.close();
  }

  // --- RunDirWriter --------------------------------------------------------

  async storedSize(name: string): Promise<number | null> {
    return this.#client.head(this.#file(name));
  }

  async putFile(name: string, localPath: string, size: number): Promise<void> {
    const path = this.#file(name);
    await this.#ensureParents(name);
    await this.#client.putFile(path, localPath, size);
  }

  async putBytes(name: string, bytes: Uint8Array): Promise<void> {
    const path = this.#file(name);
    await this.#ensureParents(name);
    await this.#client.putBytes(path, bytes);
  }

  /** Always null: WebDAV uploads need a replayable body of known length (stage to a file, then putFile). */
  async openStream(): Promise<null> {
    return null;
  }

  async ensureDir(name: string): Promise<void> {
    const rel = parseRelativePath(name.endsWith('/') ? name : name + '/');
    if (!rel.ok) throw new WebdavError(`WebDAV name is invalid: ${rel.problem}`, { kind: 'config', reason: 'invalid_path' });
    await this.#ensure(rel.segments.join('/'));
  }

  // --- RunDirReader --------------------------------------------------------

  async size(name: string): Promise<number | null> {
    return this.#client.head(this.#file(name));
  }

  async open(name: string, range?: { start: number; end?: number }): Promise<Readable> {
    return this.#client.get(this.#file(name), range);
  }

  /**
   * Every file below the run collection, names relative to it, sorted. A run
   * directory that does not exist lists as empty. Sizes come from PROPFIND;
   * a server that omits getcontentlength costs one HEAD for that file.
   */
  async list(): Promise<StoredFile[]> {
    const out: StoredFile[] = [];
    const queue: string[] = [''];
    while (queue.length > 0) {
      const dir = queue.shift()!;
      const children = await this.#client.list(this.#root + dir);
      if (children === null) continue;
      for (const c of children) {
        const rel = dir + c.name;
        if (c.collection) queue.push(rel + '/');
        else out.push({ name: rel, size: c.size ?? (await this.#client.head(this.#root + rel)) ?? 0 });
      }
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  // --- internals -----------------------------------------------------------

  /** The client-relative path of a file of this run; refuses names that are not plain relative file names. */
  #file(name: string): string {
    const rel = parseRelativePath(name);
    if (!rel.ok) throw new WebdavError(`WebDAV name is invalid: ${rel.problem}`, { kind: 'config', reason: 'invalid_path' });
    if (rel.collection) throw new WebdavError('WebDAV name is invalid: a file name must not end with /', { kind: 'config', reason: 'invalid_path' });
    return this.#root + rel.segments.join('/');
  }

  #ensureParents(name: string): Promise<void> {
    const slash = name.lastIndexOf('/');
    return this.#ensure(slash < 0 ? '' : name.slice(0, slash));
  }

  /** Create `dir` (relative to the run dir, no trailing slash; '' = the run dir) and its parents, once. */
  #ensure(dir: string): Promise<void> {
    const known = this.#collections.get(dir);
    if (known !== undefined) return known;
    const slash = dir.lastIndexOf('/');
    const parent = dir === '' ? null : slash < 0 ? '' : dir.slice(0, slash);
    const p = (async () => {
      if (parent !== null) await this.#ensure(parent);
      // The run dir itself may need `<job_id>/` (and a missing base path) first: ensureCollection walks up on 409.
      await this.#client.ensureCollection(this.#root + (dir === '' ? '' : dir + '/'));
    })();
    this.#collections.set(dir, p);
    // A failed creation is forgotten, so the next put tries again.
    p.catch(() => this.#collections.delete(dir));
    return p;
  }
}

/** Facts every maintenance outcome carries for the queue's events. */
export interface WebdavMaintenanceFacts {
  /** Wall time of the whole primitive. */
  durationMs: number;
  /** Redacted URL of the run collection. */
  url: string;
}

/** Outcome of {@link deleteRunDir}. */
export interface DeleteRunDirResult extends WebdavMaintenanceFacts {
  outcome: 'deleted' | 'not_found';
  /** `walk` when the server refused a recursive DELETE and entries were deleted one by one. */
  strategy: 'delete' | 'walk';
  deletedEntries: number;
}

/** Outcome of {@link cleanupIncompleteRunDir}. */
export interface CleanupRunDirResult extends WebdavMaintenanceFacts {
  /** `skip_complete`: complete.json exists, nothing deleted. `skip_not_found`: no run dir. `deleted`: the partial run dir is gone. */
  outcome: 'skip_complete' | 'skip_not_found' | 'deleted';
}

async function withFacts<T>(
  baseUrl: string,
  credentials: WebdavCredentials,
  jobId: string,
  runId: string,
  options: WebdavTargetClientOptions | undefined,
  body: (client: WebdavClient, root: string, url: string) => Promise<T>,
): Promise<T & WebdavMaintenanceFacts> {
  const started = performance.now();
  let client: WebdavClient | undefined;
  try {
    const root = runDirPath(jobId, runId);
    client = new WebdavClient({ ...options, baseUrl, credentials });
    const url = client.urlOf(root, true);
    const result = await body(client, root, url);
    return { ...result, durationMs: Math.round(performance.now() - started), url };
  } catch (err) {
    if (err instanceof WebdavError) err.durationMs = Math.round(performance.now() - started);
    throw err;
  } finally {
    client?.close();
  }
}

/**
 * Delete the run directory `<base>/<job_id>/<run_id>/` and everything in it
 * (DESIGN §6): one DELETE with a trailing slash, PROPFIND walk when the server
 * refuses recursion. 404 on the first DELETE → `not_found` (the queue records
 * `missing`). Failures throw a WebdavError whose `kind` picks the queue's
 * backoff row, with `status`, `url`, `retryAfterSeconds` and `durationMs` set.
 */
export function deleteRunDir(
  baseUrl: string,
  credentials: WebdavCredentials,
  jobId: string,
  runId: string,
  options?: WebdavTargetClientOptions,
): Promise<DeleteRunDirResult> {
  return withFacts(baseUrl, credentials, jobId, runId, options, async (client, root) => {
    const r = await client.deleteTree(root);
    return { outcome: r.existed ? ('deleted' as const) : ('not_found' as const), strategy: r.strategy, deletedEntries: r.deletedEntries };
  });
}

/**
 * Clean up a run that never completed (seed 004): when `complete.json` exists
 * the run is complete and nothing is touched (`skip_complete`); otherwise the
 * run directory is deleted like {@link deleteRunDir} (`deleted`), or was not
 * there (`skip_not_found`).
 */
export function cleanupIncompleteRunDir(
  baseUrl: string,
  credentials: WebdavCredentials,
  jobId: string,
  runId: string,
  options?: WebdavTargetClientOptions,
): Promise<CleanupRunDirResult> {
  return withFacts(baseUrl, credentials, jobId, runId, options, async (client, root) => {
    if ((await client.head(root + 'complete.json')) !== null) return { outcome: 'skip_complete' as const };
    const r = await client.deleteTree(root);
    return { outcome: r.existed ? ('deleted' as const) : ('skip_not_found' as const) };
  });
}

/**
 * Event fields for a maintenance failure (DESIGN §5 events; reference §1.8
 * `fields`): error kind, HTTP status, Retry-After, redacted URL, duration.
 * Undefined facts are left out.
 */
export function webdavFailureFields(err: WebdavError): Record<string, string | number> {
  const fields: Record<string, string | number> = { error_kind: err.kind, error_code: err.code, reason: err.reason };
  if (err.durationMs !== undefined) fields['duration_ms'] = err.durationMs;
  if (err.status !== undefined) fields['http_status'] = err.status;
  if (err.retryAfterSeconds !== undefined) fields['retry_after_secs'] = err.retryAfterSeconds;
  if (err.method !== undefined) fields['http_method'] = err.method;
  if (err.url !== undefined) fields['url'] = err.url;
  return fields;
}
