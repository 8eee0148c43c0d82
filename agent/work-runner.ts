/**
 * The agent's work: every task or backup message the hub delivers is
 * acknowledged at once, then
 *
 *   - already running here (a re-send after a reconnect) → nothing more: its
 *     result is sent when it finishes;
 *   - in the results cache (a re-send after a lost result, or after this
 *     agent restarted) → the cached result is sent again, nothing executes;
 *   - otherwise it waits for a free slot of its kind (maintenance: 4 at once,
 *     backups: 2) and executes; its result is cached, then sent.
 *
 * Results go out on whatever connection is live when they are ready; one
 * produced while disconnected is sent when the hub re-sends the message on
 * the next connection (from the cache). Stopping the agent interrupts work
 * without a result: the hub still holds it, and re-sends it on reconnect.
 *
 * Emits `started`, `finished` and `replayed` ({kind, messageId, runId, …})
 * so tests can wait for them; prints one line per event through `out`.
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { BackupRunFrame, OutgoingFrame, RunResultReport, TaskFrame, TaskResult } from '../core/agent-protocol.ts';
import type { RunDirRemovalOptions } from '../engine/targets/local-run-dir-removal.ts';
import { discardStaging, runBackupFrame } from './handlers/backup-run.ts';
import { runMaintenanceTask } from './handlers/maintenance-task.ts';
import type { ResultsCache } from './results-cache.ts';

/** Work messages. */
export type WorkFrame = TaskFrame | BackupRunFrame;

/** Limits and timing of the work runner. */
export interface WorkRunnerOptions {
  /** Deletes and cleanups at once (default 4). */
  maintenanceSlots?: number;
  /** Backups at once (default 2). */
  backupSlots?: number;
  /** A long delete or cleanup sends a progress event this often (default 10 s). */
  taskProgressMs?: number;
  /** Backup heartbeat / progress spacing (defaults of engine/backup/run-progress.ts). */
  heartbeatMs?: number;
  progressEventMs?: number;
  /** Test seam of local removals (runs after the safety checks, right before the removal). */
  local?: RunDirRemovalOptions;
}

/** What the runner needs from the agent. */
export interface WorkRunnerDeps {
  agentId: string;
  dataDir: string;
  cache: ResultsCache;
  /** Send on the live connection; false when there is none. */
  send(frame: OutgoingFrame): boolean;
  /** One human-readable line (the agent's console). */
  out(line: string): void;
  logger: Logger;
}

/** A unit of work known to the runner. */
interface Job {
  frame: WorkFrame;
  abort: AbortController;
  /** Set when the hub canceled it (its result is then not reported). */
  canceled: boolean;
}

function describe(frame: WorkFrame): string {
  return frame.type === 'backup_run' ? `backup_run ${frame.run_id}` : `${frame.type} ${frame.run_id.slice(0, 64)} attempt ${frame.attempt}`;
}

/** Runs the work of one agent. */
export class WorkRunner extends EventEmitter {
  readonly #deps: WorkRunnerDeps;
  readonly #opts: Required<Omit<WorkRunnerOptions, 'local' | 'heartbeatMs' | 'progressEventMs'>> & Pick<WorkRunnerOptions, 'local' | 'heartbeatMs' | 'progressEventMs'>;
  /** Known messages: queued, checking the cache, or running. */
  readonly #jobs = new Map<string, Job>();
  readonly #queues = { maintenance: [] as Job[], backup: [] as Job[] };
  readonly #busy = { maintenance: 0, backup: 0 };
  readonly #running = new Set<Promise<void>>();
  #stopping = false;
  /** Executions started (tests: "executed once"). */
  executions = 0;

  constructor(deps: WorkRunnerDeps, options: WorkRunnerOptions = {}) {
    super();
    this.#deps = deps;
    this.#opts = { maintenanceSlots: options.maintenanceSlots ?? 4, backupSlots: options.backupSlots ?? 2, taskProgressMs: options.taskProgressMs ?? 10_000, ...options };
  }

