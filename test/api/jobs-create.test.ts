import type { Job, JobList, TensorSpec } from "@coalesce/contracts";
import { PackedRows } from "@coalesce/models";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorFields, expectJson, expectProblem, get, irisRows, requestJson, submitJob } from "../support/http.ts";
import { useApiSuite } from "../support/api-suite.ts";
import { createTestApi, type TestApi } from "../support/services.ts";

const CHUNK_ROWS = 64; // createTestApi's default limits.chunkRows

const suite = useApiSuite("jobs-create", { iris: true });

async function jobIds(): Promise<string[]> {
  const list = await expectJson<JobList>(await get(suite.api, suite.auth, "/v1/jobs?limit=100"), 200);
  return list.data.map((job) => job.id);
}

describe("POST /v1/jobs accepts", () => {
  it("a job for the latest version of a model with 202 and the queued job", async () => {
    const job = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "iris", inputs: irisRows(3) }), 202);
    expect(job).toEqual({
      id: expect.stringMatching(/^job_[0-9a-z]+$/) as string,
      status: "queued",
      priority: "interactive",
      model: { name: "iris", version: 1, alias: null },
      counts: { total: 3, received: 3, succeeded: 0, failed: 0 },
      progress: 0,
      eta_seconds: null,
      id_column: null,
      execution: { provider: null, batch_rows: null },
      expires_at: null,
      webhook_url: null,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/) as string,
      started_at: null,
      completed_at: null,
    });
  });

  it("a job for a pinned version, name@VERSION", async () => {
    const job = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "iris@1", inputs: irisRows(1) }), 202);
    expect(job).toMatchObject({ status: "queued", model: { name: "iris", version: 1 }, counts: { total: 1 } });
  });

  it("a JSON body whose content type has a charset", async () => {
    const body = JSON.stringify({ model: "iris", inputs: irisRows(1) });
    const response = await requestJson(suite.api, suite.auth, "POST", "/v1/jobs", body, { "Content-Type": "application/json; charset=utf-8" });
    await expectJson(response, 202);
  });

  it("a job whose GET returns the same job", async () => {
    const created = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "iris", inputs: irisRows(2) }), 202);
    expect(await expectJson<Job>(await get(suite.api, suite.auth, `/v1/jobs/${created.id}`), 200)).toEqual(created);
  });
});

describe("an accepted job", () => {
  const ROWS = 150; // three chunks of 64, 64 and 22 rows
  let job: Job;
  let waitingBefore: number;

  beforeAll(async () => {
    waitingBefore = (await suite.api.deps.queue.getJobCounts()).prioritized ?? 0;
    job = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "iris", inputs: irisRows(ROWS) }), 202);
  });

  it("has every row in Postgres, in chunks, by the time the 202 arrives", async () => {
    const chunks = await suite.api.db.prisma.jobChunk.findMany({ where: { jobId: job.id }, orderBy: { seq: "asc" } });
    expect(chunks.map((chunk) => [chunk.seq, chunk.firstRow, chunk.rowCount, chunk.status])).toEqual([
      [0, 0, 64, "queued"],
      [1, 64, 64, "queued"],
      [2, 128, 22, "queued"],
    ]);
    // Stored packed: the values as the float32 the model takes.
    const { modelVersionId } = await suite.api.db.prisma.job.findUniqueOrThrow({ where: { id: job.id } });
    const version = await suite.api.db.prisma.modelVersion.findUniqueOrThrow({ where: { id: modelVersionId } });
    const inputs = version.inputs as TensorSpec[];
    const stored = chunks.flatMap((chunk) => {
      expect(chunk.inputs).toBeNull();
      const rows = PackedRows.decode(chunk.inputsPacked as Uint8Array, inputs);
      return Array.from({ length: rows.rowCount }, (_, r) => ({ features: Array.from(rows.values(0, r) as Float32Array) }));
    });
    expect(stored).toEqual(irisRows(ROWS).map((row) => ({ features: row.features.map(Math.fround) })));
  });

  it("has one BullMQ job per chunk (a job alone shares with none) queued in its lane, keyed by the chunk id", async () => {
    const chunks = await suite.api.db.prisma.jobChunk.findMany({ where: { jobId: job.id } });
    expect(chunks).toHaveLength(Math.ceil(ROWS / CHUNK_ROWS));
    expect((await suite.api.deps.queue.getJobCounts()).prioritized).toBe(waitingBefore + chunks.length);
    for (const chunk of chunks) {
      const queued = await suite.api.deps.queue.getJob(chunk.id);
      expect(queued?.data).toEqual({ modelVersionId: expect.any(String), chunks: [{ chunkId: chunk.id, jobId: job.id }] });
      // Every chunk carries its lane's priority, so BullMQ holds it as "prioritized" until taken.
      expect(await queued?.getState()).toBe("prioritized");
      expect(queued?.opts.priority).toBe(1 + chunk.seq);
    }
  });
});

