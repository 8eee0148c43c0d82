/**
 * Adaptive batching of database calls: requests submitted while a batch is
 * in flight wait for it and then go together in the next one, so under low
 * load a request runs at once (one event-loop turn later) and under high load
 * many agents' frames share one statement. At most `maxInFlight` batches per
 * batcher run at once (default 1; results use 2 so both database cores work);
 * a batch holds at most `maxBatch` items.
 *
 * Measured with bench/agents.ts (100 agents receiving a delete at once, hub,
 * database and agents on 2 cores): per-frame calls cost ~400 statements per
 * burst and put p99 at ~0.8 s; batched, see docs/agents.md for the figures.
 */

/** Runs a batch: one output per input, in order. */
export type BatchRunner<I, O> = (items: I[]) => Promise<O[]>;

/** A batcher of one kind of call. */
export class Batcher<I, O> {
  readonly #run: BatchRunner<I, O>;
  readonly #maxBatch: number;
  readonly #maxInFlight: number;
  #pending: Array<{ item: I; resolve: (o: O) => void; reject: (e: unknown) => void }> = [];
  #running = 0;
  #scheduled = false;
  /** Batches run so far and items in them (diagnostics, benchmarks). */
  batches = 0;
  items = 0;

  constructor(run: BatchRunner<I, O>, options: { maxBatch?: number; maxInFlight?: number } = {}) {
    this.#run = run;
    this.#maxBatch = options.maxBatch ?? 500;
    this.#maxInFlight = options.maxInFlight ?? 1;
  }

  /** Submit one item; resolves with its output once its batch ran. */
  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#running >= this.#maxInFlight || this.#scheduled) return;
    this.#scheduled = true;
    // One turn of the event loop: frames that arrived together share the batch.
    setImmediate(() => {
      this.#scheduled = false;
      void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    if (this.#running >= this.#maxInFlight || this.#pending.length === 0) return;
    this.#running++;
    const batch = this.#pending.splice(0, this.#maxBatch);
    this.batches++;
    this.items += batch.length;
    try {
      const out = await this.#run(batch.map((b) => b.item));
      batch.forEach((b, i) => b.resolve(out[i] as O));
    } catch (err) {
      for (const b of batch) b.reject(err);
    } finally {
      this.#running--;
      if (this.#pending.length > 0) this.#schedule();
    }
  }
}
