// POST /v1/models/{name}[/versions/{v}]/predict against the real API (in process), Redis, Postgres
// and workers: answers equal to the job path's for the same rows, the result cache (whose entries
// never cross a tenant or a model file), admission (503 at once) and the timeout (504), and rows of
// many requests and of several API instances merged into the same onnxruntime runs.
import type { Job, JobResults, PredictResponse } from "@coalesce/contracts";
import { createRedisConnection, listWorkers } from "@coalesce/queue";
import type { RedisClient } from "@coalesce/queue";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { buildIdentityModel, buildOnnxModel } from "../../packages/models/src/tiny-onnx.ts";
import { irisInputs, irisTenant, useIrisSuite } from "../support/iris-suite.ts";
import { readFeatureCsv, readModel } from "../support/fixtures.ts";
import { errorFields, expectJson, expectProblem, get, submitJob, uploadModel, waitForJob } from "../support/http.ts";
import { createTestApi, createTestServices, REDIS_URL, type TestApi, type TestServices } from "../support/services.ts";
import { addModel, PREDICT_GROUP, predictBacklogKey, predictStreamKey, readWorkerMetric, waitUntil } from "../support/predict.ts";
import { startTestWorker } from "../support/worker.ts";

type Row = Record<string, unknown>;

function predict(api: TestApi, auth: string | null, model: string, inputs: unknown, headers: Record<string, string> = {}, version?: number): Promise<Response> {
  const url = version === undefined ? `/v1/models/${model}/predict` : `/v1/models/${model}/versions/${version}/predict`;
  const body = typeof inputs === "string" ? inputs : JSON.stringify({ inputs });
  return Promise.resolve(
    api.app.request(url, { method: "POST", headers: { ...(auth ? { Authorization: auth } : {}), "Content-Type": "application/json", ...headers }, body }),
  );
}

/** A 200 answer's body and its Coalesce-Cache header. */
async function answered(response: Response): Promise<PredictResponse & { cache: string | null }> {
  const cache = response.headers.get("coalesce-cache");
  return { ...(await expectJson<PredictResponse>(response, 200)), cache };
}

/** The results of a JSON job of the same rows, as GET /v1/jobs/{id}/results lists them. */
async function jobResults(api: TestApi, auth: string, model: string, inputs: Row[]): Promise<JobResults["data"]> {
  const job = await expectJson<Job>(await submitJob(api, auth, { model, inputs }), 202);
  expect(await waitForJob(api, auth, job.id)).toMatchObject({ status: "succeeded" });
  const results = await expectJson<JobResults>(await get(api, auth, `/v1/jobs/${job.id}/results?limit=1000`), 200);
  expect(results.complete).toBe(true);
  return results.data;
}

/** Iris-shaped rows no other test sends (so no cache entry can answer them), `seed` apart. */
function freshRows(seed: number, count: number): { features: number[] }[] {
  return Array.from({ length: count }, (_, i) => ({ features: [4 + ((seed * 7919 + i) % 997) / 331, 3.1, 1 + (seed % 50) / 10, 0.2 + i / 1000] }));
}


/** `y = -x` over [batch, 4]: answers unlike the identity over the same rows. */
const negateModel = buildOnnxModel({
  inputs: [{ name: "x", type: "float32", shape: ["batch", 4] }],
  outputs: [{ name: "y", type: "float32", shape: ["batch", 4] }],
  nodes: [{ opType: "Neg", inputs: ["x"], outputs: ["y"] }],
});

