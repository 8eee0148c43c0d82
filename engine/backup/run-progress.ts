/**
 * Keeps a running run alive and visible: converts the format engine's
 * progress callbacks (many per second) into at most one `progress` event and
 * runs.progress update per second, and heartbeats every 10 s even when
 * nothing moves (a long scan, a slow upload), so the watchdog can tell a
 * busy worker from a dead one.
 *
 * Timing (DESIGN §5, the 2-minute recovery goal): heartbeat every 10 s; the
 * watchdog (every minute) fails runs silent for 45 s, i.e. 4 missed beats —
 * a worker that dies is noticed within 45 s + 60 s < 2 min, while one slow
 * database round trip never fails a healthy run.
 *
 * At most one database call is in flight: progress that arrives meanwhile
 * replaces the pending value, so a slow database never queues work. When the
 * database answers that the run is no longer running (the watchdog failed
 * it), {@link RunProgress.lost} fires so the backup stops writing.
 */
import type { BackupProgress } from '../format/run-backup.ts';
import { formatBytes } from '../../core/human-units.ts';

/** Default heartbeat interval. */
export const HEARTBEAT_INTERVAL_MS = 10_000;
/** Default minimum spacing of progress events. */
export const PROGRESS_EVENT_INTERVAL_MS = 1_000;
/** Default silence after which the watchdog fails a run (seconds). */
export const STALE_AFTER_SECONDS = 45;

/** What runs.progress holds while a backup runs (and after it ended). */
export interface RunProgressDoc {
  stage: BackupProgress['stage'];
  files_done: number;
  dirs_done: number;
  bytes_done: number;
  /** Null during the scan. */
  files_total: number | null;
  dirs_total: number | null;
  bytes_total: number | null;
  /** Parts (archive_v1) or data files (raw_tree_v1) stored so far. */
  stored_files: number;
  /** Bytes written to the target so far. */
  written_bytes: number;
  updated_at: string;
}

/** The progress document of a format-engine report. */
export function progressDoc(p: BackupProgress, now: Date = new Date()): RunProgressDoc {
  return {
    stage: p.stage,
    files_done: p.done.files,
    dirs_done: p.done.dirs,
    bytes_done: p.done.bytes,
    files_total: p.total?.files ?? null,
    dirs_total: p.total?.dirs ?? null,
    bytes_total: p.total?.bytes ?? null,
    stored_files: p.stored_files,
    written_bytes: p.written_bytes,
    updated_at: now.toISOString(),
  };
}

/** A one-line event message: `packaging: 120/300 files, 1.20 GiB of 3.00 GiB`. */
export function progressMessage(d: RunProgressDoc): string {
  if (d.stage === 'scan') return `scan: ${d.files_done} files, ${d.dirs_done} directories, ${formatBytes(d.bytes_done)} so far`;
  const files = d.files_total === null ? `${d.files_done} files` : `${d.files_done}/${d.files_total} files`;
  const bytes = d.bytes_total === null ? formatBytes(d.bytes_done) : `${formatBytes(d.bytes_done)} of ${formatBytes(d.bytes_total)}`;
  return `${d.stage}: ${files}, ${bytes}, ${formatBytes(d.written_bytes)} written`;
}

/** Sends one heartbeat; resolves false when the run is no longer running. */
export type HeartbeatSender = (progress: RunProgressDoc | null, message: string | null) => Promise<boolean>;

/** Options of {@link RunProgress}. */
export interface RunProgressOptions {
  send: HeartbeatSender;
  heartbeatMs?: number;
  progressEventMs?: number;
  /** A heartbeat failed (database unreachable); the run goes on. */
  onError?: (err: unknown) => void;
  /** Clock (tests). */
  now?: () => number;
}

/** Heartbeat and throttled progress of one running run. */
export class RunProgress {
  readonly #send: HeartbeatSender;
  readonly #heartbeatMs: number;
  readonly #progressMs: number;
  readonly #onError: (err: unknown) => void;
  readonly #now: () => number;
  readonly #lost = new AbortController();
  #timer: NodeJS.Timeout | null = null;
  #latest: RunProgressDoc | null = null;
  #dirty = false;
  #lastEventAt = Number.NEGATIVE_INFINITY;
  #lastSentAt = 0;
  #inFlight: Promise<void> | null = null;
  #pendingEvent = false;
  #stopped = false;
  /** Progress events actually sent (for tests and logs). */
  eventsSent = 0;

  constructor(options: RunProgressOptions) {
    this.#send = options.send;
    this.#heartbeatMs = options.heartbeatMs ?? HEARTBEAT_INTERVAL_MS;
    this.#progressMs = options.progressEventMs ?? PROGRESS_EVENT_INTERVAL_MS;
    this.#onError = options.onError ?? (() => {});
    this.#now = options.now ?? Date.now;
  }

  /** Fires when the database says the run is not running any more. */
  get lost(): AbortSignal {
    return this.#lost.signal;
  }

  /** Start heartbeating (the start itself counts as the first beat). */
  start(): void {
    this.#lastSentAt = this.#now();
    this.#timer = setInterval(() => this.#tick(), Math.min(this.#heartbeatMs, this.#progressMs));
    this.#timer.unref();
  }

  /** Record a progress report (cheap; called for every report of the format engine). */
  report(p: BackupProgress): void {
    if (this.#stopped) return;
    this.#latest = progressDoc(p);
    this.#dirty = true;
    if (this.#now() - this.#lastEventAt >= this.#progressMs) this.#flush(true);
  }

  /** The latest progress document. */
  get latest(): RunProgressDoc | null {
    return this.#latest;
  }

  #tick(): void {
    const now = this.#now();
    if (this.#dirty && now - this.#lastEventAt >= this.#progressMs) this.#flush(true);
    else if (now - this.#lastSentAt >= this.#heartbeatMs) this.#flush(false);
  }

  #flush(withEvent: boolean): void {
    if (this.#inFlight) {
      this.#pendingEvent ||= withEvent;
      return;
    }
    const doc = this.#dirty ? this.#latest : null;
    const event = withEvent && doc !== null;
    this.#dirty = false;
    const now = this.#now();
    this.#lastSentAt = now;
    if (event) this.#lastEventAt = now;
    this.#inFlight = this.#send(doc, event ? progressMessage(doc) : null).then(
      (alive) => {
        if (event) this.eventsSent++;
        if (!alive) this.#lost.abort(new Error('the run is not running any more'));
      },
      (err: unknown) => {
        // Keep what was not stored for the next beat.
        if (doc !== null && !this.#dirty) this.#dirty = true;
        this.#onError(err);
      },
    );
    void this.#inFlight.finally(() => {
      this.#inFlight = null;
      if (this.#pendingEvent && !this.#stopped) {
        this.#pendingEvent = false;
        if (this.#now() - this.#lastEventAt >= this.#progressMs) this.#flush(true);
      }
    });
  }

  /** Stop beating; waits for a call in flight, then stores the last progress without an event. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    while (this.#inFlight) await this.#inFlight;
    if (this.#dirty && this.#latest) {
      this.#dirty = false;
      await this.#send(this.#latest, null).then(
        () => {},
        (err: unknown) => this.#onError(err),
      );
    }
  }
}
