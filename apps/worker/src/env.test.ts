import { describe, expect, it } from "vitest";
import { ConfigError } from "@coalesce/contracts";
import { intraOpThreads, loadWorkerEnv, SYNC_INFERENCE_TAKEOVER_MS } from "./env.ts";

describe("worker configuration", () => {
  it("runs one instance of each model unless told otherwise", () => {
    expect(loadWorkerEnv({}).MODEL_INSTANCES).toBe(1);
    expect(loadWorkerEnv({ MODEL_INSTANCES: "3" }).MODEL_INSTANCES).toBe(3);
  });

  it("refuses several instances without inference threads, naming the variable", () => {
    expect(() => loadWorkerEnv({ MODEL_INSTANCES: "2", INFERENCE_THREADS: "false" })).toThrow(/MODEL_INSTANCES: more than one instance needs INFERENCE_THREADS=true/);
    expect(() => loadWorkerEnv({ MODEL_INSTANCES: "0" })).toThrow(/MODEL_INSTANCES/);
    expect(loadWorkerEnv({ MODEL_INSTANCES: "1", INFERENCE_THREADS: "false" }).MODEL_INSTANCES).toBe(1);
  });

  it("takes a dead worker's chunks over within 5 s unless STALLED_TAKEOVER_MS says otherwise, and refuses a bound too short to hold a lock", () => {
    expect(loadWorkerEnv({}).STALLED_TAKEOVER_MS).toBe(5_000);
    expect(loadWorkerEnv({ STALLED_TAKEOVER_MS: "2000" }).STALLED_TAKEOVER_MS).toBe(2_000);
    expect(() => loadWorkerEnv({ STALLED_TAKEOVER_MS: "10" })).toThrow(/STALLED_TAKEOVER_MS/);
  });

  it("with inference on the event loop, takes over within 30 s by default and refuses a shorter bound, naming both variables", () => {
    expect(loadWorkerEnv({ INFERENCE_THREADS: "false" }).STALLED_TAKEOVER_MS).toBe(SYNC_INFERENCE_TAKEOVER_MS);
    expect(loadWorkerEnv({ INFERENCE_THREADS: "false", STALLED_TAKEOVER_MS: "60000" }).STALLED_TAKEOVER_MS).toBe(60_000);
    expect(() => loadWorkerEnv({ INFERENCE_THREADS: "false", STALLED_TAKEOVER_MS: "5000" })).toThrow(
      /STALLED_TAKEOVER_MS: must be at least 30000 with INFERENCE_THREADS=false/,
    );
    expect(() => loadWorkerEnv({ INFERENCE_THREADS: "false", STALLED_TAKEOVER_MS: "5000" })).toThrow(ConfigError);
  });

  it("fails a chunk started more than 10 times without finishing unless MAX_CHUNK_STARTS says otherwise", () => {
    expect(loadWorkerEnv({}).MAX_CHUNK_STARTS).toBe(10);
    expect(loadWorkerEnv({ MAX_CHUNK_STARTS: "3" }).MAX_CHUNK_STARTS).toBe(3);
    expect(() => loadWorkerEnv({ MAX_CHUNK_STARTS: "0" })).toThrow(/MAX_CHUNK_STARTS/);
  });

  it("shares the cores out among the instances unless INTRA_OP_THREADS says otherwise", () => {
    expect(intraOpThreads({ MODEL_INSTANCES: 2, INTRA_OP_THREADS: 0 }, 2)).toBe(1);
    expect(intraOpThreads({ MODEL_INSTANCES: 2, INTRA_OP_THREADS: 0 }, 16)).toBe(8);
    expect(intraOpThreads({ MODEL_INSTANCES: 4, INTRA_OP_THREADS: 0 }, 2)).toBe(1);
    expect(intraOpThreads({ MODEL_INSTANCES: 2, INTRA_OP_THREADS: 3 }, 16)).toBe(3);
    // One instance: onnxruntime's own default (a thread per core).
    expect(intraOpThreads({ MODEL_INSTANCES: 1, INTRA_OP_THREADS: 0 }, 16)).toBe(0);
  });

  it("unloads a model version idle for 10 minutes and keeps at most 32 loaded unless told otherwise; 0 turns either off", () => {
    expect(loadWorkerEnv({})).toMatchObject({ MODEL_IDLE_UNLOAD_S: 600, MAX_LOADED_MODELS: 32 });
    expect(loadWorkerEnv({ MODEL_IDLE_UNLOAD_S: "0", MAX_LOADED_MODELS: "0" })).toMatchObject({ MODEL_IDLE_UNLOAD_S: 0, MAX_LOADED_MODELS: 0 });
    expect(loadWorkerEnv({ MODEL_IDLE_UNLOAD_S: "30", MAX_LOADED_MODELS: "2" })).toMatchObject({ MODEL_IDLE_UNLOAD_S: 30, MAX_LOADED_MODELS: 2 });
    expect(() => loadWorkerEnv({ MODEL_IDLE_UNLOAD_S: "-1" })).toThrow(/MODEL_IDLE_UNLOAD_S/);
    expect(() => loadWorkerEnv({ MAX_LOADED_MODELS: "lots" })).toThrow(/MAX_LOADED_MODELS/);
    expect(() => loadWorkerEnv({ MAX_LOADED_MODELS: "2.5" })).toThrow(/MAX_LOADED_MODELS/);
  });

  it("shares batches fairly across tenants unless FAIR_SHARE=false, and refuses a value that is not a boolean", () => {
    expect(loadWorkerEnv({}).FAIR_SHARE).toBe(true);
    expect(loadWorkerEnv({ FAIR_SHARE: "false" }).FAIR_SHARE).toBe(false);
    expect(() => loadWorkerEnv({ FAIR_SHARE: "sometimes" })).toThrow(/FAIR_SHARE/);
  });
});