  /** Messages queued or running. */
  get active(): number {
    return this.#jobs.size;
  }

  /** A work message arrived. */
  accept(frame: WorkFrame): void {
    this.#deps.send({ type: 'ack', message_id: frame.message_id });
    if (this.#stopping || this.#jobs.has(frame.message_id)) return;
    const job: Job = { frame, abort: new AbortController(), canceled: false };
    this.#jobs.set(frame.message_id, job);
    void this.#deps.cache.get(frame.message_id).then(
      (cached) => {
        if (cached) {
          this.#jobs.delete(frame.message_id);
          this.#deps.send(cached.type === 'task_result' ? { type: 'task_result', message_id: frame.message_id, result: cached.result } : { type: 'run_result', message_id: frame.message_id, result: cached.result });
          this.#deps.out(`${describe(frame)}: answered from the results cache (message ${frame.message_id}); not executed again`);
          this.emit('replayed', { kind: frame.type, messageId: frame.message_id, runId: frame.run_id });
          return;
        }
        const lane = frame.type === 'backup_run' ? 'backup' : 'maintenance';
        this.#queues[lane].push(job);
        this.#pump(lane);
      },
      (err: unknown) => {
        this.#jobs.delete(frame.message_id);
        this.#deps.logger.error({ err, message_id: frame.message_id }, 'results cache unreadable');
      },
    );
  }

  /**
   * A work message the agent could not read (its shape is wrong). Answered
   * with a failed result, so the task or run ends with a reason instead of
   * waiting for a timeout.
   */
  refuse(type: WorkFrame['type'], messageId: string, reason: string): void {
    this.#deps.send({ type: 'ack', message_id: messageId });
    if (type === 'backup_run') {
      this.#deps.send({ type: 'run_result', message_id: messageId, result: { status: 'failed', error_code: 'invalid_input', error: `the agent could not read the run message: ${reason}` } });
    } else {
      this.#deps.send({ type: 'task_result', message_id: messageId, result: { kind: 'config', error: `the agent could not read the task message: ${reason}; nothing was done`, fields: { reason: 'invalid_message' } } });
    }
    this.#deps.out(`${type} (message ${messageId}): refused, the message is malformed (${reason})`);
  }

  /** The hub canceled a message (its run is no longer running there). */
  cancel(messageId: string, reason: string): void {
    const job = this.#jobs.get(messageId);
    if (!job || job.canceled) return;
    job.canceled = true;
    job.abort.abort(new Error(`canceled by the hub: ${reason}`));
    this.#deps.out(`${describe(job.frame)}: canceled by the hub (${reason})`);
  }