describe("with a worker", () => {
  const suite = useIrisSuite("predict");
  let worker: RunningWorker;
  let redis: RedisClient;

  beforeAll(async () => {
    worker = await startTestWorker(suite.services);
    redis = createRedisConnection(REDIS_URL);
  });
  afterAll(async () => {
    await worker?.close();
    redis?.disconnect();
  });

  const metric = (name: string, labels: Record<string, string> = {}) => readWorkerMetric(worker, name, labels);

  describe("answers", () => {
    it("iris: the outputs equal the job path's results for the same rows, bit for bit", async () => {
      const rows = irisInputs(suite, 150);
      const now = await answered(await predict(suite.api, suite.auth, "iris", rows, { "Cache-Control": "no-store" }));
      expect(now.model).toEqual({ name: "iris", version: 1, alias: null });
      expect(now.outputs).toStrictEqual(await jobResults(suite.api, suite.auth, "iris", rows));
    });

    it("digits: the outputs equal the job path's results for the same rows, bit for bit", async () => {
      expect((await uploadModel(suite.api, suite.auth, "digits", await readModel("digits"))).status).toBe(201);
      const rows = (await readFeatureCsv("digits")).features.slice(0, 300).map((features) => ({ features }));
      const now = await answered(await predict(suite.api, suite.auth, "digits", rows, { "Cache-Control": "no-store" }));
      expect(now.outputs).toHaveLength(300);
      expect(now.outputs).toStrictEqual(await jobResults(suite.api, suite.auth, "digits", rows));
    });

    it("the versioned route answers from that version; the plain route from the latest", async () => {
      const auth = await suite.api.createTenant("versions");
      expect((await uploadModel(suite.api, auth, "flip", buildIdentityModel("float32", ["batch", 4]))).status).toBe(201);
      expect((await uploadModel(suite.api, auth, "flip", negateModel)).status).toBe(201);
      const rows = [{ x: [1, -2, 3.5, 0.25] }];
      const first = await answered(await predict(suite.api, auth, "flip", rows, {}, 1));
      expect(first).toMatchObject({ model: { name: "flip", version: 1 }, outputs: [{ index: 0, outputs: { y: [1, -2, 3.5, 0.25] } }] });
      const latest = await answered(await predict(suite.api, auth, "flip", rows));
      expect(latest).toMatchObject({ model: { name: "flip", version: 2 }, outputs: [{ index: 0, outputs: { y: [-1, 2, -3.5, -0.25] } }] });
    });

    it("a row whose inference fails gets its own error in place; the other rows are answered", async () => {
      expect((await uploadModel(suite.api, suite.auth, "add", addModel)).status).toBe(201);
      const rows = [
        { a: [1, 2], b: [10, 20] },
        { a: [1, 2], b: [1, 2, 3] },
        { a: [0.5], b: [0.25] },
      ];
      const { outputs } = await answered(await predict(suite.api, suite.auth, "add", rows));
      expect(outputs).toStrictEqual([
        { index: 0, outputs: { y: [11, 22] } },
        { index: 1, error: { code: "inference_failed", message: expect.any(String) } },
        { index: 2, outputs: { y: [0.75] } },
      ]);
      // A failed row is not cached: asked again, it runs again (and fails again).
      const again = await answered(await predict(suite.api, suite.auth, "add", rows));
      expect(again.cache).toBe("miss");
      expect(again.outputs[1]).toMatchObject({ error: { code: "inference_failed" } });
    });
  });

  describe("refuses", () => {
    it("an unknown model or version: 404", async () => {
      await expectProblem(await predict(suite.api, suite.auth, "nope", irisInputs(suite, 1)), 404, "not_found");
      await expectProblem(await predict(suite.api, suite.auth, "iris", irisInputs(suite, 1), {}, 99), 404, "not_found");
    });

    it("a row that does not fit the model: 422 naming inputs[1].features", async () => {
      const problem = await expectProblem(await predict(suite.api, suite.auth, "iris", [{ features: [1, 2, 3, 4] }, { features: [1, 2, 3] }]), 422, "validation_failed");
      expect(errorFields(problem)).toEqual(["inputs[1].features"]);
    });

    it("more than PREDICT_MAX_ROWS rows: 422 naming inputs, pointing to jobs", async () => {
      const problem = await expectProblem(await predict(suite.api, suite.auth, "iris", irisInputs(suite, 1025)), 422, "validation_failed");
      expect(errorFields(problem)).toEqual(["inputs"]);
      expect(problem.errors?.[0]?.message).toMatch(/PREDICT_MAX_ROWS.*submit a job/);
    });

    it("an unknown body field: 422 naming it", async () => {
      const body = JSON.stringify({ inputs: irisInputs(suite, 1), input: [] });
      expect(errorFields(await expectProblem(await predict(suite.api, suite.auth, "iris", body), 422, "validation_failed"))).toContain("input");
    });

    it("no rows: 422 naming inputs", async () => {
      expect(errorFields(await expectProblem(await predict(suite.api, suite.auth, "iris", []), 422, "validation_failed"))).toEqual(["inputs"]);
    });

    it("no key: 401", async () => {
      await expectProblem(await predict(suite.api, null, "iris", irisInputs(suite, 1)), 401, "unauthorized");
    });

    it("a body over MAX_BODY_BYTES: 413", async () => {
      const body = JSON.stringify({ inputs: Array.from({ length: 1000 }, () => ({ features: [1, 2, 3, 4], pad: "p".repeat(9_000) })) });
      await expectProblem(await predict(suite.api, suite.auth, "iris", body), 413, "payload_too_large");
    });
  });

  describe("the result cache", () => {
    it("a repeat is a hit with the same outputs, and the model does not run", async () => {
      const rows = freshRows(1, 3);
      const first = await answered(await predict(suite.api, suite.auth, "iris", rows));
      expect(first.cache).toBe("miss");
      const ran = await metric("coalesce_predict_rows_total");
      const again = await answered(await predict(suite.api, suite.auth, "iris", rows));
      expect(again.cache).toBe("hit");
      expect(again.outputs).toStrictEqual(first.outputs);
      expect(await metric("coalesce_predict_rows_total")).toBe(ran);
    });

    it("a request only partly cached is a miss, and answers every row", async () => {
      const cached = freshRows(2, 2);
      const first = await answered(await predict(suite.api, suite.auth, "iris", cached));
      const mixed = await answered(await predict(suite.api, suite.auth, "iris", [...cached, ...freshRows(3, 1)]));
      expect(mixed.cache).toBe("miss");
      expect(mixed.outputs.slice(0, 2)).toStrictEqual(first.outputs);
      expect(mixed.outputs[2]).toMatchObject({ index: 2, outputs: { label: expect.any(Number) } });
    });

    it("Cache-Control: no-cache runs the model anyway", async () => {
      const rows = freshRows(4, 2);
      const first = await answered(await predict(suite.api, suite.auth, "iris", rows));
      const ran = await metric("coalesce_predict_rows_total");
      const fresh = await answered(await predict(suite.api, suite.auth, "iris", rows, { "Cache-Control": "no-cache" }));
      expect(fresh.cache).toBe("miss");
      expect(fresh.outputs).toStrictEqual(first.outputs);
      expect(await metric("coalesce_predict_rows_total")).toBe(ran + 2);
    });

    it("Cache-Control: no-store neither reads nor writes the cache", async () => {
      const cached = freshRows(5, 1);
      await answered(await predict(suite.api, suite.auth, "iris", cached));
      expect((await answered(await predict(suite.api, suite.auth, "iris", cached, { "Cache-Control": "no-store" }))).cache).toBe("miss");
      const unstored = freshRows(6, 1);
      await answered(await predict(suite.api, suite.auth, "iris", unstored, { "Cache-Control": "no-store" }));
      expect((await answered(await predict(suite.api, suite.auth, "iris", unstored))).cache).toBe("miss");
    });

    it("a new version registered from another file is never answered from the old version's entries", async () => {
      const auth = await suite.api.createTenant("cache-versions");
      const rows = [{ x: [1, 2, 3, 4] }];
      expect((await uploadModel(suite.api, auth, "twin", buildIdentityModel("float32", ["batch", 4]))).status).toBe(201);
      await answered(await predict(suite.api, auth, "twin", rows));
      expect((await answered(await predict(suite.api, auth, "twin", rows))).cache).toBe("hit");
      expect((await uploadModel(suite.api, auth, "twin", negateModel)).status).toBe(201);
      const latest = await answered(await predict(suite.api, auth, "twin", rows));
      expect(latest).toMatchObject({ cache: "miss", model: { version: 2 }, outputs: [{ outputs: { y: [-1, -2, -3, -4] } }] });
      // The old version's entries still answer the old version.
      expect(await answered(await predict(suite.api, auth, "twin", rows, {}, 1))).toMatchObject({ cache: "hit", outputs: [{ outputs: { y: [1, 2, 3, 4] } }] });
    });

    it("another tenant with the same model file never gets a hit from the first tenant's entries", async () => {
      const rows = freshRows(7, 2);
      await answered(await predict(suite.api, suite.auth, "iris", rows));
      expect((await answered(await predict(suite.api, suite.auth, "iris", rows))).cache).toBe("hit");
      const other = await irisTenant(suite, "cache-other");
      const theirs = await answered(await predict(suite.api, other, "iris", rows));
      expect(theirs.cache).toBe("miss");
      expect((await answered(await predict(suite.api, other, "iris", rows))).cache).toBe("hit");
    });

    it("PREDICT_CACHE_TTL_S=0 never hits", async () => {
      const api = createTestApi(suite.services, {}, { cache: { ttlSeconds: 0, maxEntryBytes: 64 * 1024 } });
      try {
        const rows = freshRows(8, 2);
        const ran = await metric("coalesce_predict_rows_total");
        for (let i = 0; i < 3; i++) expect((await answered(await predict(api, suite.auth, "iris", rows))).cache).toBe("miss");
        expect(await metric("coalesce_predict_rows_total")).toBe(ran + 6);
        // Nothing was stored for the API that does cache either.
        expect((await answered(await predict(suite.api, suite.auth, "iris", rows))).cache).toBe("miss");
      } finally {
        await api.close();
      }
    });

    it("an answer over PREDICT_CACHE_MAX_ENTRY_BYTES is not cached; smaller ones of the same request are", async () => {
      const auth = await suite.api.createTenant("cache-size");
      expect((await uploadModel(suite.api, auth, "echo", buildIdentityModel("float32", ["batch", "n"]))).status).toBe(201);
      const api = createTestApi(suite.services, {}, { cache: { ttlSeconds: 300, maxEntryBytes: 64 } });
      try {
        const small = { x: [1] };
        const large = { x: Array.from({ length: 64 }, (_, i) => i + 0.5) };
        const first = await answered(await predict(api, auth, "echo", [small, large]));
        expect(first.outputs).toStrictEqual([
          { index: 0, outputs: { y: [1] } },
          { index: 1, outputs: { y: large.x } },
        ]);
        expect((await answered(await predict(api, auth, "echo", [small, large]))).cache).toBe("miss");
        expect((await answered(await predict(api, auth, "echo", [small]))).cache).toBe("hit");
        expect((await answered(await predict(api, auth, "echo", [large]))).cache).toBe("miss");
      } finally {
        await api.close();
      }
    });

    it("every cache entry in Redis carries a TTL of at most PREDICT_CACHE_TTL_S", async () => {
      await answered(await predict(suite.api, suite.auth, "iris", freshRows(9, 3)));
      const keys = await redis.keys(`${suite.services.queuePrefix}:predict:cache:*`);
      expect(keys.length).toBeGreaterThanOrEqual(3);
      const ttls = await Promise.all(keys.map((key) => redis.ttl(key)));
      expect(ttls.filter((ttl) => !(ttl > 0 && ttl <= 300))).toEqual([]);
    });
  });

  describe("under load", () => {
    it("200 concurrent single-row requests: all answered, each with its own row's outputs, merged into shared runs", async () => {
      const rows = irisInputs(suite, 150).concat(freshRows(10, 50));
      const expected = await jobResults(suite.api, suite.auth, "iris", rows);
      const labels = { lane: "interactive" };
      const [sum, count] = [await metric("coalesce_batch_rows_sum", labels), await metric("coalesce_batch_rows_count", labels)];
      const answers = await Promise.all(rows.map((row) => predict(suite.api, suite.auth, "iris", [row], { "Cache-Control": "no-store" }).then(answered)));
      expect(answers.map((answer) => answer.outputs[0]?.outputs)).toStrictEqual(expected.map((result) => result.outputs));
      const runs = (await metric("coalesce_batch_rows_count", labels)) - count;
      const runRows = (await metric("coalesce_batch_rows_sum", labels)) - sum;
      expect(runRows).toBe(200);
      expect(runRows / runs).toBeGreaterThan(1);
      console.info(`200 concurrent single-row predicts: ${runs} runs, ${(runRows / runs).toFixed(1)} rows per run`);
    });

    it("two API instances and one worker: requests through both share runs, and each gets its own answer", async () => {
      const second = createTestApi(suite.services);
      try {
        const rows = freshRows(11, 100);
        const expected = await jobResults(suite.api, suite.auth, "iris", rows);
        const labels = { lane: "interactive" };
        const [sum, count] = [await metric("coalesce_batch_rows_sum", labels), await metric("coalesce_batch_rows_count", labels)];
        const answers = await Promise.all(
          rows.map((row, i) => predict(i % 2 === 0 ? suite.api : second, suite.auth, "iris", [row], { "Cache-Control": "no-store" }).then(answered)),
        );
        expect(answers.map((answer) => answer.outputs[0]?.outputs)).toStrictEqual(expected.map((result) => result.outputs));
        const runs = (await metric("coalesce_batch_rows_count", labels)) - count;
        expect(((await metric("coalesce_batch_rows_sum", labels)) - sum) / runs).toBeGreaterThan(1);
      } finally {
        await second.close();
      }
    });
  });
});

