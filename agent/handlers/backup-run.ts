/**
 * A backup run on the agent: the format engine (engine/format/run-backup.ts)
 * into a local_dir on this machine or a WebDAV target with the login the hub
 * sent in the frame, staging under `<data_dir>/staging/<run_id>`, exactly as
 * the hub's executor does. Progress goes to the hub at most once a second
 * with a heartbeat every 10 s (engine/backup/run-progress.ts, whose sender
 * here is a frame instead of a SQL call); the hub answers `cancel` when the
 * run is no longer running, which aborts the backup.
 *
 * The staging directory (journal, entries index) survives an agent restart:
 * the hub sends the same message again on the next connection and the run
 * resumes, skipping what is already stored. It is removed when the run ends
 * with a result.
 */
import fs from 'node:fs/promises';
import type { BackupRunFrame, RunResultReport } from '../../core/agent-protocol.ts';
import { BastionError } from '../../core/errors.ts';
import type { WebdavCredentials } from '../../core/webdav-path.ts';
import { describeRunFailure } from '../../engine/backup/run-error.ts';
import { RunProgress, type RunProgressDoc } from '../../engine/backup/run-progress.ts';
import { stagingDirOf, stagingRoot } from '../../engine/backup/hub-executor.ts';
import { runBackup } from '../../engine/format/run-backup.ts';
import { openLocalRunDirWriter } from '../../engine/targets/local-dir.ts';
import type { RunDirWriter } from '../../engine/targets/target.ts';
import { WebdavRunDir } from '../../engine/targets/webdav-target.ts';
import { frameFields } from './frame-fields.ts';

/** What a backup needs from the agent. */
export interface BackupContext {
  dataDir: string;
  /** Fires when the hub cancels the run or the agent stops. */
  signal: AbortSignal;
  /** Send a progress report or heartbeat (null = nothing new). */
  sendProgress(doc: RunProgressDoc | null, message: string | null): void;
  /** Send a note (agent_resumed, …). */
  sendNote(kind: string, message: string): void;
  heartbeatMs?: number;
  progressEventMs?: number;
}

/** The outcome: a result to report, or `interrupted` (agent stopping or hub cancel: no result, staging kept or dropped by the caller). */
export type BackupOutcome = { result: RunResultReport } | { interrupted: true };

/** Execute a backup_run message. Never throws. */
export async function runBackupFrame(frame: BackupRunFrame, ctx: BackupContext): Promise<BackupOutcome> {
  const secrets: string[] = [];
  let close = () => {};
  const progress = new RunProgress({
    send: async (doc, message) => {
      ctx.sendProgress(doc, message);
      return true;
    },
    ...(ctx.heartbeatMs !== undefined ? { heartbeatMs: ctx.heartbeatMs } : {}),
    ...(ctx.progressEventMs !== undefined ? { progressEventMs: ctx.progressEventMs } : {}),
  });
  try {
    const stagingDir = stagingDirOf(ctx.dataDir, frame.run_id);
    await fs.mkdir(stagingRoot(ctx.dataDir), { recursive: true, mode: 0o700 });
    const resumed = await fs.stat(stagingDir).then(
      () => true,
      () => false,
    );
    if (resumed) ctx.sendNote('agent_resumed', 'resuming from the staging directory of an earlier attempt on this agent');
    const target = frame.spec.target;
    let writer: RunDirWriter;
    if (target.type === 'local_dir') {
      writer = await openLocalRunDirWriter({ baseDir: target.base_dir, jobId: frame.job_id, runId: frame.run_id });
    } else {
      const credentials: WebdavCredentials | undefined = frame.credentials;
      if (!credentials) throw new BastionError('secret_not_found', `the hub sent no WebDAV login for secret ${target.secret_name}`, { details: { field: 'target.secret_name', reason: 'not_sent' } });
      secrets.push(credentials.password, Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64'));
      const dir = new WebdavRunDir({ baseUrl: target.base_url, credentials, jobId: frame.job_id, runId: frame.run_id });
      writer = dir;
      close = () => dir.close();
    }
    progress.start();
    const summary = await runBackup({
      jobId: frame.job_id,
      runId: frame.run_id,
      startedAt: new Date(frame.started_at),
      source: frame.spec.source,
      format: frame.spec.format,
      encryption: frame.spec.encryption,
      partSizeBytes: frame.spec.part_size_bytes,
      writer,
      stagingDir,
      onProgress: (p) => progress.report(p),
      signal: ctx.signal,
    });
    await progress.stop();
    return { result: { status: 'success', summary: { ...summary, location: writer.location } } };
  } catch (err) {
    await progress.stop();
    if (ctx.signal.aborted) return { interrupted: true };
    const f = describeRunFailure(err, secrets.filter((s) => s.length >= 4));
    return { result: { status: 'failed', error_code: f.code, error: f.message.slice(0, 2000) || f.code, fields: frameFields(f.fields) } };
  } finally {
    close();
  }
}

/** Remove the staging directory of a run that ended for good. */
export async function discardStaging(dataDir: string, runId: string): Promise<void> {
  await fs.rm(stagingDirOf(dataDir, runId), { recursive: true, force: true });
}
