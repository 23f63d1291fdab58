import type { JobPriority } from "@coalesce/contracts";

/**
 * A dynamic batcher in the manner of Triton's: rows submitted by many concurrent chunks of the same
 * model are coalesced into one runner call, so one onnxruntime run serves many jobs.
 */

/**
 * Which rows go first. Interactive rows (small jobs that someone is waiting for) are batched ahead
 * of batch-lane rows and never share a run with them, so a lone interactive row waits for at most
 * the run in flight plus a run of its own size, not a full batch of a big job's rows.
 */
export type Lane = JobPriority;

/**
 * Adaptive batching waits for a batch to fill only while at least this many more rows are expected
 * before its deadline. At one, a client sending a row each time the last is answered (every ~4 ms)
 * looked like a stream and was held for the rows it would never send; waiting for a batch of two
 * instead of one is worth little anyway.
 */
const ADAPTIVE_MIN_EXPECTED_ROWS = 2;

/** Adaptive batching: how often a waiting batch is looked at again (Node's timers go by the millisecond). */
const ADAPTIVE_RECHECK_MS = 1;

/**
 * Whose rows a submit holds, for fair share (see BatcherOptions.fairShare): batches are dealt
 * round-robin across tenants, then across a tenant's jobs, then to a job's submits oldest first.
 */
export type ShareKey = { tenant: string; job: string };

/** Runs one batch. Must resolve with exactly `items.length` outputs, in the order of `items`. */
export type BatchRunner<I, O> = (items: I[]) => Promise<O[]>;

export type ItemResult<O> = { ok: true; value: O } | { ok: false; error: Error };

/** One line of numbers per dispatched batch, for the per-batch summary log. */
export type BatchStats = {
  /** Rows in the batch. */
  rows: number;
  /** Distinct submits (chunks) that contributed rows. */
  sources: number;
  /** How long the oldest row in the batch waited before the batch was dispatched. */
  waitMs: number;
  /** Time from dispatch until every row of the batch had a result, bisection retries included. */
  runMs: number;
  /** Rows that ended with `{ ok: false }`. */
  failed: number;
  /** The lane the batch's rows came from (a batch never mixes lanes). */
  lane: Lane;
};

export type BatcherOptions<I, O> = {
  /** Runs one batch; at most `maxInFlight` calls are in flight per batcher. */
  run: BatchRunner<I, O>;
  /**
   * Most rows handed to `run` at once (MAX_BATCH_ROWS). A positive integer.
   * @defaultValue none; required
   */
  maxRows: number;
  /**
   * Longest the oldest waiting row waits for a batch to fill before a partial batch is dispatched
   * (MAX_BATCH_DELAY_MS). `0` dispatches as soon as nothing is running.
   * @defaultValue none; required
   */
  maxDelayMs: number;
  /**
   * Longest an interactive row waits for its batch to fill, where that is less than `maxDelayMs`:
   * a version tuned for throughput (a long max_batch_delay_ms) must not hold rows someone is
   * waiting for, such as predict requests with a timeout of their own.
   * @defaultValue maxDelayMs
   */
  interactiveMaxDelayMs?: number;
  /**
   * Called once per dispatched batch, after all its rows have results. It must not throw; if it
   * does, the error is rethrown from a microtask (an uncaught exception) rather than corrupting the
   * batcher's state.
   * @defaultValue undefined, nothing is reported
   */
  onBatch?: (stats: BatchStats) => void;
  /**
   * Waits for a batch to fill only while rows are arriving: when the recent arrival rate says fewer
   * than one more row would come before the deadline, a partial batch goes at once. Under load this
   * still fills batches; at low load a lone row is not held for the whole delay.
   * @defaultValue false
   */
  adaptive?: boolean;
  /**
   * Most batches running at once: one per model instance that can run them side by side (Triton's
   * instance count). While one runs, the next still fills, and goes when it is due (full, its delay
   * up, or nothing more coming) and an instance is free.
   * @defaultValue 1
   */
  maxInFlight?: number;
  /**
   * Says whether a runner's error is about the batch as a whole rather than its rows (the runner
   * could not reach the database it reads from): every row of the batch then gets that error at
   * once, without bisecting, since re-running halves would only meet it again.
   * @defaultValue undefined, every error is bisected down to the rows that cause it
   */
  failsWholeBatch?: (error: unknown) => boolean;
  /**
   * Taken as a submit's rows arrive and given back once the last of them has a result (its run
   * ended): so whoever owns what `run` needs (the worker's model cache) keeps it while those rows
   * wait or run, and only then may let it go.
   * @defaultValue undefined, nothing is held
   */
  lease?: () => BatcherLease;
  /**
   * Deals each batch round-robin across the tenants of the submits that carry a ShareKey, then
   * across each tenant's jobs, and hands a job's rows to its submits oldest first (FAIR_SHARE).
   * Oldest first within a job is what lets the worker take another tenant's chunk soon: its chunks
   * then finish one after another and free their queue slots as they go, where shared evenly they
   * would all finish together at the end of the rows in hand. Off, or for submits without a key,
   * every submit is a share of its own (the rows in a batch are shared evenly among them).
   * @defaultValue true
   */
  fairShare?: boolean;
};

