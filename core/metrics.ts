/**
 * A small Prometheus metrics registry (text exposition format 0.0.4): counters,
 * gauges and histograms with labels, plus collectors that refresh gauges
 * right before a scrape (queue depths read from the database). No I/O here:
 * the gateway serves `render()` at /metrics, and any module records into the
 * process-wide {@link metrics} registry through the instruments below — the
 * queue code calls {@link taskAttemptSeconds}.observe when an attempt ends.
 *
 * Label values are bounded by the callers (route patterns, statuses, queue
 * names — never ids), so series stay few.
 */

type Labels = Readonly<Record<string, string>>;

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatLabels(names: readonly string[], values: readonly string[], extra?: [string, string]): string {
  const parts = names.map((n, i) => `${n}="${escapeLabel(values[i] ?? '')}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function formatNumber(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

abstract class Metric {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];

  constructor(name: string, help: string, labelNames: readonly string[]) {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) throw new Error(`invalid metric name ${name}`);
    for (const l of labelNames) if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(l) || l === 'le') throw new Error(`invalid label name ${l}`);
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
  }

  protected key(labels: Labels): string {
    return JSON.stringify(this.labelNames.map((n) => labels[n] ?? ''));
  }

  abstract render(): string[];
}

/** A value that only goes up. */
export class Counter extends Metric {
  readonly #values = new Map<string, number>();

  /** Add `n` (default 1) to the series of `labels`. */
  inc(labels: Labels = {}, n = 1): void {
    if (n < 0) throw new Error('counters only go up');
    const k = this.key(labels);
    this.#values.set(k, (this.#values.get(k) ?? 0) + n);
  }

  /** Current value of a series (tests). */
  get(labels: Labels = {}): number {
    return this.#values.get(this.key(labels)) ?? 0;
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, v] of this.#values) lines.push(`${this.name}${formatLabels(this.labelNames, JSON.parse(k) as string[])} ${formatNumber(v)}`);
    return lines;
  }
}

/** A value that goes up and down. */
export class Gauge extends Metric {
  readonly #values = new Map<string, number>();

  set(labels: Labels, value: number): void {
    this.#values.set(this.key(labels), value);
  }
  inc(labels: Labels = {}, n = 1): void {
    const k = this.key(labels);
    this.#values.set(k, (this.#values.get(k) ?? 0) + n);
  }
  dec(labels: Labels = {}, n = 1): void {
    this.inc(labels, -n);
  }
  /** Drop every series (a collector about to set the current ones). */
  reset(): void {
    this.#values.clear();
  }
  get(labels: Labels = {}): number {
    return this.#values.get(this.key(labels)) ?? 0;
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const [k, v] of this.#values) lines.push(`${this.name}${formatLabels(this.labelNames, JSON.parse(k) as string[])} ${formatNumber(v)}`);
    return lines;
  }
}

/** Observations counted into cumulative buckets (Prometheus histogram). */
export class Histogram extends Metric {
  readonly buckets: readonly number[];
  readonly #series = new Map<string, { counts: number[]; sum: number; count: number }>();

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    super(name, help, labelNames);
    const sorted = [...buckets].sort((a, b) => a - b);
    if (sorted.length === 0 || new Set(sorted).size !== sorted.length) throw new Error(`histogram ${name} needs distinct buckets`);
    this.buckets = sorted;
  }

  /** Record one observation (seconds, bytes, …). */
  observe(labels: Labels, value: number): void {
    const k = this.key(labels);
    let s = this.#series.get(k);
    if (!s) {
      s = { counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 };
      this.#series.set(k, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= (this.buckets[i] as number)) s.counts[i] = (s.counts[i] ?? 0) + 1;
    s.sum += value;
    s.count++;
  }

  /** Observation count of a series (tests). */
  count(labels: Labels = {}): number {
    return this.#series.get(this.key(labels))?.count ?? 0;
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [k, s] of this.#series) {
      const values = JSON.parse(k) as string[];
      this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket${formatLabels(this.labelNames, values, ['le', formatNumber(b)])} ${s.counts[i]}`));
      lines.push(`${this.name}_bucket${formatLabels(this.labelNames, values, ['le', '+Inf'])} ${s.count}`);
      lines.push(`${this.name}_sum${formatLabels(this.labelNames, values)} ${formatNumber(s.sum)}`);
      lines.push(`${this.name}_count${formatLabels(this.labelNames, values)} ${s.count}`);
    }
    return lines;
  }
}

/** Latency buckets in seconds: 1 ms … 10 s. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
/** Task-attempt buckets in seconds: 10 ms … 1 h. */
export const ATTEMPT_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600] as const;

/** A set of metrics rendered together. */
export class MetricsRegistry {
  readonly #metrics = new Map<string, Metric>();
  readonly #collectors: Array<() => Promise<void> | void> = [];

  #add<M extends Metric>(m: M): M {
    const existing = this.#metrics.get(m.name);
    if (existing) {
      if (existing.constructor !== m.constructor) throw new Error(`metric ${m.name} registered twice with different types`);
      return existing as M;
    }
    this.#metrics.set(m.name, m);
    return m;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.#add(new Counter(name, help, labelNames));
  }
  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.#add(new Gauge(name, help, labelNames));
  }
  histogram(name: string, help: string, labelNames: readonly string[] = [], buckets: readonly number[] = LATENCY_BUCKETS): Histogram {
    return this.#add(new Histogram(name, help, labelNames, buckets));
  }

  /** Run `fn` before every render (to refresh gauges from elsewhere). */
  addCollector(fn: () => Promise<void> | void): () => void {
    this.#collectors.push(fn);
    return () => {
      const i = this.#collectors.indexOf(fn);
      if (i >= 0) this.#collectors.splice(i, 1);
    };
  }

  /** Run the collectors, then render every metric in the text format. */
  async render(): Promise<string> {
    for (const c of this.#collectors) await c();
    const lines: string[] = [];
    for (const m of this.#metrics.values()) lines.push(...m.render());
    return lines.join('\n') + '\n';
  }
}

/** The process-wide registry served at /metrics. */
export const metrics = new MetricsRegistry();

/** Duration of queue task attempts; the queue code observes `{queue, outcome}` when an attempt ends. */
export const taskAttemptSeconds = metrics.histogram('bastion_task_attempt_duration_seconds', 'Duration of delete, cleanup and other queue task attempts by queue and outcome.', ['queue', 'outcome'], ATTEMPT_BUCKETS);