  /** Interrupt everything (no results: the hub re-sends the work on the next start) and wait. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#queues.maintenance.length = 0;
    this.#queues.backup.length = 0;
    for (const job of this.#jobs.values()) job.abort.abort(new Error('the agent is stopping'));
    await Promise.allSettled([...this.#running]);
  }

  #pump(lane: 'maintenance' | 'backup'): void {
    const slots = lane === 'backup' ? this.#opts.backupSlots : this.#opts.maintenanceSlots;
    while (!this.#stopping && this.#busy[lane] < slots && this.#queues[lane].length > 0) {
      const job = this.#queues[lane].shift() as Job;
      this.#busy[lane]++;
      const p = this.#execute(job).finally(() => {
        this.#busy[lane]--;
        this.#running.delete(p);
        this.#jobs.delete(job.frame.message_id);
        this.#pump(lane);
      });
      this.#running.add(p);
    }
  }

  async #execute(job: Job): Promise<void> {
    const { frame } = job;
    const started = performance.now();
    this.executions++;
    this.#deps.out(`${describe(frame)}: started (message ${frame.message_id})`);
    this.emit('started', { kind: frame.type, messageId: frame.message_id, runId: frame.run_id });
    if (frame.type === 'backup_run') {
      const r = await runBackupFrame(frame, {
        dataDir: this.#deps.dataDir,
        signal: job.abort.signal,
        sendProgress: (progress, message) => void this.#deps.send({ type: 'run_progress', message_id: frame.message_id, progress, message }),
        sendNote: (kind, message) => void this.#deps.send({ type: 'run_event', message_id: frame.message_id, level: 'info', kind, message }),
        ...(this.#opts.heartbeatMs !== undefined ? { heartbeatMs: this.#opts.heartbeatMs } : {}),
        ...(this.#opts.progressEventMs !== undefined ? { progressEventMs: this.#opts.progressEventMs } : {}),
      });
      if ('interrupted' in r) {
        if (job.canceled) await discardStaging(this.#deps.dataDir, frame.run_id).catch(() => {});
        this.#deps.out(`${describe(frame)}: interrupted (${job.canceled ? 'canceled by the hub' : 'agent stopping; it resumes when the hub sends it again'})`);
        this.emit('finished', { kind: frame.type, messageId: frame.message_id, runId: frame.run_id, interrupted: true });
        return;
      }
      await this.#report(frame, { type: 'run_result', result: r.result }, performance.now() - started);
      await discardStaging(this.#deps.dataDir, frame.run_id).catch(() => {});
      return;
    }
    // A long delete says it is still going, so an operator watching the task sees life.
    this.#deps.send({ type: 'task_event', message_id: frame.message_id, level: 'info', kind: 'start', message: `agent started the ${frame.type === 'snapshot_delete' ? 'delete' : 'cleanup'}` });
    const ticker = setInterval(() => {
      const s = Math.round((performance.now() - started) / 1000);
      this.#deps.send({ type: 'task_event', message_id: frame.message_id, level: 'info', kind: 'progress', message: `still working (${s} s)`, fields: { elapsed_s: s } });
    }, this.#opts.taskProgressMs);
    ticker.unref();
    let result: TaskResult;
    try {
      result = await runMaintenanceTask(frame, { agentId: this.#deps.agentId, ...(this.#opts.local ? { local: this.#opts.local } : {}) });
    } finally {
      clearInterval(ticker);
    }
    if (this.#stopping) {
      // The removal may have finished: cache the result so the re-send after the restart is answered, not re-executed.
      await this.#deps.cache.put({ message_id: frame.message_id, type: 'task_result', result }).catch(() => {});
      this.emit('finished', { kind: frame.type, messageId: frame.message_id, runId: frame.run_id, interrupted: true });
      return;
    }
    await this.#report(frame, { type: 'task_result', result }, performance.now() - started);
  }

  async #report(frame: WorkFrame, r: { type: 'task_result'; result: TaskResult } | { type: 'run_result'; result: RunResultReport }, ms: number): Promise<void> {
    // Cached before it is sent: a crash in between is answered from the cache after the restart.
    try {
      await this.#deps.cache.put({ message_id: frame.message_id, ...r } as never);
    } catch (err) {
      this.#deps.logger.error({ err, message_id: frame.message_id }, 'could not store the result in the results cache');
    }
    const sent = this.#deps.send(r.type === 'task_result' ? { type: 'task_result', message_id: frame.message_id, result: r.result } : { type: 'run_result', message_id: frame.message_id, result: r.result });
    const what =
      r.type === 'task_result'
        ? 'outcome' in r.result
          ? `done (${r.result.outcome})`
          : `failed (${r.result.kind}: ${r.result.error})`
        : r.result.status === 'success'
          ? `done (${r.result.summary.source_total.files} files, ${r.result.summary.transfer_total_bytes} bytes written)`
          : `failed (${r.result.error_code}: ${r.result.error})`;
    this.#deps.out(`${describe(frame)}: ${what} in ${Math.round(ms)} ms${sent ? '' : '; the hub is not connected, the result is sent when it asks again'}`);
    this.emit('finished', { kind: frame.type, messageId: frame.message_id, runId: frame.run_id, result: r.result });
  }
}
