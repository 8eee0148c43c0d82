/**
 * The progress line `bastion job run --follow` draws on a terminal:
 *
 *   [########............]  42%  120/300 files  1.20 GiB/3.00 GiB  45.3 MiB/s  ETA 1m05s
 *
 * Pure: the rate meter takes timestamps from the caller, the renderer takes
 * the width. The caller redraws at most 10 times a second with `\r` and
 * "erase to end of line".
 */
import { formatBytes, formatDuration, formatRate } from '../core/human-units.ts';

/** What the bar shows (runs.progress, see engine/backup/run-progress.ts). */
export interface BarState {
  stage: string;
  files_done: number;
  files_total: number | null;
  bytes_done: number;
  bytes_total: number | null;
}

/**
 * Bytes per second over a sliding window of recent samples (default 10 s),
 * so the rate follows the current speed without jumping on every sample.
 */
export class RateMeter {
  readonly #windowMs: number;
  readonly #samples: Array<{ at: number; bytes: number }> = [];

  constructor(windowMs = 10_000) {
    this.#windowMs = windowMs;
  }

  /** Record that `bytes` were done at time `at` (ms). Samples going backwards (a new stage) restart the meter. */
  add(at: number, bytes: number): void {
    const last = this.#samples.at(-1);
    if (last && (bytes < last.bytes || at < last.at)) this.#samples.length = 0;
    if (last && at === last.at) last.bytes = bytes;
    else this.#samples.push({ at, bytes });
    while (this.#samples.length > 2 && this.#samples[0]!.at < at - this.#windowMs) this.#samples.shift();
  }

  /** Bytes per second, or null before two samples. */
  rate(): number | null {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    if (!first || !last || last.at <= first.at) return null;
    return ((last.bytes - first.bytes) * 1000) / (last.at - first.at);
  }
}

/** Seconds left at `rate`, or null when unknown. */
export function etaSeconds(state: BarState, rate: number | null): number | null {
  if (rate === null || rate <= 0 || state.bytes_total === null) return null;
  return Math.max(0, (state.bytes_total - state.bytes_done) / rate);
}

/** One line of at most `width` columns. */
export function renderBar(state: BarState, rate: number | null, width: number): string {
  const fraction = state.bytes_total && state.bytes_total > 0 ? Math.min(1, state.bytes_done / state.bytes_total) : state.files_total ? Math.min(1, state.files_done / state.files_total) : null;
  const files = state.files_total === null ? `${state.files_done} files` : `${state.files_done}/${state.files_total} files`;
  const bytes = state.bytes_total === null ? formatBytes(state.bytes_done) : `${formatBytes(state.bytes_done)}/${formatBytes(state.bytes_total)}`;
  const eta = etaSeconds(state, rate);
  const parts = [
    fraction === null ? state.stage : `${String(Math.floor(fraction * 100)).padStart(3)}%`,
    files,
    bytes,
    ...(rate !== null ? [formatRate(rate)] : []),
    ...(eta !== null && state.stage !== 'finalize' ? [`ETA ${formatDuration(eta)}`] : []),
  ];
  const text = parts.join('  ');
  const barWidth = Math.min(30, width - text.length - 4);
  if (barWidth < 5 || fraction === null) return text.slice(0, Math.max(0, width - 1));
  const filled = Math.round(fraction * barWidth);
  return `[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}]  ${text}`.slice(0, Math.max(0, width - 1));
}