/** What `BatcherOptions.lease` hands out; `release` is called exactly once. */
export type BatcherLease = { release(): void };

/** One `submit` call: its rows, how many have been handed out, and where their results go. */
type Source<I, O> = {
  items: readonly I[];
  lane: Lane;
  share: ShareKey | undefined;
  taken: number;
  settled: number;
  results: ItemResult<O>[];
  submittedAt: number;
  lease: BatcherLease | undefined;
  resolve: (results: ItemResult<O>[]) => void;
};

/** Where a batched row's result goes back to. */
type Slot<I, O> = { source: Source<I, O>; index: number };

export class DynamicBatcher<I, O> {
  private readonly run: BatchRunner<I, O>;
  private maxRows: number;
  private maxDelayMs: number;
  private interactiveMaxDelayMs: number;
  private readonly onBatch: ((stats: BatchStats) => void) | undefined;
  private readonly failsWholeBatch: ((error: unknown) => boolean) | undefined;
  private readonly lease: (() => BatcherLease) | undefined;
  private readonly fairShare: boolean;
  private adaptive: boolean;
  /** Rows submitted recently, decayed exponentially over rateWindowMs: rate = recentRows / rateWindowMs. */
  private recentRows = 0;
  private lastArrival = 0;
  private rateWindowMs: number;

  /** Sources with rows not yet taken, in submission order; the head holds the oldest row. */
  private queue: Source<I, O>[] = [];
  private pendingRows = 0;
  private maxInFlight: number;
  private inFlight = 0;
  private wakeQueued = false;
  private timer: NodeJS.Timeout | undefined;
  private timerDeadline = 0;
  private closing: Promise<void> | undefined;
  private resolveClosed: (() => void) | undefined;

  constructor(options: BatcherOptions<I, O>) {
    checkLimits(options);
    this.run = options.run;
    this.maxRows = options.maxRows;
    this.maxDelayMs = options.maxDelayMs;
    this.interactiveMaxDelayMs = options.interactiveMaxDelayMs ?? options.maxDelayMs;
    this.onBatch = options.onBatch;
    this.failsWholeBatch = options.failsWholeBatch;
    this.lease = options.lease;
    this.fairShare = options.fairShare ?? true;
    this.adaptive = options.adaptive ?? false;
    this.maxInFlight = options.maxInFlight ?? 1;
    // Long enough to see a steady stream, short enough to notice it stopped.
    this.rateWindowMs = Math.max(10, 2 * options.maxDelayMs);
  }

  /**
   * Changes the limits of a live batcher (a model version's batching was changed): rows waiting
   * now go out under the new limits; the batch in flight, if any, runs as it was.
   */
  configure(limits: Pick<BatcherOptions<I, O>, "maxRows" | "maxDelayMs" | "interactiveMaxDelayMs" | "adaptive" | "maxInFlight">): void {
    checkLimits(limits);
    this.maxRows = limits.maxRows;
    this.maxDelayMs = limits.maxDelayMs;
    this.interactiveMaxDelayMs = limits.interactiveMaxDelayMs ?? limits.maxDelayMs;
    this.adaptive = limits.adaptive ?? false;
    this.maxInFlight = limits.maxInFlight ?? 1;
    this.rateWindowMs = Math.max(10, 2 * limits.maxDelayMs);
    this.wake();
  }

  /** Rows submitted but not yet taken into a batch (rows of the batch in flight are not counted). */
  get pending(): number {
    return this.pendingRows;
  }

