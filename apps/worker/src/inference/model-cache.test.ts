// The model cache with real sessions (each on its own thread, as in a worker) of small models
// registered in Postgres: LRU past MAX_LOADED_MODELS, idle unloads, and the leases that keep a
// version loaded while its rows wait or run.
import type { TensorRow, TensorSpec } from "@coalesce/contracts";
import { createModelStore, buildBatch, loadSessionWithFallback, splitOutputs } from "@coalesce/models";
import { buildRandomMlp } from "@coalesce/models/tiny-onnx";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadModel } from "../../../../test/support/http.ts";
import { waitUntil } from "../../../../test/support/predict.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "../../../../test/support/services.ts";
import { DynamicBatcher } from "../batch/batcher.ts";
import { createModelCacheMetrics, type ModelCacheMetrics } from "../metrics.ts";
import { ModelCache, type LoadedModel, type ModelCachePolicy } from "./model-cache.ts";

const INPUTS: TensorSpec[] = [{ name: "x", type: "float32", shape: ["batch", 4] }];
const OUTPUTS: TensorSpec[] = [{ name: "y", type: "float32", shape: ["batch", 3] }];
const ROWS: TensorRow[] = Array.from({ length: 6 }, (_, i) => ({ x: [i, -i / 2, i / 3, 1] }));
const NAMES = ["m0", "m1", "m2"] as const;
type Name = (typeof NAMES)[number];
// A distinct model per name (its own weights), so each answers differently.
const BYTES = Object.fromEntries(NAMES.map((name, i) => [name, buildRandomMlp([4, 8, 3], i + 1)])) as Record<Name, Uint8Array>;

let services: TestServices;
let api: TestApi;
const ids = {} as Record<Name, string>;
const expected = {} as Record<Name, TensorRow[]>;

beforeAll(async () => {
  services = await createTestServices();
  api = createTestApi(services);
  const auth = await api.createTenant("model-cache");
  for (const name of NAMES) {
    expect((await uploadModel(api, auth, name, BYTES[name])).status).toBe(201);
    ids[name] = (await api.db.prisma.modelVersion.findFirstOrThrow({ where: { model: { name } }, select: { id: true } })).id;
    const { session } = await loadSessionWithFallback(BYTES[name], ["cpu"]);
    expected[name] = splitOutputs(await session.run(buildBatch(ROWS, INPUTS)), OUTPUTS, ROWS.length);
    await session.release();
  }
});

afterAll(async () => {
  await api?.close();
  await services?.cleanup();
});

type Cache = { cache: ModelCache; metrics: ModelCacheMetrics; registry: Registry; logs: Record<string, unknown>[]; unloaded: string[] };

function openCache(policy: ModelCachePolicy): Cache {
  const registry = new Registry();
  const metrics = createModelCacheMetrics(registry);
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const unloaded: string[] = [];
  const settings = { intraOpNumThreads: 1, graphOptimizationLevel: "all", executionProviders: ["cpu"], inferenceThreads: true, instances: 1, spinning: false } as const;
  const cache = new ModelCache(api.db, createModelStore(services.modelStoreDir), settings, logger, {
    metrics,
    onUnload: (id) => unloaded.push(id),
    ...policy,
  });
  return { cache, metrics, registry, logs, unloaded };
}

/** A metric's total over the series matching `labels` (as readWorkerMetric reads a worker's /metrics). */
async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const wanted = Object.entries(labels).map(([label, value]) => `${label}="${value}"`);
  let total = 0;
  for (const line of (await registry.metrics()).split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (match?.[1] === name && wanted.every((pair) => (match[2] ?? "").includes(pair))) total += Number(match[3]);
  }
  return total;
}

function predict(model: LoadedModel, rows: TensorRow[] = ROWS): Promise<TensorRow[]> {
  return model.session.run(buildBatch(rows, INPUTS)).then((results) => splitOutputs(results, OUTPUTS, rows.length));
}

/** Lets a trim the cache scheduled (on the next turn of the event loop) happen. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/**
 * A batcher for one version, as the worker's are (a lease per submit, the model got in the run),
 * whose runs wait for `open()` before they get the model: a batch about to run.
 */
function gatedBatcher(cache: ModelCache, name: Name) {
  let open = () => {};
  const gate = new Promise<void>((resolve) => (open = resolve));
  const batcher = new DynamicBatcher<TensorRow, TensorRow>({
    maxRows: 64,
    maxDelayMs: 0,
    lease: () => cache.acquire(ids[name]),
    run: async (rows) => {
      await gate;
      return predict(await cache.get(ids[name]), rows);
    },
  });
  return { batcher, open };
}