describe("with no worker running", () => {
  let services: TestServices;
  let api: TestApi;
  let auth: string;
  beforeAll(async () => {
    services = await createTestServices();
    api = createTestApi(services);
    auth = await api.createTenant("no-worker");
    expect((await uploadModel(api, auth, "iris", await readModel("iris"))).status).toBe(201);
  });
  afterAll(async () => {
    await api?.close();
    await services?.cleanup();
  });

  it("503 at once with Retry-After, saying to start a worker", async () => {
    const response = await predict(api, auth, "iris", [{ features: [5.1, 3.5, 1.4, 0.2] }]);
    const problem = await expectProblem(response, 503, "service_unavailable");
    expect(Number(response.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(problem.detail).toMatch(/start one/);
  });
});

describe("with a stalled worker (its batches wait 5 s to fill)", () => {
  let services: TestServices;
  let worker: RunningWorker;
  let redis: RedisClient;
  let auth: string;
  const apis: TestApi[] = [];
  beforeAll(async () => {
    services = await createTestServices();
    redis = createRedisConnection(REDIS_URL);
    const api = createTestApi(services);
    apis.push(api);
    auth = await api.createTenant("stalled");
    expect((await uploadModel(api, auth, "iris", await readModel("iris"))).status).toBe(201);
    worker = await startTestWorker(services, { ADAPTIVE_BATCHING: "false", MAX_BATCH_DELAY_MS: "5000" });
  });
  afterAll(async () => {
    await worker?.close();
    for (const api of apis) await api.close();
    redis?.disconnect();
    await services?.cleanup();
  });

  const backlog = async () => Number((await redis.get(predictBacklogKey(services.queuePrefix))) ?? 0);

  it("no answer within PREDICT_TIMEOUT_MS: 504 timeout; the backlog is back to 0 once the worker has answered", async () => {
    const api = createTestApi(services, {}, { timeoutMs: 1_000 });
    apis.push(api);
    const problem = await expectProblem(await predict(api, auth, "iris", [{ features: [5.1, 3.5, 1.4, 0.2] }], { "Cache-Control": "no-store" }), 504, "timeout");
    expect(problem.detail).toMatch(/PREDICT_TIMEOUT_MS/);
    await waitUntil("the backlog to return to 0", async () => (await backlog()) === 0, 20_000);
  });

  it("one row through each of two API instances: one run of both rows, and each API gets its own row's answer", async () => {
    const [first, second] = [createTestApi(services), createTestApi(services)];
    apis.push(first, second);
    const labels = { lane: "interactive" };
    const [sum, count] = [await readWorkerMetric(worker, "coalesce_batch_rows_sum", labels), await readWorkerMetric(worker, "coalesce_batch_rows_count", labels)];
    // The batch waits 5 s to fill, so both requests are in it whichever API's arrives first.
    const [a, b] = await Promise.all([
      predict(first, auth, "iris", [{ features: [5.1, 3.5, 1.4, 0.2] }], { "Cache-Control": "no-store" }).then(answered),
      predict(second, auth, "iris", [{ features: [7.7, 3.0, 6.1, 2.3] }], { "Cache-Control": "no-store" }).then(answered),
    ]);
    expect(a.outputs[0]?.outputs?.label).toBe(0);
    expect(b.outputs[0]?.outputs?.label).toBe(2);
    expect((await readWorkerMetric(worker, "coalesce_batch_rows_count", labels)) - count).toBe(1);
    expect((await readWorkerMetric(worker, "coalesce_batch_rows_sum", labels)) - sum).toBe(2);
  });

  it("more than PREDICT_MAX_BACKLOG_ROWS rows waiting: 503 at once with Retry-After", async () => {
    const api = createTestApi(services, {}, { maxBacklogRows: 1 });
    apis.push(api);
    const held = predict(api, auth, "iris", [{ features: [5, 3, 1, 0.2] }], { "Cache-Control": "no-store" });
    await waitUntil("the first request to be waiting", async () => (await backlog()) === 1, 10_000);
    const refused = await predict(api, auth, "iris", [{ features: [6, 3, 1, 0.2] }], { "Cache-Control": "no-store" });
    const problem = await expectProblem(refused, 503, "service_unavailable");
    expect(problem.detail).toMatch(/PREDICT_MAX_BACKLOG_ROWS/);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    // The request held is answered once its batch runs, and the backlog empties.
    expect((await answered(await held)).outputs).toHaveLength(1);
    await waitUntil("the backlog to return to 0", async () => (await backlog()) === 0, 10_000);
  });
});

describe("with a worker that holds one row at a time (PREDICT_ROWS_IN_FLIGHT=1)", () => {
  let services: TestServices;
  let worker: RunningWorker;
  let redis: RedisClient;
  let api: TestApi;
  let auth: string;
  beforeAll(async () => {
    services = await createTestServices();
    redis = createRedisConnection(REDIS_URL);
    api = createTestApi(services);
    auth = await api.createTenant("lost-read");
    expect((await uploadModel(api, auth, "iris", await readModel("iris"))).status).toBe(201);
    // Each batch waits 1.5 s, so the worker is busy with one request and reads no other meanwhile.
    worker = await startTestWorker(services, { PREDICT_ROWS_IN_FLIGHT: "1", ADAPTIVE_BATCHING: "false", MAX_BATCH_DELAY_MS: "1500", STALLED_TAKEOVER_MS: "2000" });
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    redis?.disconnect();
    await services?.cleanup();
  });

  it("a request delivered to a live worker that never got it (a read whose reply was lost) is claimed back and answered", async () => {
    const backlog = async () => Number((await redis.get(predictBacklogKey(services.queuePrefix))) ?? 0);
    const first = predict(api, auth, "iris", [{ features: [5.1, 3.5, 1.4, 0.2] }], { "Cache-Control": "no-store" });
    await waitUntil("the worker to hold the first request", async () => (await backlog()) === 1 && Number((await redis.xpending(predictStreamKey(services.queuePrefix), PREDICT_GROUP))[0]) === 1, 10_000);
    const second = predict(api, auth, "iris", [{ features: [7.7, 3.0, 6.1, 2.3] }], { "Cache-Control": "no-store" });
    await waitUntil("the second request to be queued", async () => (await backlog()) === 2, 10_000);
    // Delivered under the live worker's name by another connection: pending to it, never in its hands.
    const workers = await listWorkers(redis, services.queuePrefix);
    expect(workers).toHaveLength(1);
    const consumer = workers[0]!.id;
    const stolen = await redis.xreadgroup("GROUP", PREDICT_GROUP, consumer, "COUNT", 1, "STREAMS", predictStreamKey(services.queuePrefix), ">");
    expect(stolen).not.toBeNull();
    expect((await answered(await first)).outputs[0]?.outputs?.label).toBe(0);
    expect((await answered(await second)).outputs[0]?.outputs?.label).toBe(2);
    await waitUntil("the backlog to return to 0", async () => (await backlog()) === 0, 10_000);
  });
});