describe("worker logs (LOG_SUMMARY_INTERVAL_S)", () => {
  it("sums the batches up once a minute unless told otherwise; 0 turns the summaries off; refuses what is not a whole number of seconds", () => {
    expect(loadWorkerEnv({}).LOG_SUMMARY_INTERVAL_S).toBe(60);
    expect(loadWorkerEnv({ LOG_SUMMARY_INTERVAL_S: "10" }).LOG_SUMMARY_INTERVAL_S).toBe(10);
    expect(loadWorkerEnv({ LOG_SUMMARY_INTERVAL_S: "0" }).LOG_SUMMARY_INTERVAL_S).toBe(0);
    expect(() => loadWorkerEnv({ LOG_SUMMARY_INTERVAL_S: "-1" })).toThrow(/LOG_SUMMARY_INTERVAL_S/);
    expect(() => loadWorkerEnv({ LOG_SUMMARY_INTERVAL_S: "1.5" })).toThrow(/LOG_SUMMARY_INTERVAL_S/);
    expect(() => loadWorkerEnv({ LOG_SUMMARY_INTERVAL_S: "often" })).toThrow(/LOG_SUMMARY_INTERVAL_S/);
  });
});

describe("worker Redis topology (REDIS_URL)", () => {
  it("derives the API's queue prefix from the same variables: hash-tagged on a cluster only", () => {
    expect(loadWorkerEnv({ REDIS_URL: "redis+sentinel://s1/mymaster", QUEUE_PREFIX: "prod" }).QUEUE_PREFIX).toBe("prod");
    expect(loadWorkerEnv({ REDIS_URL: "redis+cluster://n1:7000", QUEUE_PREFIX: "prod" }).QUEUE_PREFIX).toBe("{prod}");
    expect(loadWorkerEnv({ REDIS_URL: "redis+cluster://n1:7000", QUEUE_PREFIX: "{prod}" }).QUEUE_PREFIX).toBe("{prod}");
    expect(() => loadWorkerEnv({ REDIS_URL: "redis+cluster://n1:7000", QUEUE_PREFIX: "{}prod" })).toThrow(/QUEUE_PREFIX: .*no hash tag/);
    expect(() => loadWorkerEnv({ REDIS_URL: "redis+clusters://n1:7000" })).toThrow(/REDIS_URL: unknown scheme/);
  });
});