describe("single-row jobs submitted together", () => {
  it("share BullMQ jobs: every chunk is carried by exactly one, of its lane's priority", async () => {
    const jobs = await Promise.all(
      Array.from({ length: 20 }, async () => expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "iris", inputs: irisRows(1) }), 202)),
    );
    const chunks = await suite.api.db.prisma.jobChunk.findMany({ where: { jobId: { in: jobs.map((job) => job.id) } } });
    expect(chunks).toHaveLength(20);
    const carried = new Map<string, string>();
    for (const queueJobId of new Set(chunks.map((chunk) => chunk.queueJobId ?? chunk.id))) {
      const queued = await suite.api.deps.queue.getJob(queueJobId);
      expect(queued?.opts.priority).toBe(1);
      for (const { chunkId, jobId } of queued?.data.chunks ?? []) {
        expect(carried.has(chunkId)).toBe(false);
        carried.set(chunkId, jobId);
      }
    }
    expect(new Map(chunks.map((chunk) => [chunk.id, chunk.jobId]))).toEqual(carried);
    // Those that arrived while the first was being written went together.
    expect(new Set(chunks.map((chunk) => chunk.queueJobId ?? chunk.id)).size).toBeLessThan(20);
  });
});

describe("POST /v1/jobs refuses", () => {
  it("an unknown version with 404", async () => {
    const problem = await expectProblem(await submitJob(suite.api, suite.auth, { model: "iris@9", inputs: irisRows(1) }), 404, "not_found");
    expect(problem.detail).toContain("9");
  });

  it("an unknown model with 404", async () => {
    const problem = await expectProblem(await submitJob(suite.api, suite.auth, { model: "no-such-model", inputs: irisRows(1) }), 404, "not_found");
    expect(problem.detail).toContain("no-such-model");
  });

  const cases: [string, unknown, string[]][] = [
    ["a missing input", { model: "iris", inputs: [...irisRows(1), {}] }, ["inputs[1].features"]],
    [
      "a row of the wrong length",
      { model: "iris", inputs: [...irisRows(17), { features: [5.1, 3.5, 1.4] }] },
      ["inputs[17].features"],
    ],
    ["a string in the array", { model: "iris", inputs: [{ features: [5.1, "3.5", 1.4, 0.2] }] }, ["inputs[0].features[1]"]],
    ["a number outside the float32 range", { model: "iris", inputs: [{ features: [5.1, 3.5, 1e39, 0.2] }] }, ["inputs[0].features[2]"]],
    ["null in the array", { model: "iris", inputs: [{ features: [5.1, null, 1.4, 0.2] }] }, ["inputs[0].features[1]"]],
    ["a scalar for an array", { model: "iris", inputs: [{ features: 5.1 }] }, ["inputs[0].features"]],
    ["one level too deep", { model: "iris", inputs: [{ features: [[5.1, 3.5, 1.4, 0.2]] }] }, ["inputs[0].features"]],
    [
      "arrays where numbers belong",
      { model: "iris", inputs: [{ features: [[5.1], [3.5], [1.4], [0.2]] }] },
      ["inputs[0].features[0]", "inputs[0].features[1]", "inputs[0].features[2]", "inputs[0].features[3]"],
    ],
    ["an unknown extra key", { model: "iris", inputs: [{ ...irisRows(1)[0], petal_colour: "blue" }] }, ["inputs[0].petal_colour"]],
    ["a row that is not an object", { model: "iris", inputs: [...irisRows(2), [5.1, 3.5, 1.4, 0.2]] }, ["inputs[2]"]],
    ["a row that is a number", { model: "iris", inputs: [42] }, ["inputs[0]"]],
    ["an empty inputs array", { model: "iris", inputs: [] }, ["inputs"]],
    ["inputs that are not an array", { model: "iris", inputs: { features: [1, 2, 3, 4] } }, ["inputs"]],
    ["a missing inputs field", { model: "iris" }, ["inputs"]],
    ["a missing model field", { inputs: irisRows(1) }, ["model"]],
    ["a malformed model reference", { model: "Iris@one", inputs: irisRows(1) }, ["model"]],
    ["version 0", { model: "iris@0", inputs: irisRows(1) }, ["model"]],
    ["a body that is an array", [{ model: "iris", inputs: irisRows(1) }], ["body"]],
  ];

  it.each(cases)("%s with 422 naming the place", async (_, body, fields) => {
    const before = await jobIds();
    const problem = await expectProblem(await submitJob(suite.api, suite.auth, body), 422, "validation_failed");
    expect(errorFields(problem)).toEqual(fields);
    for (const error of problem.errors ?? []) expect(error.message).toMatch(/\S/);
    const firstField = fields[0];
    if (firstField) expect(problem.detail).toContain(`${firstField}: `);
    // Nothing was stored: no new job appears.
    expect(await jobIds()).toEqual(before);
  });

  it("every bad row, naming each one", async () => {
    const inputs = [...irisRows(5), { features: [1, 2] }, ...irisRows(3), { features: [1, 2, 3, 4, 5] }];
    const problem = await expectProblem(await submitJob(suite.api, suite.auth, { model: "iris", inputs }), 422, "validation_failed");
    expect(errorFields(problem)).toEqual(["inputs[5].features", "inputs[9].features"]);
    expect(problem.detail).toContain("inputs[5].features: expected 4 values, got 2");
  });

  it("a malformed JSON body with 400 invalid_json", async () => {
    const problem = await expectProblem(await submitJob(suite.api, suite.auth, '{"model": "iris", "inputs": [{'), 400, "invalid_json");
    expect(problem.detail).toMatch(/json/i);
  });

  it("a text/plain body with 415 unsupported_media_type", async () => {
    const body = JSON.stringify({ model: "iris", inputs: irisRows(1) });
    const response = await requestJson(suite.api, suite.auth, "POST", "/v1/jobs", body, { "Content-Type": "text/plain" });
    const problem = await expectProblem(response, 415, "unsupported_media_type");
    expect(problem.detail).toContain("application/json");
  });

  it("a request without a body with 422 naming both fields", async () => {
    const before = await jobIds();
    const response = await suite.api.app.request("/v1/jobs", { method: "POST", headers: { Authorization: suite.auth } });
    const problem = await expectProblem(response, 422, "validation_failed");
    expect(errorFields(problem)).toEqual(["model", "inputs"]);
    expect(await jobIds()).toEqual(before);
  });
});