  /**
   * Queues one source's rows and resolves with one result per row, in the order given, once every
   * row has run. Rows may be spread over several batches. Rejects only if the batcher is closed.
   * `share` says whose rows they are (see BatcherOptions.fairShare); without it the submit is a
   * share of its own.
   */
  submit(items: readonly I[], lane: Lane = "batch", share?: ShareKey): Promise<ItemResult<O>[]> {
    if (this.closing) return Promise.reject(new Error("DynamicBatcher is closed; submit refused"));
    if (items.length === 0) return Promise.resolve([]);
    const now = performance.now();
    this.recentRows = this.decayedRecentRows(now) + items.length;
    this.lastArrival = now;
    return new Promise((resolve) => {
      this.queue.push({
        // A copy, so a caller reusing its array cannot change rows that are still waiting.
        items: items.slice(),
        lane,
        share: this.fairShare ? share : undefined,
        taken: 0,
        settled: 0,
        results: new Array<ItemResult<O>>(items.length),
        submittedAt: performance.now(),
        lease: this.lease?.(),
        resolve,
      });
      this.pendingRows += items.length;
      this.wake();
    });
  }

  /**
   * Dispatches everything pending without waiting for batches to fill, and resolves once every
   * submitted row has a result. Submits made after this call reject. Leaves no timer behind.
   */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = new Promise((resolve) => {
        this.resolveClosed = resolve;
      });
      this.clearTimer();
      this.wake();
      this.resolveIfDrained();
    }
    return this.closing;
  }

  /**
   * Defers the dispatch decision to a microtask so that submits made in the same tick land in the
   * same batch, and so `run` is never called re-entrantly from inside `submit` or `close`.
   */
  private wake(): void {
    if (this.wakeQueued) return;
    this.wakeQueued = true;
    queueMicrotask(() => {
      this.wakeQueued = false;
      this.pump();
    });
  }

  /**
   * Dispatches batches while one is due and a slot is free (dispatch takes its rows at once), then
   * arms the one timer for the oldest waiting row's deadline.
   */
  private pump(): void {
    // A finishing run calls pump again, so nothing needs to be scheduled while every slot is busy.
    while (this.inFlight < this.maxInFlight) {
      const head = this.queue[0];
      if (head === undefined) {
        this.clearTimer();
        return;
      }
      const now = performance.now();
      const deadline = this.nextDeadline(head);
      if (this.closing || this.pendingRows >= this.maxRows || now >= deadline || this.nothingMoreComing(now, deadline)) {
        this.clearTimer();
        void this.dispatch(now);
        continue;
      }
      // Adaptive: looked at again soon, not only at the deadline, since the expectation of another
      // row falls as the wait goes on without one. A client that sends its next row only once this
      // one is answered looks like a stream to the arrival rate, and would otherwise hold its own
      // row for the whole delay (1.1 ms of a lone predict request's 3.6 ms, measured).
      const wakeAt = this.adaptive ? Math.min(deadline, now + ADAPTIVE_RECHECK_MS) : deadline;
      if (this.timer !== undefined && this.timerDeadline <= wakeAt) return;
      this.clearTimer();
      this.timerDeadline = wakeAt;
      // Timers may fire a fraction of a millisecond early; pump then simply re-arms for the rest.
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, Math.ceil(wakeAt - now));
      return;
    }
  }

  /**
   * When the next batch is due at the latest: the oldest row's deadline, or an interactive row's if
   * that comes sooner (interactive rows may wait less, see interactiveMaxDelayMs).
   */
  private nextDeadline(head: Source<I, O>): number {
    const interactiveDelay = Math.min(this.maxDelayMs, this.interactiveMaxDelayMs);
    if (head.lane === "interactive") return head.submittedAt + interactiveDelay;
    const deadline = head.submittedAt + this.maxDelayMs;
    if (interactiveDelay >= this.maxDelayMs) return deadline;
    const interactive = this.queue.find((source) => source.lane === "interactive");
    return interactive ? Math.min(deadline, interactive.submittedAt + interactiveDelay) : deadline;
  }

  private decayedRecentRows(now: number): number {
    return this.lastArrival === 0 ? 0 : this.recentRows * Math.exp(-(now - this.lastArrival) / this.rateWindowMs);
  }

  /**
   * Adaptive mode: whether, at the recent arrival rate, fewer than ADAPTIVE_MIN_EXPECTED_ROWS more
   * rows are expected before the deadline. The rows already pending count as arrivals, so a lone row after a quiet spell goes
   * at once while a steady stream waits for its batch to fill.
   */
  private nothingMoreComing(now: number, deadline: number): boolean {
    if (!this.adaptive) return false;
    const ratePerMs = Math.max(0, this.decayedRecentRows(now) - this.pendingRows) / this.rateWindowMs;
    return ratePerMs * (deadline - now) < ADAPTIVE_MIN_EXPECTED_ROWS;
  }

  private clearTimer(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async dispatch(now: number): Promise<void> {
    const { items, slots, sources, oldest, lane } = this.takeBatch();
    this.inFlight++;
    const started = performance.now();
    const failed = await this.execute(items, slots);
    const stats: BatchStats = {
      rows: items.length,
      sources,
      waitMs: now - oldest,
      runMs: performance.now() - started,
      failed,
      lane,
    };
    this.inFlight--;
    this.report(stats);
    this.pump();
    this.resolveIfDrained();
  }

  /**
   * Takes up to maxRows rows of one lane, interactive first (see Lane), shared round-robin across
   * that lane's pending shares in submission order: every tenant gets one row per round until the
   * batch is full or it runs dry, a tenant's rows likewise go round its jobs, and a job's rows go to
   * its submits oldest first (see BatcherOptions.fairShare). A submit without a ShareKey is a
   * tenant and a job of its own, so a chunk of 10,000 rows cannot starve a 1-row chunk queued
   * behind it, while with more shares than rows the oldest go first. Each source's rows stay
   * contiguous within the batch.
   */
  private takeBatch(): { items: I[]; slots: Slot<I, O>[]; sources: number; oldest: number; lane: Lane } {
    const lane: Lane = this.queue.some((source) => source.lane === "interactive") ? "interactive" : "batch";
    // A submit without a key behind maxRows others is behind maxRows shares and cannot get a row:
    // leaving those out bounds the work per batch (predict requests come by the thousand).
    let unkeyed = 0;
    const candidates = this.queue.filter((source) => source.lane === lane && (source.share !== undefined || unkeyed++ < this.maxRows));
    const counts = shareRows(candidates, Math.min(this.maxRows, this.pendingRows));

    const items: I[] = [];
    const slots: Slot<I, O>[] = [];
    let sources = 0;
    candidates.forEach((source) => {
      const count = counts.get(source) ?? 0;
      if (count === 0) return;
      sources++;
      for (let index = source.taken; index < source.taken + count; index++) {
        items.push(source.items[index] as I);
        slots.push({ source, index });
      }
      source.taken += count;
    });
    this.pendingRows -= items.length;
    // The head always gets a row (its tenant and job are first in every round, and it is its job's
    // oldest submit), so its rows are the oldest taken.
    const oldest = candidates[0]?.submittedAt ?? performance.now();
    this.queue = this.queue.filter((source) => source.taken < source.items.length);
    return { items, slots, sources, oldest, lane };
  }

  /**
   * Runs a batch and settles every slot. When the runner rejects, the batch is split in half and
   * each half re-run, recursively, so one bad row fails only itself; a batch with k bad rows costs
   * about 2k·log2(n) extra runs. Never rejects; resolves with the number of failed rows.
   */
  private async execute(items: I[], slots: Slot<I, O>[]): Promise<number> {
    let outputs: O[];
    try {
      outputs = await this.run(items);
    } catch (cause) {
      if (items.length === 1 || this.failsWholeBatch?.(cause)) {
        const error = toError(cause);
        for (const slot of slots) this.settle(slot, { ok: false, error });
        return slots.length;
      }
      const middle = Math.ceil(items.length / 2);
      // Sequential on purpose: a failing batch takes no more of the batcher's slots than it had.
      const left = await this.execute(items.slice(0, middle), slots.slice(0, middle));
      const right = await this.execute(items.slice(middle), slots.slice(middle));
      return left + right;
    }

    if (!Array.isArray(outputs) || outputs.length !== items.length) {
      // A runner that miscounts is broken, not the rows; bisecting would only hide the bug.
      const got = Array.isArray(outputs) ? `${outputs.length} outputs` : `a ${typeof outputs}`;
      const error = new Error(
        `Batch runner returned ${got} for ${items.length} items; it must return exactly one output per item, in order`,
      );
      for (const slot of slots) this.settle(slot, { ok: false, error });
      return slots.length;
    }
    slots.forEach((slot, i) => this.settle(slot, { ok: true, value: outputs[i] as O }));
    return 0;
  }

  /** Records one row's result; a source resolves as soon as its last row is settled. */
  private settle(slot: Slot<I, O>, result: ItemResult<O>): void {
    const { source } = slot;
    source.results[slot.index] = result;
    source.settled++;
    if (source.settled < source.items.length) return;
    source.lease?.release();
    source.resolve(source.results);
  }

  private report(stats: BatchStats): void {
    if (!this.onBatch) return;
    try {
      this.onBatch(stats);
    } catch (error) {
      // Surface the callback's bug without leaving the batcher stuck mid-dispatch.
      queueMicrotask(() => {
        throw error;
      });
    }
  }

  private resolveIfDrained(): void {
    if (this.resolveClosed && this.inFlight === 0 && this.queue.length === 0) {
      this.clearTimer();
      this.resolveClosed();
      this.resolveClosed = undefined;
    }
  }
}