describe("ModelCache", () => {
  it("past maxLoaded unloads the least recently used version; its session is released, and a get loads it again", async () => {
    const { cache, registry, logs, unloaded } = openCache({ maxLoaded: 2 });
    try {
      const m0 = await cache.get(ids.m0);
      const m1 = await cache.get(ids.m1);
      await cache.get(ids.m0); // m0 is now the more recent of the two
      expect(await predict(await cache.get(ids.m2))).toEqual(expected.m2);
      await nextTurn();
      expect(unloaded).toEqual([ids.m1]);
      expect([ids.m0, ids.m1, ids.m2].map((id) => cache.peek(id) !== undefined)).toEqual([true, false, true]);
      expect(await metric(registry, "coalesce_model_unloads_total", { model: "m1", version: "1", reason: "lru" })).toBe(1);
      expect(await metric(registry, "coalesce_models_loaded")).toBe(2);
      expect(logs.find((line) => line.msg === "model unloaded")).toMatchObject({ model: "m1", version: "1", reason: "lru", idleSeconds: expect.any(Number) });
      // Its threads have ended: the old session refuses to run.
      await expect(predict(m1)).rejects.toThrow(/exited/);

      const again = await cache.get(ids.m1);
      expect(again).not.toBe(m1);
      expect(await predict(again)).toEqual(expected.m1);
      await nextTurn();
      // m0 was used before m2 and m1: it goes next.
      expect(unloaded).toEqual([ids.m1, ids.m0]);
      await expect(predict(m0)).rejects.toThrow(/exited/);
      expect(await metric(registry, "coalesce_model_loads_total", { model: "m1", outcome: "loaded" })).toBe(2);
      expect(await metric(registry, "coalesce_model_load_seconds_count")).toBe(4);
    } finally {
      await cache.closeAll();
    }
  });

  it("never unloads a version with rows waiting or running: goes over the limit, says so, and unloads once they finish", async () => {
    const { cache, registry, logs, unloaded } = openCache({ maxLoaded: 1 });
    try {
      await cache.get(ids.m0);
      const m0 = gatedBatcher(cache, "m0");
      const m0Rows = m0.batcher.submit(ROWS);
      // m1 loads while m0's batch is about to run; its own rows arrive in the same turn, as a chunk's do.
      await cache.get(ids.m1);
      const m1 = gatedBatcher(cache, "m1");
      const m1Rows = m1.batcher.submit(ROWS.slice(0, 2));
      await nextTurn();
      expect(cache.size).toBe(2);
      expect(unloaded).toEqual([]);
      expect(logs.filter((line) => String(line.msg).startsWith("more models loaded than MAX_LOADED_MODELS"))).toHaveLength(1);

      // m1's rows run and end: m1, the only one free, goes.
      m1.open();
      expect((await m1Rows).map((result) => result.ok && result.value)).toEqual(expected.m1.slice(0, 2));
      await nextTurn();
      expect(unloaded).toEqual([ids.m1]);

      // m0's batch runs on the session it was leased with, never a released one.
      m0.open();
      expect((await m0Rows).map((result) => result.ok && result.value)).toEqual(expected.m0);
      await nextTurn();
      expect(unloaded).toEqual([ids.m1]);
      expect(cache.peek(ids.m0)).toBeDefined();
      expect(await metric(registry, "coalesce_model_unloads_total")).toBe(1);
      await Promise.all([m0.batcher.close(), m1.batcher.close()]);
    } finally {
      await cache.closeAll();
    }
  });

  it("holds a version leased before it was loaded (rows submitted for one just unloaded) once their run loads it", async () => {
    const { cache, unloaded } = openCache({ maxLoaded: 1 });
    try {
      await cache.get(ids.m0);
      const m0Lease = cache.acquire(ids.m0);
      const m2 = gatedBatcher(cache, "m2");
      const rows = m2.batcher.submit(ROWS);
      expect(cache.peek(ids.m2)).toBeUndefined();
      // The run loads m2, over the limit, with m0 held too: neither may go while m2's batch runs.
      m2.open();
      expect((await rows).map((result) => result.ok && result.value)).toEqual(expected.m2);
      await nextTurn();
      expect(unloaded).toEqual([ids.m2]);
      m0Lease.release();
      await nextTurn();
      expect(unloaded).toEqual([ids.m2]);
      await m2.batcher.close();
    } finally {
      await cache.closeAll();
    }
  });

  it("unloads a version unused for idleUnloadMs, but not while a lease holds it", async () => {
    const { cache, registry, logs, unloaded } = openCache({ idleUnloadMs: 200 });
    try {
      const m0 = await cache.get(ids.m0);
      // At once: loading m1 takes about as long as the idle limit.
      const lease = cache.acquire(ids.m0);
      await cache.get(ids.m1);
      await waitUntil("m1 to be unloaded as idle", async () => unloaded.includes(ids.m1), 10_000);
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(cache.peek(ids.m0)).toBe(m0);
      lease.release();
      lease.release(); // counts once
      await waitUntil("m0 to be unloaded once its lease ended", async () => unloaded.includes(ids.m0), 10_000);
      expect(await metric(registry, "coalesce_model_unloads_total", { reason: "idle" })).toBe(2);
      expect(await metric(registry, "coalesce_models_loaded")).toBe(0);
      const idle = logs.filter((line) => line.msg === "model unloaded");
      expect(idle.map((line) => line.model)).toEqual(["m1", "m0"]);
      for (const line of idle) expect(line.idleSeconds).toBeGreaterThanOrEqual(0.2);
      expect(await predict(await cache.get(ids.m0))).toEqual(expected.m0);
    } finally {
      await cache.closeAll();
    }
  });

  it("counts a failed load, and forgets it so the next get tries again", async () => {
    const { cache, registry } = openCache({ maxLoaded: 1 });
    try {
      await expect(cache.get("mv_missing")).rejects.toThrow(/does not exist/);
      await expect(cache.get("mv_missing")).rejects.toThrow(/does not exist/);
      expect(await metric(registry, "coalesce_model_loads_total", { outcome: "failed" })).toBe(2);
      expect(cache.size).toBe(0);
    } finally {
      await cache.closeAll();
    }
  });
});
