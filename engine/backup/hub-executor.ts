/**
 * Executes runs on the hub itself: opens the run directory on the target
 * (local_dir on this machine, or WebDAV with the hub's node-scoped secret)
 * and runs the format engine into it, staging under
 * `<data_dir>/staging/<run_id>/` (entries index, resume journal, one part
 * being uploaded). The staging directory survives a requeue, so a run
 * interrupted by a shutdown resumes with its journal on this machine; it is
 * removed when the run ends for good.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { isUuid } from '../../core/ids.ts';
import { BastionError } from '../../core/errors.ts';
import { runBackup } from '../format/run-backup.ts';
import { resolveWebdavCredentials } from '../secrets/secret-store.ts';
import { openLocalRunDirWriter } from '../targets/local-dir.ts';
import type { RunDirWriter } from '../targets/target.ts';
import { WebdavRunDir } from '../targets/webdav-target.ts';
import type { ExecutorContext, RunExecution, RunExecutor, RunResult } from './executor.ts';

/** `<data_dir>/staging`. */
export function stagingRoot(dataDir: string): string {
  return path.join(dataDir, 'staging');
}

/** `<data_dir>/staging/<run_id>`; refuses anything but a UUID as the last component. */
export function stagingDirOf(dataDir: string, runId: string): string {
  if (!isUuid(runId)) throw new BastionError('invalid_input', 'run_id must be a lower-case UUID', { details: { field: 'run_id' } });
  return path.join(stagingRoot(dataDir), runId);
}

/** The hub's executor. */
export class HubExecutor implements RunExecutor {
  readonly nodeId = 'hub';
  readonly #ctx: ExecutorContext;
  readonly #secrets = new Map<string, string[]>();

  constructor(ctx: ExecutorContext) {
    this.#ctx = ctx;
  }

  secretsOf(runId: string): readonly string[] {
    return this.#secrets.get(runId) ?? [];
  }

  async execute(run: RunExecution): Promise<RunResult> {
    const stagingDir = stagingDirOf(this.#ctx.dataDir, run.runId);
    await fs.mkdir(stagingRoot(this.#ctx.dataDir), { recursive: true, mode: 0o700 });
    const target = run.spec.target;
    let writer: RunDirWriter;
    let close = () => {};
    if (target.type === 'local_dir') {
      writer = await openLocalRunDirWriter({ baseDir: target.base_dir, jobId: run.jobId, runId: run.runId });
    } else {
      const credentials = await resolveWebdavCredentials(this.#ctx.pool, this.#ctx.secrets, run.nodeId, target.secret_name);
      const basic = Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64');
      this.#secrets.set(run.runId, [credentials.password, basic].filter((s) => s.length >= 4));
      const dir = new WebdavRunDir({ baseUrl: target.base_url, credentials, jobId: run.jobId, runId: run.runId });
      writer = dir;
      close = () => dir.close();
    }
    try {
      const summary = await runBackup({
        jobId: run.jobId,
        runId: run.runId,
        startedAt: run.startedAt,
        source: run.spec.source,
        format: run.spec.format,
        encryption: run.spec.encryption,
        partSizeBytes: run.spec.part_size_bytes,
        writer,
        stagingDir,
        onProgress: run.onProgress,
        signal: run.signal,
      });
      return { ...summary, location: writer.location };
    } finally {
      close();
    }
  }

  async discard(runId: string): Promise<void> {
    this.#secrets.delete(runId);
    await fs.rm(stagingDirOf(this.#ctx.dataDir, runId), { recursive: true, force: true });
  }
}