/** Rows a source still has to hand out. */
function rowsLeft(source: { items: readonly unknown[]; taken: number }): number {
  return source.items.length - source.taken;
}

/**
 * How many rows each source gives to a batch of `capacity` rows: water-filling across tenants, then
 * across each tenant's jobs, then the job's sources oldest first. Groups keep the order of their
 * oldest source, and a source without a share key is a group of its own at both levels.
 */
function shareRows<S extends { items: readonly unknown[]; taken: number; share: ShareKey | undefined }>(sources: readonly S[], capacity: number): Map<S, number> {
  // A source without a key gets a unique one: the object itself stands for it.
  const tenants = groupBy(sources, (source) => source.share?.tenant ?? source);
  const counts = new Map<S, number>();
  const perTenant = waterFill(tenants.map((tenant) => tenant.reduce((sum, source) => sum + rowsLeft(source), 0)), capacity);
  tenants.forEach((tenant, t) => {
    const jobs = groupBy(tenant, (source) => source.share?.job ?? source);
    const perJob = waterFill(jobs.map((job) => job.reduce((sum, source) => sum + rowsLeft(source), 0)), perTenant[t] ?? 0);
    jobs.forEach((job, j) => {
      let left = perJob[j] ?? 0;
      for (const source of job) {
        if (left === 0) break;
        const take = Math.min(left, rowsLeft(source));
        counts.set(source, take);
        left -= take;
      }
    });
  });
  return counts;
}

