// Against the real Redis on this machine, under a prefix of its own.
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { createRedisConnection, DEFAULT_REDIS_URL } from "./connection.ts";
import { listWorkers, publishWorkerStatus, WORKER_STALE_MS, workerTimings } from "./workers.ts";

const redis = createRedisConnection(process.env.REDIS_URL ?? DEFAULT_REDIS_URL);
const prefix = `coalesce-test-workers-${randomBytes(4).toString("hex")}`;

afterAll(async () => {
  await redis.del(`${prefix}:workers`);
  redis.disconnect();
});

describe("workerTimings", () => {
  it("finds a dead worker's chunks within 3/4 of the bound (the rest is for a live worker to take them), forgets the worker within it; renews locks well inside them", () => {
    for (const takeoverMs of [300, 1_000, 5_000, 60_000]) {
      const t = workerTimings(takeoverMs);
      // A lapsed lock is found at the next stalled check: the worst case is the two together.
      expect(t.lockDurationMs + t.stalledIntervalMs).toBeLessThanOrEqual(0.75 * takeoverMs);
      expect(t.lockRenewMs).toBeLessThanOrEqual(t.lockDurationMs / 4);
      // A lock is renewed at most lockRenewMs after the last time: the event loop may be blocked for
      // the rest of the lock, 3/8 of the bound (1.9 s at 5 s; blocks of 300-500 ms were measured).
      expect(t.lockDurationMs - t.lockRenewMs).toBeGreaterThanOrEqual(0.37 * takeoverMs);
      expect(t.staleAfterMs).toBeLessThanOrEqual(takeoverMs);
      expect(t.heartbeatMs * 3).toBeLessThanOrEqual(t.staleAfterMs);
    }
  });
});

describe("listWorkers", () => {
  it("drops a worker by its own staleness bound, and one that gave none by WORKER_STALE_MS", async () => {
    const base = { provider: "cpu", concurrency: 1, startedAt: new Date().toISOString() };
    await publishWorkerStatus(redis, prefix, { ...base, id: "quick", staleAfterMs: 300 });
    await publishWorkerStatus(redis, prefix, { ...base, id: "old" });
    expect((await listWorkers(redis, prefix)).map((worker) => worker.id)).toEqual(["old", "quick"]);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await listWorkers(redis, prefix)).map((worker) => worker.id)).toEqual(["old"]);
    // The stale entry is gone from Redis too.
    expect(await redis.hkeys(`${prefix}:workers`)).toEqual(["old"]);
    expect(WORKER_STALE_MS).toBeGreaterThan(500);
  });
});
