// Every input type through the whole path: HTTP -> Postgres -> BullMQ -> batch -> onnxruntime ->
// Postgres -> HTTP, with identity models so each output must equal its input.
import type { Job, JobResults } from "@coalesce/contracts";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadWorkerEnv } from "../../apps/worker/src/env.ts";
import { startWorker, type RunningWorker } from "../../apps/worker/src/worker.ts";
import { buildIdentityModel, type ElemTypeName, type TinyDim } from "../../packages/models/src/tiny-onnx.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "../support/services.ts";

let services: TestServices;
let api: TestApi;
let worker: RunningWorker;
let auth: string;

beforeAll(async () => {
  services = await createTestServices();
  api = createTestApi(services);
  auth = await api.createTenant("types");
  worker = await startWorker(loadWorkerEnv({ ...services.env, MIGRATE_ON_START: "false" }), pino({ level: "silent" }));
});

afterAll(async () => {
  await worker?.close();
  await api?.close();
  await services?.cleanup();
});

async function request<T>(method: string, path: string, body?: Uint8Array | string, type = "application/json"): Promise<T> {
  const response = await api.app.request(path, { method, headers: { Authorization: auth, "Content-Type": type }, ...(body ? { body } : {}) });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return JSON.parse(text) as T;
}

async function score(type: ElemTypeName, shape: TinyDim[], rows: unknown[]): Promise<unknown[]> {
  const name = `identity-${type}`;
  await request("POST", `/v1/models/${name}/versions`, buildIdentityModel(type, shape), "application/octet-stream");
  const job = await request<Job>("POST", "/v1/jobs", JSON.stringify({ model: name, inputs: rows.map((x) => ({ x })) }));
  const deadline = Date.now() + 30_000;
  let current = job;
  while (current.status === "queued" || current.status === "running") {
    if (Date.now() > deadline) throw new Error(`job ${job.id} still ${current.status}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    current = await request<Job>("GET", `/v1/jobs/${job.id}`);
  }
  expect(current).toMatchObject({ status: "succeeded", counts: { succeeded: rows.length, failed: 0 } });
  const results = await request<JobResults>("GET", `/v1/jobs/${job.id}/results`);
  return results.data.map((row) => row.outputs?.y);
}

describe("input types end to end", () => {
  it("float32", async () => {
    expect(await score("float32", ["batch", 2], [[0.5, -1], [2, 3]])).toEqual([[0.5, -1], [2, 3]]);
  });
  it("float64 keeps double precision", async () => {
    expect(await score("float64", ["batch"], [0.1, 1e300, -2.5])).toEqual([0.1, 1e300, -2.5]);
  });
  it("int32", async () => {
    expect(await score("int32", ["batch", 2], [[-2147483648, 2147483647]])).toEqual([[-2147483648, 2147483647]]);
  });
  it("int64: numbers within 2^53, decimal strings beyond, both ways", async () => {
    expect(await score("int64", ["batch", 2], [["9007199254740993", 42], [-7, "-9223372036854775808"]])).toEqual([
      ["9007199254740993", 42],
      [-7, "-9223372036854775808"],
    ]);
  });
  it("bool", async () => {
    expect(await score("bool", ["batch", 3], [[true, false, true]])).toEqual([[true, false, true]]);
  });
  it("rank-3 rows with symbolic dimensions, batched by shape", async () => {
    const rows = [[[1, 2], [3, 4]], [[5, 6, 7]], [[8, 9], [10, 11]]];
    expect(await score("float32", ["batch", "h", "w"], rows)).toEqual(rows);
  });
});