/** Groups in the order of each group's first member. */
function groupBy<T>(values: readonly T[], keyOf: (value: T) => unknown): T[][] {
  const groups = new Map<unknown, T[]>();
  for (const value of values) {
    const key = keyOf(value);
    const group = groups.get(key);
    if (group) group.push(value);
    else groups.set(key, [value]);
  }
  return [...groups.values()];
}

/**
 * Shares `capacity` among demands as if dealt one at a time round-robin in order, computed in whole
 * rounds: every demand gets an equal share, capped at what it asks, and what is left over once
 * shares fall below one goes to the earliest.
 */
function waterFill(demands: readonly number[], capacity: number): number[] {
  const counts = demands.map(() => 0);
  let left = capacity;
  let active = demands.map((_, i) => i).filter((i) => (demands[i] ?? 0) > 0);
  while (left > 0 && active.length > 0) {
    const share = Math.floor(left / active.length);
    if (share === 0) {
      for (const i of active.slice(0, left)) counts[i] = (counts[i] ?? 0) + 1;
      break;
    }
    const stillActive: number[] = [];
    for (const i of active) {
      const want = (demands[i] ?? 0) - (counts[i] ?? 0);
      const take = Math.min(share, want);
      counts[i] = (counts[i] ?? 0) + take;
      left -= take;
      if (want > take) stillActive.push(i);
    }
    active = stillActive;
  }
  return counts;
}

function toError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(`Batch runner failed: ${String(value)}`, { cause: value });
}

function checkLimits(limits: { maxRows: number; maxDelayMs: number; maxInFlight?: number }): void {
  if (limits.maxInFlight !== undefined && (!Number.isInteger(limits.maxInFlight) || limits.maxInFlight < 1)) {
    throw new RangeError(`maxInFlight must be a positive integer, got ${limits.maxInFlight}`);
  }
  if (!Number.isInteger(limits.maxRows) || limits.maxRows < 1) {
    throw new RangeError(`maxRows must be a positive integer, got ${limits.maxRows}`);
  }
  if (!Number.isFinite(limits.maxDelayMs) || limits.maxDelayMs < 0) {
    throw new RangeError(`maxDelayMs must be a finite number >= 0, got ${limits.maxDelayMs}`);
  }
}
