import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DynamicBatcher, type BatchRunner, type BatchStats, type ItemResult } from "./batcher.ts";

// Fake timers make the delay rules exact and keep these tests independent of machine load; the
// runner "computes" for runMs of fake time so that runs overlap with later submits.

/** A runner that doubles numbers after runMs, fails any batch containing a bad item, and records calls. */
function probeRunner(options: { runMs?: number; isBad?: (item: number) => boolean } = {}) {
  const { runMs = 10, isBad = () => false } = options;
  const calls: number[][] = [];
  let active = 0;
  let maxActive = 0;
  const run: BatchRunner<number, number> = async (items) => {
    calls.push([...items]);
    active++;
    maxActive = Math.max(maxActive, active);
    try {
      await new Promise((resolve) => setTimeout(resolve, runMs));
      const bad = items.find(isBad);
      if (bad !== undefined) throw new Error(`bad item ${bad}`);
      return items.map((item) => item * 2);
    } finally {
      active--;
    }
  };
  return { run, calls, maxActive: () => maxActive };
}

/** Forty sources of 0-22 items (source i holds i*100, i*100+1, ...), a few fake ms apart. */
async function submitStaggered(batcher: DynamicBatcher<number, number>): Promise<Promise<ItemResult<number>[]>[]> {
  const submits: Promise<ItemResult<number>[]>[] = [];
  for (let i = 0; i < 40; i++) {
    submits.push(batcher.submit(range(i * 100, (i * 7) % 23)));
    await vi.advanceTimersByTimeAsync(i % 4);
  }
  return submits;
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

function values<O>(results: ItemResult<O>[]): O[] {
  return results.map((result) => {
    if (!result.ok) throw result.error;
    return result.value;
  });
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("DynamicBatcher", () => {
  it("applies new limits to rows already waiting (configure), and refuses nonsense ones", async () => {
    const probe = probeRunner();
    const batcher = new DynamicBatcher({ run: probe.run, maxRows: 8, maxDelayMs: 1_000 });
    const first = batcher.submit(range(0, 3));
    // 3 rows would wait up to 1 s for more; a limit of 2 sends two of them at once.
    batcher.configure({ maxRows: 2, maxDelayMs: 0 });
    const second = batcher.submit(range(10, 3));
    await vi.advanceTimersByTimeAsync(100);
    expect(values(await first)).toEqual([0, 2, 4]);
    expect(values(await second)).toEqual([20, 22, 24]);
    expect(probe.calls.every((call) => call.length <= 2)).toBe(true);
    expect(() => batcher.configure({ maxRows: 0, maxDelayMs: 0 })).toThrow(RangeError);
  });

  it("never hands the runner more than maxRows items", async () => {
    const probe = probeRunner();
    const batcher = new DynamicBatcher({ run: probe.run, maxRows: 8, maxDelayMs: 5 });

    const submits = [batcher.submit(range(0, 10)), batcher.submit(range(100, 7)), batcher.submit(range(200, 5))];
    await vi.runAllTimersAsync();
    const results = await Promise.all(submits);

    expect(probe.calls.every((call) => call.length <= 8)).toBe(true);
    expect(probe.calls.flat()).toHaveLength(22);
    expect(results.map(values)).toEqual([
      range(0, 10).map((n) => n * 2),
      range(100, 7).map((n) => n * 2),
      range(200, 5).map((n) => n * 2),
    ]);
  });

  it("runs a lone item once the oldest item has waited maxDelayMs", async () => {
    const probe = probeRunner({ runMs: 0 });
    const batcher = new DynamicBatcher({ run: probe.run, maxRows: 64, maxDelayMs: 50 });

    const result = batcher.submit([21]);
    await vi.advanceTimersByTimeAsync(49);
    expect(probe.calls).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(probe.calls).toEqual([[21]]);
    await vi.runAllTimersAsync();
    expect(values(await result)).toEqual([42]);
  });

  it("with real timers, a lone item still runs", async () => {
    vi.useRealTimers();
    const batcher = new DynamicBatcher<number, number>({
      run: async (items) => items.map((item) => item + 1),
      maxRows: 64,
      maxDelayMs: 5,
    });
    expect(values(await batcher.submit([1]))).toEqual([2]);
  });

  it("dispatches a full batch without waiting for the delay", async () => {
    const probe = probeRunner({ runMs: 0 });
    const batcher = new DynamicBatcher({ run: probe.run, maxRows: 4, maxDelayMs: 60_000 });

    const result = batcher.submit(range(0, 4));
    await vi.advanceTimersByTimeAsync(0);
    expect(probe.calls).toEqual([range(0, 4)]);
    expect(values(await result)).toEqual([0, 2, 4, 6]);
  });

  it("coalesces items from several concurrent submits into one run", async () => {
    const probe = probeRunner();
    const batcher = new DynamicBatcher({ run: probe.run, maxRows: 100, maxDelayMs: 20 });

    const submits = [batcher.submit([1, 2, 3])];
    await vi.advanceTimersByTimeAsync(5);
    submits.push(batcher.submit([4, 5]));
    await vi.advanceTimersByTimeAsync(10);
    submits.push(batcher.submit([6]));
    await vi.runAllTimersAsync();

    expect(probe.calls).toEqual([[1, 2, 3, 4, 5, 6]]);
    expect((await Promise.all(submits)).map(values)).toEqual([[2, 4, 6], [8, 10], [12]]);
  });

  it("coalesces everything that arrived during a run into the next run when maxDelayMs is 0", async () => {
    const probe = probeRunner({ runMs: 10 });
    const batcher = new DynamicBatcher({ run: probe.run, maxRows: 100, maxDelayMs: 0 });

    const submits = [batcher.submit([1])];
    await vi.advanceTimersByTimeAsync(1);
    expect(probe.calls).toEqual([[1]]);
    for (const n of [2, 3, 4, 5]) {
      submits.push(batcher.submit([n]));
      await vi.advanceTimersByTimeAsync(1);
    }
    await vi.runAllTimersAsync();

    expect(probe.calls).toEqual([[1], [2, 3, 4, 5]]);
    expect((await Promise.all(submits)).map(values)).toEqual([[2], [4], [6], [8], [10]]);
  });

  it("keeps at most one run in flight", async () => {
    const probe = probeRunner({ runMs: 7 });
    const batcher = new DynamicBatcher({ run: probe.run, maxRows: 16, maxDelayMs: 3 });

    const submits = await submitStaggered(batcher);
    await vi.runAllTimersAsync();
    await Promise.all(submits);

    expect(probe.calls.length).toBeGreaterThan(1);
    expect(probe.maxActive()).toBe(1);
  });

  describe("with several instances (maxInFlight)", () => {
    it("runs up to maxInFlight batches side by side, never more, each source's results in order", async () => {
      const probe = probeRunner({ runMs: 7 });
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 16, maxDelayMs: 3, maxInFlight: 2 });

      const submits = await submitStaggered(batcher);
      await vi.runAllTimersAsync();

      const results = await Promise.all(submits);
      results.forEach((result, i) => expect(values(result)).toEqual(range(i * 100, (i * 7) % 23).map((n) => n * 2)));
      expect(probe.maxActive()).toBe(2);
      expect(probe.calls.every((call) => call.length <= 16)).toBe(true);
    });

    it("sends two full batches at once when two instances are free", async () => {
      const probe = probeRunner({ runMs: 10 });
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 4, maxDelayMs: 60_000, maxInFlight: 2 });

      const result = batcher.submit(range(0, 8));
      await vi.advanceTimersByTimeAsync(0);
      expect(probe.calls).toEqual([range(0, 4), range(4, 4)]);
      await vi.runAllTimersAsync();
      expect(values(await result)).toEqual(range(0, 8).map((n) => n * 2));
    });

    it("still lets a partial batch wait out its delay while an instance is free", async () => {
      const probe = probeRunner({ runMs: 50 });
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 4, maxDelayMs: 20, maxInFlight: 2 });

      const first = batcher.submit(range(0, 4));
      await vi.advanceTimersByTimeAsync(1);
      const second = batcher.submit([10]);
      await vi.advanceTimersByTimeAsync(10);
      // One instance is busy with the full batch; the lone row waits for company until its delay is up.
      expect(probe.calls).toEqual([range(0, 4)]);
      const third = batcher.submit([11]);
      await vi.advanceTimersByTimeAsync(15);
      expect(probe.calls).toEqual([range(0, 4), [10, 11]]);
      await vi.runAllTimersAsync();
      expect((await Promise.all([first, second, third])).map(values)).toEqual([[0, 2, 4, 6], [20], [22]]);
    });

    it("waits for every batch in flight when closed", async () => {
      const probe = probeRunner({ runMs: 30 });
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 2, maxDelayMs: 60_000, maxInFlight: 3 });
      const result = batcher.submit(range(0, 6));
      await vi.advanceTimersByTimeAsync(0);
      expect(probe.maxActive()).toBe(3);
      let closed = false;
      const closing = batcher.close().then(() => (closed = true));
      await vi.advanceTimersByTimeAsync(29);
      expect(closed).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      await closing;
      expect(values(await result)).toEqual(range(0, 6).map((n) => n * 2));
    });

    it("refuses a maxInFlight that is not a positive integer", () => {
      const probe = probeRunner();
      expect(() => new DynamicBatcher({ run: probe.run, maxRows: 1, maxDelayMs: 0, maxInFlight: 0 })).toThrow(RangeError);
      expect(() => new DynamicBatcher({ run: probe.run, maxRows: 1, maxDelayMs: 0, maxInFlight: 1.5 })).toThrow(RangeError);
    });
  });

  it("splits a big source over several batches and returns its results in order", async () => {
    const probe = probeRunner({ runMs: 1 });
    const batcher = new DynamicBatcher({ run: probe.run, maxRows: 64, maxDelayMs: 10 });

    const result = batcher.submit(range(0, 1000));
    await vi.runAllTimersAsync();

    expect(probe.calls).toHaveLength(Math.ceil(1000 / 64));
    expect(probe.calls.flat()).toEqual(range(0, 1000));
    expect(values(await result)).toEqual(range(0, 1000).map((n) => n * 2));
    expect(batcher.pending).toBe(0);
  });

  describe("fairness", () => {
    it("runs an interactive row ahead of a big batch-lane source, in a run of its own", async () => {
      const probe = probeRunner({ runMs: 10 });
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 64, maxDelayMs: 5 });

      const big = batcher.submit(range(0, 1000), "batch");
      await vi.advanceTimersByTimeAsync(1);
      const small = batcher.submit([-1], "interactive");
      await vi.advanceTimersByTimeAsync(10);

      // The run in flight when it came was the big source's; the next one is the interactive row's alone.
      expect(probe.calls.slice(0, 2)).toEqual([range(0, 64), [-1]]);
      await vi.advanceTimersByTimeAsync(10);
      expect(values(await small)).toEqual([-2]);
      await vi.runAllTimersAsync();
      expect(values(await big)).toEqual(range(0, 1000).map((n) => n * 2));
      // The big source's other 936 rows: full runs again.
      expect(probe.calls.slice(2).map((call) => call.length)).toEqual([...Array<number>(14).fill(64), 40]);
    });

    it("shares runs among interactive sources, and goes back to the batch lane when none wait", async () => {
      const probe = probeRunner({ runMs: 10 });
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 8, maxDelayMs: 5 });

      const big = batcher.submit(range(0, 20), "batch");
      const first = batcher.submit([100, 101], "interactive");
      const second = batcher.submit([200], "interactive");
      await vi.runAllTimersAsync();

      expect(probe.calls).toEqual([[100, 101, 200], range(0, 8), range(8, 8), range(16, 4)]);
      expect((await Promise.all([first, second])).map(values)).toEqual([[200, 202], [400]]);
      expect(values(await big)).toHaveLength(20);
    });

    it("serves a 1-item submit made behind a 1,000-item submit in the same batch", async () => {
      const probe = probeRunner();
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 100, maxDelayMs: 10 });

      const big = batcher.submit(range(0, 1000));
      const small = batcher.submit([-1]);
      await vi.advanceTimersByTimeAsync(0);

      expect(probe.calls).toHaveLength(1);
      expect(probe.calls[0]).toContain(-1);
      await vi.runAllTimersAsync();
      expect(values(await small)).toEqual([-2]);
      expect(values(await big)).toEqual(range(0, 1000).map((n) => n * 2));
    });

    it("serves a 1-item submit made while a 1,000-item source is running in the next batch", async () => {
      const probe = probeRunner();
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 100, maxDelayMs: 10 });

      const big = batcher.submit(range(0, 1000));
      await vi.advanceTimersByTimeAsync(1);
      expect(probe.calls).toHaveLength(1);
      let smallDone = false;
      const small = batcher.submit([-1]).then((results) => {
        smallDone = true;
        return results;
      });
      // The first run ends at t=10 and the second, dispatched at once, ends at t=20.
      await vi.advanceTimersByTimeAsync(9);
      expect(probe.calls).toHaveLength(2);
      expect(probe.calls[1]).toContain(-1);
      await vi.advanceTimersByTimeAsync(10);
      expect(smallDone).toBe(true);
      expect(batcher.pending).toBeGreaterThan(0);
      await vi.runAllTimersAsync();
      expect(values(await small)).toEqual([-2]);
      expect(values(await big)).toHaveLength(1000);
    });

    it("shares each batch round-robin across sources, oldest first, each source contiguous", async () => {
      const probe = probeRunner();
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 6, maxDelayMs: 10 });

      const submits = [batcher.submit(range(0, 10)), batcher.submit([100]), batcher.submit(range(200, 5))];
      await vi.runAllTimersAsync();
      await Promise.all(submits);

      // Rounds: 0,100,200 | 1,201 | 2 -> a share of 3, 1 and 2.
      expect(probe.calls[0]).toEqual([0, 1, 2, 100, 200, 201]);
      expect(probe.calls[1]).toEqual([3, 4, 5, 202, 203, 204]);
    });

    it("gives the oldest sources the rows when there are more sources than maxRows", async () => {
      const probe = probeRunner();
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 3, maxDelayMs: 10 });

      const submits = range(0, 5).map((n) => batcher.submit([n * 10, n * 10 + 1]));
      await vi.runAllTimersAsync();
      await Promise.all(submits);

      expect(probe.calls[0]).toEqual([0, 10, 20]);
      expect(probe.calls[1]).toEqual([1, 11, 21]);
    });
  });

  describe("fair share across tenants", () => {
    const a1 = { tenant: "a", job: "a1" };
    const a2 = { tenant: "a", job: "a2" };
    const b1 = { tenant: "b", job: "b1" };

    it("deals each batch round-robin across tenants, then across a tenant's jobs, however many chunks a tenant holds", async () => {
      const probe = probeRunner();
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 8, maxDelayMs: 10 });

      // Tenant a holds three chunks (two of job a1, one of a2), tenant b one, submitted last.
      const submits = [
        batcher.submit(range(0, 10), "batch", a1),
        batcher.submit(range(100, 10), "batch", a1),
        batcher.submit(range(200, 10), "batch", a2),
        batcher.submit(range(300, 10), "batch", b1),
      ];
      await vi.runAllTimersAsync();
      await Promise.all(submits);

      // Half of each batch to b; a's half split between its jobs, a1's share to its oldest chunk.
      expect(probe.calls[0]).toEqual([0, 1, 200, 201, 300, 301, 302, 303]);
      expect(probe.calls[1]).toEqual([2, 3, 202, 203, 304, 305, 306, 307]);
    });

    it("scores a job's chunks oldest first, so they finish one after another rather than all at the end", async () => {
      const probe = probeRunner();
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 4, maxDelayMs: 0 });
      const finished: number[] = [];

      const submits = [0, 1, 2].map((n) => batcher.submit(range(n * 100, 4), "batch", a1).then((results) => finished.push(n) && results));
      await vi.advanceTimersByTimeAsync(10);
      // The first run was the oldest chunk's rows alone, and it is done after that one run.
      expect(probe.calls[0]).toEqual([0, 1, 2, 3]);
      expect(finished).toEqual([0]);
      await vi.runAllTimersAsync();
      await Promise.all(submits);
      expect(finished).toEqual([0, 1, 2]);
      expect(probe.calls).toHaveLength(3);
    });

    it("serves a tenant whose chunk arrives while another tenant's rows fill the batches, in the next batch", async () => {
      const probe = probeRunner();
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 4, maxDelayMs: 0 });

      const big = [0, 1, 2, 3].map((n) => batcher.submit(range(n * 1000, 100), "batch", { tenant: "a", job: `a${n}` }));
      await vi.advanceTimersByTimeAsync(5);
      const small = batcher.submit([-1], "batch", b1);
      await vi.advanceTimersByTimeAsync(20);
      // The run in flight when it came, then one with it: b's row beside three of a's.
      expect(probe.calls[1]).toContain(-1);
      expect(probe.calls[1]).toHaveLength(4);
      expect(values(await small)).toEqual([-2]);
      await vi.runAllTimersAsync();
      await Promise.all(big);
    });

    it("with fairShare off, shares each batch evenly among the submits whoever they belong to", async () => {
      const probe = probeRunner();
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 8, maxDelayMs: 10, fairShare: false });

      const submits = [
        batcher.submit(range(0, 10), "batch", a1),
        batcher.submit(range(100, 10), "batch", a1),
        batcher.submit(range(200, 10), "batch", a2),
        batcher.submit(range(300, 10), "batch", b1),
      ];
      await vi.runAllTimersAsync();
      await Promise.all(submits);

      expect(probe.calls[0]).toEqual([0, 1, 100, 101, 200, 201, 300, 301]);
    });

    it("keeps lanes apart: an interactive submit still goes first, in a run of its own", async () => {
      const probe = probeRunner();
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 4, maxDelayMs: 10 });

      const big = batcher.submit(range(0, 8), "batch", a1);
      const small = batcher.submit([-1], "interactive", b1);
      await vi.runAllTimersAsync();
      await Promise.all([big, small]);

      expect(probe.calls[0]).toEqual([-1]);
      expect(probe.calls[1]).toEqual([0, 1, 2, 3]);
    });
  });

  describe("errors", () => {
    it("bisects a failing batch so only the bad items fail, in order", async () => {
      const bad = new Set([3, 11, 12]);
      const probe = probeRunner({ runMs: 1, isBad: (item) => bad.has(item) });
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 32, maxDelayMs: 5 });

      const first = batcher.submit(range(0, 10));
      const second = batcher.submit(range(10, 10));
      await vi.runAllTimersAsync();

      const results = [...(await first), ...(await second)];
      results.forEach((result, item) => {
        if (bad.has(item)) {
          expect(result).toEqual({ ok: false, error: new Error(`bad item ${item}`) });
        } else {
          expect(result).toEqual({ ok: true, value: item * 2 });
        }
      });
      expect(probe.maxActive()).toBe(1);
    });

    it("fails a single item with the runner's error, wrapping non-Error rejections", async () => {
      const batcher = new DynamicBatcher<number, number>({
        run: async () => {
          throw "tensor shape mismatch";
        },
        maxRows: 8,
        maxDelayMs: 0,
      });

      const result = batcher.submit([1]);
      await vi.runAllTimersAsync();
      const [only] = await result;

      expect(only?.ok).toBe(false);
      if (only?.ok === false) {
        expect(only.error).toBeInstanceOf(Error);
        expect(only.error.message).toContain("tensor shape mismatch");
      }
    });

    it("treats a runner that throws synchronously like one that rejects", async () => {
      const batcher = new DynamicBatcher<number, number>({
        run: (items) => {
          if (items.includes(2)) throw new Error("sync failure");
          return Promise.resolve(items);
        },
        maxRows: 8,
        maxDelayMs: 0,
      });

      const result = batcher.submit([1, 2, 3]);
      await vi.runAllTimersAsync();

      expect(await result).toEqual([
        { ok: true, value: 1 },
        { ok: false, error: new Error("sync failure") },
        { ok: true, value: 3 },
      ]);
    });

    it("fails the whole batch, without bisecting, when the runner returns the wrong number of outputs", async () => {
      const run = vi.fn<BatchRunner<number, number>>(async (items) => items.slice(1));
      const batcher = new DynamicBatcher({ run, maxRows: 8, maxDelayMs: 0 });

      const result = batcher.submit([1, 2, 3]);
      await vi.runAllTimersAsync();
      const results = await result;

      expect(run).toHaveBeenCalledTimes(1);
      expect(results).toHaveLength(3);
      for (const item of results) {
        expect(item.ok).toBe(false);
        if (!item.ok) expect(item.error.message).toMatch(/returned 2 outputs for 3 items/);
      }
    });

    it("fails the whole batch at once, without bisecting, on an error that failsWholeBatch names", async () => {
      const unreachable = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
      const run = vi.fn<BatchRunner<number, number>>(async () => {
        throw unreachable;
      });
      const batcher = new DynamicBatcher({ run, maxRows: 8, maxDelayMs: 0, failsWholeBatch: (error) => (error as { code?: string }).code === "ECONNREFUSED" });

      const result = batcher.submit([1, 2, 3, 4]);
      await vi.runAllTimersAsync();

      expect(run).toHaveBeenCalledTimes(1);
      expect(await result).toEqual([1, 2, 3, 4].map(() => ({ ok: false, error: unreachable })));
    });

    it("keeps working after a failed batch", async () => {
      let fail = true;
      const batcher = new DynamicBatcher<number, number>({
        run: async (items) => {
          if (fail) throw new Error("transient");
          return items;
        },
        maxRows: 8,
        maxDelayMs: 0,
      });

      const failed = batcher.submit([1, 2]);
      await vi.runAllTimersAsync();
      expect((await failed).every((result) => !result.ok)).toBe(true);
      fail = false;
      const ok = batcher.submit([3]);
      await vi.runAllTimersAsync();
      expect(values(await ok)).toEqual([3]);
    });
  });

  describe("close", () => {
    it("flushes pending items without waiting for the delay and rejects later submits", async () => {
      const probe = probeRunner({ runMs: 5 });
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 4, maxDelayMs: 60_000 });

      const first = batcher.submit([1, 2]);
      const second = batcher.submit([3, 4, 5]);
      let closed = false;
      const closing = batcher.close().then(() => {
        closed = true;
      });
      await vi.advanceTimersByTimeAsync(5);
      expect(closed).toBe(false);
      await vi.advanceTimersByTimeAsync(5);
      await closing;

      expect(probe.calls.flat().sort()).toEqual([1, 2, 3, 4, 5]);
      expect(values(await first)).toEqual([2, 4]);
      expect(values(await second)).toEqual([6, 8, 10]);
      await expect(batcher.submit([6])).rejects.toThrow(/closed/);
      expect(vi.getTimerCount()).toBe(0);
    });

    it("waits for the run in flight and leaves no timer behind", async () => {
      const probe = probeRunner({ runMs: 50 });
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 8, maxDelayMs: 0 });

      const result = batcher.submit([1]);
      await vi.advanceTimersByTimeAsync(1);
      const closing = batcher.close();
      expect(batcher.close()).toBe(closing);
      await vi.advanceTimersByTimeAsync(49);
      await closing;

      expect(values(await result)).toEqual([2]);
      expect(vi.getTimerCount()).toBe(0);
    });

    it("clears an armed delay timer when closed with nothing to flush", async () => {
      const batcher = new DynamicBatcher<number, number>({
        run: async (items) => items,
        maxRows: 8,
        maxDelayMs: 1_000,
      });
      const result = batcher.submit([1]);
      await vi.advanceTimersByTimeAsync(0);
      expect(vi.getTimerCount()).toBe(1);

      await batcher.close();
      expect(values(await result)).toEqual([1]);
      expect(vi.getTimerCount()).toBe(0);
    });

    it("resolves at once when idle", async () => {
      const batcher = new DynamicBatcher<number, number>({ run: async (items) => items, maxRows: 8, maxDelayMs: 10 });
      await batcher.close();
      expect(vi.getTimerCount()).toBe(0);
    });
  });

  describe("interactiveMaxDelayMs", () => {
    it("holds interactive rows no longer than it, behind batch-lane rows with a long delay too", async () => {
      const probe = probeRunner({ runMs: 1 });
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 64, maxDelayMs: 50, interactiveMaxDelayMs: 5 });
      void batcher.submit([1], "batch");
      await vi.advanceTimersByTimeAsync(1);
      void batcher.submit([2], "interactive");
      await vi.advanceTimersByTimeAsync(4);
      expect(probe.calls).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      expect(probe.calls).toEqual([[2]]);
      // The batch-lane row keeps its own, longer delay.
      await vi.advanceTimersByTimeAsync(40);
      expect(probe.calls).toEqual([[2]]);
      await vi.advanceTimersByTimeAsync(10);
      expect(probe.calls).toEqual([[2], [1]]);
      await batcher.close();
    });
  });

  describe("adaptive", () => {
    it("runs a lone item at once after a quiet spell instead of holding it for the delay", async () => {
      const probe = probeRunner({ runMs: 1 });
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 64, maxDelayMs: 50, adaptive: true });
      const done = batcher.submit([1]);
      await vi.advanceTimersByTimeAsync(0);
      expect(probe.calls).toEqual([[1]]);
      await vi.advanceTimersByTimeAsync(1);
      expect(values(await done)).toEqual([2]);
    });

    it("still waits to fill batches while rows keep arriving", async () => {
      const probe = probeRunner({ runMs: 1 });
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 20, maxDelayMs: 50, adaptive: true });
      const submits: Promise<ItemResult<number>[]>[] = [];
      // A steady stream: one row every millisecond for 200 ms.
      for (let i = 0; i < 200; i++) {
        submits.push(batcher.submit([i]));
        await vi.advanceTimersByTimeAsync(1);
      }
      await vi.runAllTimersAsync();
      await Promise.all(submits);
      const sizes = probe.calls.map((call) => call.length);
      // A few rows in, the stream is seen and runs are full batches rather than one row each.
      expect(sizes.slice(7, -1).every((size) => size === 20)).toBe(true);
      expect(sizes.length).toBeLessThanOrEqual(17);
    });

    it("does not hold the row of a client that sends its next only once this one is answered", async () => {
      const probe = probeRunner({ runMs: 1 });
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 64, maxDelayMs: 5, adaptive: true });
      for (let i = 0; i < 50; i++) {
        const done = batcher.submit([i]);
        // Dispatched in this turn, not after a wait: its run (1 ms) is all that stands before the answer.
        await vi.advanceTimersByTimeAsync(0);
        expect(probe.calls.length).toBe(i + 1);
        await vi.advanceTimersByTimeAsync(1);
        await done;
        // The client's own time before it sends the next row.
        await vi.advanceTimersByTimeAsync(3);
      }
    });

    it("is off unless asked for: a lone item waits out the delay", async () => {
      const probe = probeRunner({ runMs: 1 });
      const batcher = new DynamicBatcher({ run: probe.run, maxRows: 64, maxDelayMs: 50 });
      void batcher.submit([1]);
      await vi.advanceTimersByTimeAsync(49);
      expect(probe.calls).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      expect(probe.calls).toEqual([[1]]);
    });
  });

  it("resolves an empty submit with no results and no run", async () => {
    const run = vi.fn<BatchRunner<number, number>>(async (items) => items);
    const batcher = new DynamicBatcher({ run, maxRows: 8, maxDelayMs: 0 });

    expect(await batcher.submit([])).toEqual([]);
    await vi.runAllTimersAsync();
    expect(run).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("reports rows, sources, wait, run time and failures once per batch", async () => {
    const stats: BatchStats[] = [];
    const probe = probeRunner({ runMs: 5, isBad: (item) => item === 4 });
    const batcher = new DynamicBatcher({
      run: probe.run,
      maxRows: 4,
      maxDelayMs: 30,
      onBatch: (batch) => stats.push(batch),
    });

    const first = batcher.submit([1, 2]);
    await vi.advanceTimersByTimeAsync(10);
    const second = batcher.submit([3]);
    await vi.advanceTimersByTimeAsync(20);
    expect(probe.calls).toEqual([[1, 2, 3]]);
    await vi.advanceTimersByTimeAsync(5);
    expect(stats).toEqual([{ rows: 3, sources: 2, waitMs: 30, runMs: 5, failed: 0, lane: "batch" }]);

    // A full batch goes at once; its bad item costs two extra runs of 5 ms each.
    const third = batcher.submit([4, 5, 6, 7]);
    await vi.runAllTimersAsync();
    expect(stats[1]).toEqual({ rows: 4, sources: 1, waitMs: 0, runMs: 5 * 5, failed: 1, lane: "batch" });
    expect(stats).toHaveLength(2);
    await Promise.all([first, second, third]);
  });

  it("holds a lease per submit from the moment its rows arrive until the run of its last row has ended", async () => {
    const probe = probeRunner({ runMs: 10, isBad: (item) => item === 3 });
    const held: number[] = [];
    let leases = 0;
    const batcher = new DynamicBatcher({
      run: async (items: number[]) => {
        held.push(leases);
        return probe.run(items);
      },
      maxRows: 2,
      maxDelayMs: 5,
      lease: () => {
        leases++;
        let released = false;
        return {
          release: () => {
            expect(released, "a lease is released once").toBe(false);
            released = true;
            leases--;
          },
        };
      },
    });

    const first = batcher.submit([1, 2, 3]);
    const second = batcher.submit([4]);
    expect(leases).toBe(2);
    // The first batch ([1, 4], full at once) ends the second submit, whose lease goes back with it.
    await vi.advanceTimersByTimeAsync(10);
    expect(values(await second)).toEqual([8]);
    expect(leases).toBe(1);
    // The next ([2, 3]) fails and is bisected: each half still runs under the first submit's lease.
    await vi.runAllTimersAsync();
    expect(probe.calls).toEqual([[1, 4], [2, 3], [2], [3]]);
    expect(held).toEqual([2, 1, 1, 1]);
    expect(leases).toBe(0);
    expect((await first).map((result) => result.ok)).toEqual([true, true, false]);
    // An empty submit or one refused after close takes nothing.
    await batcher.submit([]);
    await batcher.close();
    await expect(batcher.submit([5])).rejects.toThrow(/closed/);
    expect(leases).toBe(0);
  });

  it("rejects nonsensical options", () => {
    const run: BatchRunner<number, number> = async (items) => items;
    expect(() => new DynamicBatcher({ run, maxRows: 0, maxDelayMs: 0 })).toThrow(RangeError);
    expect(() => new DynamicBatcher({ run, maxRows: 1.5, maxDelayMs: 0 })).toThrow(RangeError);
    expect(() => new DynamicBatcher({ run, maxRows: 1, maxDelayMs: -1 })).toThrow(RangeError);
    expect(() => new DynamicBatcher({ run, maxRows: 1, maxDelayMs: Number.NaN })).toThrow(RangeError);
  });
});
