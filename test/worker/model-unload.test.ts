// A worker that may hold two models scoring jobs on four: it unloads and reloads them in turn, and
// every job still succeeds with the model's own answers, whether the jobs come one at a time or
// all at once (then every model has rows in flight, and it goes over the limit until they finish).
import type { Job, JobResults, TensorRow, TensorSpec } from "@coalesce/contracts";
import { buildBatch, loadSessionWithFallback, splitOutputs } from "@coalesce/models";
import { buildRandomMlp } from "@coalesce/models/tiny-onnx";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { useApiSuite } from "../support/api-suite.ts";
import { expectJson, get, submitJob, uploadModel, waitForJob } from "../support/http.ts";
import { readWorkerMetric, waitUntil } from "../support/predict.ts";
import { startTestWorker } from "../support/worker.ts";

const suite = useApiSuite("model-unload");
const MODELS = ["u0", "u1", "u2", "u3"];
const INPUTS: TensorSpec[] = [{ name: "x", type: "float32", shape: ["batch", 4] }];
const OUTPUTS: TensorSpec[] = [{ name: "y", type: "float32", shape: ["batch", 3] }];
const ROWS: TensorRow[] = Array.from({ length: 5 }, (_, i) => ({ x: [i, 1 - i, i / 4, -1] }));
const expected = new Map<string, TensorRow[]>();
let worker: RunningWorker;

beforeAll(async () => {
  for (const [i, name] of MODELS.entries()) {
    const bytes = buildRandomMlp([4, 8, 3], 100 + i);
    expect((await uploadModel(suite.api, suite.auth, name, bytes)).status).toBe(201);
    const { session } = await loadSessionWithFallback(bytes, ["cpu"]);
    // Results travel as JSON: compare with the reference through it too.
    expected.set(name, JSON.parse(JSON.stringify(splitOutputs(await session.run(buildBatch(ROWS, INPUTS)), OUTPUTS, ROWS.length))) as TensorRow[]);
    await session.release();
  }
  worker = await startTestWorker(suite.services, { MAX_LOADED_MODELS: "2", INTRA_OP_THREADS: "1" });
});

afterAll(async () => {
  await worker?.close();
});

/** Scores ROWS on `model` and checks that the job succeeded with that model's answers. */
async function score(model: string): Promise<void> {
  const created = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model, inputs: ROWS }), 202);
  const job = await waitForJob(suite.api, suite.auth, created.id);
  expect(job.status, `${model}: ${JSON.stringify(job.error)}`).toBe("succeeded");
  const results = await expectJson<JobResults>(await get(suite.api, suite.auth, `/v1/jobs/${job.id}/results`), 200);
  expect(results.data.map((row) => row.outputs)).toEqual(expected.get(model));
}

const unloads = () => readWorkerMetric(worker, "coalesce_model_unloads_total", { reason: "lru" });

describe("a worker with MAX_LOADED_MODELS=2 and four models", () => {
  it("scores jobs on each in turn, unloading the least recently used as it loads the next", async () => {
    for (let round = 0; round < 2; round++) for (const model of MODELS) await score(model);
    // Two loaded at first; each of the other six jobs loaded its model and unloaded one.
    expect(await unloads()).toBe(6);
    expect(await readWorkerMetric(worker, "coalesce_model_loads_total", { outcome: "loaded" })).toBe(8);
    expect(await readWorkerMetric(worker, "coalesce_models_loaded")).toBe(2);
    expect(await readWorkerMetric(worker, "coalesce_model_unloads_total", { model: "u0", reason: "lru" })).toBe(2);
  });

  it("scores jobs on all four at once, over the limit while each has rows in flight, and back within it after", async () => {
    const before = await unloads();
    await Promise.all(MODELS.flatMap((model) => [score(model), score(model)]));
    await waitUntil("the worker to be back within MAX_LOADED_MODELS", async () => (await readWorkerMetric(worker, "coalesce_models_loaded")) <= 2, 10_000);
    expect(await unloads()).toBeGreaterThan(before);
  });
});
