import { setInterval as every } from "node:timers/promises";
import type { Logger } from "pino";
import type { BatchStats } from "./batcher.ts";

/** What a batch is counted under: its model version, the provider it ran on and its lane. */
export type BatchLabels = { model: string; version: string; provider: string; lane: string };

type Tally = BatchLabels & { rows: number; batches: number; failedRows: number; waitMs: number; maxWaitMs: number; runMs: number; maxRunMs: number };

/**
 * The worker's batch log: one debug line per batch (a 300k-row job at batch size 1 was 100 MB of
 * info lines), and one info line per interval that sums the batches up per model version, provider
 * and lane: rows, batches, mean batch size, failed rows, wait and run time. An interval without a
 * batch says nothing. `stop()` writes the last, partial interval, so a worker's shutdown loses no
 * count.
 */
export class BatchLog {
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #tallies = new Map<string, Tally>();
  #since = performance.now();
  readonly #controller = new AbortController();
  #loop: Promise<void> | null = null;

  /** @param intervalMs - LOG_SUMMARY_INTERVAL_S in ms; 0: no summaries, the per-batch lines only */
  constructor(logger: Logger, intervalMs: number) {
    this.#logger = logger;
    this.#intervalMs = intervalMs;
  }

  /** Starts the periodic summary (one loop, which cannot overlap itself). */
  start(): void {
    if (this.#intervalMs <= 0 || this.#loop) return;
    this.#loop = (async () => {
      try {
        for await (const _ of every(this.#intervalMs, undefined, { signal: this.#controller.signal, ref: false })) this.flush();
      } catch (error) {
        if (!this.#controller.signal.aborted) throw error;
      }
    })();
  }

  /** A batch ran: its debug line, and its numbers into this interval's summary. */
  record(labels: BatchLabels, stats: BatchStats): void {
    this.#logger.debug({ ...labels, ...stats }, "batch");
    if (this.#intervalMs <= 0) return;
    const key = `${labels.model}\u0000${labels.version}\u0000${labels.provider}\u0000${labels.lane}`;
    let tally = this.#tallies.get(key);
    if (!tally) {
      tally = { ...labels, rows: 0, batches: 0, failedRows: 0, waitMs: 0, maxWaitMs: 0, runMs: 0, maxRunMs: 0 };
      this.#tallies.set(key, tally);
    }
    tally.rows += stats.rows;
    tally.batches += 1;
    tally.failedRows += stats.failed;
    tally.waitMs += stats.waitMs;
    tally.maxWaitMs = Math.max(tally.maxWaitMs, stats.waitMs);
    tally.runMs += stats.runMs;
    tally.maxRunMs = Math.max(tally.maxRunMs, stats.runMs);
  }

  /** Writes the summary of the batches since the last one, if there were any, and starts a new interval. */
  flush(): void {
    const now = performance.now();
    const seconds = round((now - this.#since) / 1000);
    this.#since = now;
    if (this.#tallies.size === 0) return;
    const groups = [...this.#tallies.values()].map((tally) => ({
      model: tally.model,
      version: tally.version,
      provider: tally.provider,
      lane: tally.lane,
      rows: tally.rows,
      batches: tally.batches,
      meanBatchRows: round(tally.rows / tally.batches),
      failedRows: tally.failedRows,
      meanWaitMs: round(tally.waitMs / tally.batches),
      maxWaitMs: round(tally.maxWaitMs),
      meanRunMs: round(tally.runMs / tally.batches),
      maxRunMs: round(tally.maxRunMs),
    }));
    this.#tallies.clear();
    const rows = groups.reduce((sum, group) => sum + group.rows, 0);
    const batches = groups.reduce((sum, group) => sum + group.batches, 0);
    const failedRows = groups.reduce((sum, group) => sum + group.failedRows, 0);
    this.#logger.info(
      { seconds, rows, batches, meanBatchRows: round(rows / batches), failedRows, rowsPerSecond: seconds > 0 ? round(rows / seconds) : null, groups },
      `batches in the last ${seconds} s: ${rows} rows in ${batches} batches (mean ${round(rows / batches)}), ${failedRows} rows failed`,
    );
  }

  /** Stops the loop and writes the last interval's summary (after the batchers' last batches ran). */
  async stop(): Promise<void> {
    this.#controller.abort();
    await this.#loop;
    if (this.#intervalMs > 0) this.flush();
  }
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