describe("POST /v1/jobs limits", () => {
  let bodyLimited: TestApi;
  let rowLimited: TestApi;
  beforeAll(() => {
    bodyLimited = createTestApi(suite.services, { maxBodyBytes: 2048 });
    rowLimited = createTestApi(suite.services, { maxJobRows: 20 });
  });
  afterAll(async () => {
    await bodyLimited?.close();
    await rowLimited?.close();
  });

  // Valid in every way but its size.
  const bigBody = JSON.stringify({ model: "iris", inputs: irisRows(100) });

  it("accepts a body under maxBodyBytes", async () => {
    const body = JSON.stringify({ model: "iris", inputs: irisRows(2) });
    await expectJson(await requestJson(bodyLimited, suite.auth, "POST", "/v1/jobs", body), 202);
  });

  it("refuses a body over maxBodyBytes sent with Content-Length with 413 payload_too_large", async () => {
    expect(bigBody.length).toBeGreaterThan(2048);
    const before = await jobIds();
    const response = await requestJson(bodyLimited, suite.auth, "POST", "/v1/jobs", bigBody, { "Content-Length": String(bigBody.length) });
    const problem = await expectProblem(response, 413, "payload_too_large");
    expect(problem.detail).toContain("2048");
    expect(await jobIds()).toEqual(before);
  });

  it("refuses a body over maxBodyBytes streamed without Content-Length (chunked) with 413 payload_too_large", async () => {
    const before = await jobIds();
    const response = await requestJson(bodyLimited, suite.auth, "POST", "/v1/jobs", bigBody);
    await expectProblem(response, 413, "payload_too_large");
    expect(await jobIds()).toEqual(before);
  });

  it("refuses more rows than maxJobRows with 422 naming `inputs`", async () => {
    const before = await jobIds();
    const problem = await expectProblem(await submitJob(rowLimited, suite.auth, { model: "iris", inputs: irisRows(21) }), 422, "validation_failed");
    expect(errorFields(problem)).toEqual(["inputs"]);
    expect(problem.detail).toContain("20");
    expect(await jobIds()).toEqual(before);
  });

  it("accepts exactly maxJobRows rows", async () => {
    const job = await expectJson<Job>(await submitJob(rowLimited, suite.auth, { model: "iris", inputs: irisRows(20) }), 202);
    expect(job.counts.total).toBe(20);
  });
});
