// The input types exported models use beside float32/int64 (int8, int16, uint8, uint16, float16,
// string) end to end on the real services: registered through the API, a JSON job and a CSV upload
// scored by a worker (rows packed into Postgres and back), results read through the API; predict and
// V2 infer for strings and float16; and the 4xx each wrong value gets, naming the field and the row.
import type { Job, JobResults, PredictResponse } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { buildIdentityModel, buildStringMatchModel, type ElemTypeName } from "../../packages/models/src/tiny-onnx.ts";
import { useApiSuite } from "../support/api-suite.ts";
import { errorFields, expectJson, expectProblem, get, requestJson, submitJob, uploadModel, waitForJob } from "../support/http.ts";
import { startTestWorker } from "../support/worker.ts";

// Three rows a chunk, so a job of a few rows spans chunks and its rows meet again in the batcher.
const suite = useApiSuite("input-types", { limits: { chunkRows: 3 } });
let worker: RunningWorker;

const NUMERIC_TYPES = ["int8", "uint8", "int16", "uint16", "float16"] as const satisfies readonly ElemTypeName[];

beforeAll(async () => {
  for (const type of NUMERIC_TYPES) {
    const registered = await expectJson<{ inputs: unknown }>(await uploadModel(suite.api, suite.auth, `id-${type}`, buildIdentityModel(type, ["batch", 2])), 201);
    expect(registered.inputs).toEqual([{ name: "x", type, shape: ["batch", 2] }]);
  }
  expect((await uploadModel(suite.api, suite.auth, "words", buildStringMatchModel("cat"))).status).toBe(201);
  worker = await startTestWorker(suite.services);
});
afterAll(async () => {
  await worker?.close();
});

type Outputs = Record<string, unknown>;

/** A job's results once it has finished: each row's outputs (or error), with its CSV id where it has one. */
async function finished(response: Response): Promise<{ job: Job; rows: JobResults["data"] }> {
  const accepted = await expectJson<Job>(response, 202);
  const job = await waitForJob(suite.api, suite.auth, accepted.id);
  const results = await expectJson<JobResults>(await get(suite.api, suite.auth, `/v1/jobs/${job.id}/results?limit=1000`), 200);
  return { job, rows: results.data };
}

async function scoreJson(model: string, inputs: unknown[]): Promise<Outputs[]> {
  const { job, rows } = await finished(await submitJob(suite.api, suite.auth, { model, inputs }));
  expect(job).toMatchObject({ status: "succeeded", counts: { succeeded: inputs.length, failed: 0 } });
  return rows.map((row) => row.outputs as Outputs);
}

function uploadCsv(query: string, csv: string): Promise<Response> {
  return Promise.resolve(
    suite.api.app.request(`/v1/jobs?${query}`, { method: "POST", headers: { Authorization: suite.auth, "Content-Type": "text/csv" }, body: csv }),
  );
}

/** Each type's JSON rows and what comes back: itself, except float16, rounded to the nearest half. */
const CASES: Record<(typeof NUMERIC_TYPES)[number], { rows: number[][]; expected?: number[][]; csv: string; csvExpected: number[][] }> = {
  int8: { rows: [[-128, 127], [0, -1], [5, 6], [-7, 8]], csv: "-128,127\n3,-4", csvExpected: [[-128, 127], [3, -4]] },
  uint8: { rows: [[0, 255], [7, 8], [128, 1], [2, 3]], csv: "0,255\n17,18", csvExpected: [[0, 255], [17, 18]] },
  int16: { rows: [[-32768, 32767], [0, -1], [300, -300], [1, 2]], csv: "-32768,32767\n-5,5", csvExpected: [[-32768, 32767], [-5, 5]] },
  uint16: { rows: [[0, 65535], [1000, 2], [3, 4], [5, 6]], csv: "65535,0\n40000,1", csvExpected: [[65535, 0], [40000, 1]] },
  float16: {
    // 0.1 is 0.0999755859375 in half precision, 1e-8 below its smallest subnormal, 2049 a tie that goes to even.
    rows: [[0.1, -2.5], [65504, -65504], [1e-8, 2049], [1, 0.5]],
    expected: [[0.0999755859375, -2.5], [65504, -65504], [0, 2048], [1, 0.5]],
    csv: "0.1,-2.5\n3.14159,1e-3",
    csvExpected: [[0.0999755859375, -2.5], [3.140625, 0.0010004043579101562]],
  },
};

describe("numeric input types", () => {
  it.each(NUMERIC_TYPES)("%s: a JSON job and a CSV upload come back as sent (float16 as its nearest half)", async (type) => {
    const { rows, expected = rows, csv, csvExpected } = CASES[type];
    const outputs = await scoreJson(`id-${type}`, rows.map((x) => ({ x })));
    expect(outputs).toEqual(expected.map((y) => ({ y })));

    const lines = csv.split("\n").map((line, i) => `r${i},${line}`);
    const upload = await finished(await uploadCsv(`model=id-${type}&id_column=id`, ["id,a,b", ...lines].join("\n")));
    expect(upload.job).toMatchObject({ status: "succeeded", counts: { succeeded: csvExpected.length, failed: 0 } });
    expect(upload.rows.map((row) => ({ id: row.id, outputs: row.outputs }))).toEqual(csvExpected.map((y, i) => ({ id: `r${i}`, outputs: { y } })));
  });

  it("float16 through predict: the same answer as the job path", async () => {
    const inputs = [{ x: [0.1, 3.14159] }, { x: [-1e-5, 60000] }];
    const answer = await expectJson<PredictResponse>(await requestJson(suite.api, suite.auth, "POST", "/v1/models/id-float16/predict", { inputs }), 200);
    expect(answer.outputs).toEqual([
      { index: 0, outputs: { y: [0.0999755859375, 3.140625] } },
      { index: 1, outputs: { y: [-0.000010013580322265625, 60000] } },
    ]);
    expect(answer.outputs.map((row) => ("outputs" in row ? row.outputs : null))).toEqual(await scoreJson("id-float16", inputs));
  });
});

describe("string inputs", () => {
  const rows = [
    { x: ["cat", "dog"] },
    { x: ["", "héllo 🙂"] },
    { x: ["cat"] }, // another length of the open dimension: a batch of its own
    { x: ["a, \"quoted\"\nline", "cat"] },
    { x: ["é".repeat(32 * 1024), "Cat"] }, // 64 KiB of UTF-8, the most an element may hold
  ];
  const expected = rows.map(({ x }) => ({ y: x, is_cat: x.map((word) => (word === "cat" ? 1 : 0)) }));

  it("a JSON job: onnxruntime reads each string as sent, and strings come back as JSON strings", async () => {
    expect(await scoreJson("words", rows)).toEqual(expected);
  });

  it("a CSV upload: each cell taken as it is, quotes undone, spaces and empty cells kept", async () => {
    const csv = 'id,w1,w2\nr0,cat,dog\nr1,, spaced \nr2,"a, ""quoted""\nline",cat\n';
    const upload = await finished(await uploadCsv("model=words&id_column=id", csv));
    expect(upload.job).toMatchObject({ status: "succeeded", counts: { succeeded: 3, failed: 0 } });
    expect(upload.rows.map((row) => ({ id: row.id, outputs: row.outputs }))).toEqual([
      { id: "r0", outputs: { y: ["cat", "dog"], is_cat: [1, 0] } },
      { id: "r1", outputs: { y: ["", " spaced "], is_cat: [0, 0] } },
      { id: "r2", outputs: { y: ['a, "quoted"\nline', "cat"], is_cat: [0, 1] } },
    ]);
  });

  it("predict and V2 infer (BYTES) answer as the job does", async () => {
    const predict = (inputs: unknown[]) => requestJson(suite.api, suite.auth, "POST", "/v1/models/words/predict", { inputs });
    const predicted = await expectJson<PredictResponse>(await predict(rows), 200);
    expect(predicted.outputs).toEqual(expected.map((outputs, index) => ({ index, outputs })));
    // Asked again, from the result cache (whose keys hash each row's strings): the same strings. The
    // 64 KiB row's answer is beyond PREDICT_CACHE_MAX_ENTRY_BYTES, so it is left out here.
    const cached = await predict(rows.slice(0, 4));
    expect(cached.headers.get("coalesce-cache")).toBe("hit");
    expect((await expectJson<PredictResponse>(cached, 200)).outputs).toEqual(predicted.outputs.slice(0, 4));
    // Strings split otherwise are other rows, not cache hits.
    const resplit = await expectJson<PredictResponse>(await predict([{ x: ["ca", "tdog"] }]), 200);
    expect(resplit.outputs).toEqual([{ index: 0, outputs: { y: ["ca", "tdog"], is_cat: [0, 0] } }]);

    const tensor = { name: "x", datatype: "BYTES", shape: [2, 2], data: ["cat", "dog", "ünï", "cat"] };
    const v2 = await expectJson<{ outputs: { name: string; datatype: string; shape: number[]; data: unknown[] }[] }>(
      await requestJson(suite.api, suite.auth, "POST", "/v2/models/words/infer", { inputs: [tensor] }),
      200,
    );
    expect(v2.outputs).toEqual([
      { name: "y", datatype: "BYTES", shape: [2, 2], data: ["cat", "dog", "ünï", "cat"] },
      { name: "is_cat", datatype: "INT64", shape: [2, 2], data: [1, 0, 0, 1] },
    ]);
  });
});

describe("values a type cannot take", () => {
  async function refused(model: string, inputs: unknown[]): Promise<{ field: string; message: string }[]> {
    const problem = await expectProblem(await submitJob(suite.api, suite.auth, { model, inputs }), 422, "validation_failed");
    expect(errorFields(problem).length).toBeGreaterThan(0);
    return problem.errors ?? [];
  }

  it("a JSON job is refused with a 422 naming the row and the element, and nothing is stored", async () => {
    expect(await refused("id-int8", [{ x: [1, 2] }, { x: [200, 1.5] }])).toEqual([
      { field: "inputs[1].x[0]", message: "200 is outside the int8 range (-128 to 127)" },
      { field: "inputs[1].x[1]", message: "expected an integer, got 1.5" },
    ]);
    expect(await refused("id-uint16", [{ x: [1.5, -1] }])).toEqual([
      { field: "inputs[0].x[0]", message: "expected an integer, got 1.5" },
      { field: "inputs[0].x[1]", message: "-1 is outside the uint16 range (0 to 65535)" },
    ]);
    expect(await refused("id-float16", [{ x: [1, 2] }, { x: [70000, "1"] }])).toEqual([
      { field: "inputs[1].x[0]", message: "70000 is outside the float16 range (±65504)" },
      { field: "inputs[1].x[1]", message: 'expected a number, got the string "1"' },
    ]);
    expect(await refused("id-int16", [{ x: ["5", true] }])).toEqual([
      { field: "inputs[0].x[0]", message: 'expected an integer, got the string "5"' },
      { field: "inputs[0].x[1]", message: "expected an integer, got true" },
    ]);
    expect(await refused("words", [{ x: ["ok"] }, { x: [5, true] }, { x: ["a\u0000b"] }, { x: ["x".repeat(65537)] }])).toEqual([
      { field: "inputs[1].x[0]", message: "expected a string, got 5" },
      { field: "inputs[1].x[1]", message: "expected a string, got true" },
      { field: "inputs[2].x[0]", message: 'the string "a\\u0000b" holds a NUL character, which onnxruntime cannot take inside a string' },
      { field: "inputs[3].x[0]", message: "a string of 65537 bytes (UTF-8) is longer than the 65536 bytes a string element may have" },
    ]);
    const jobs = await expectJson<{ data: unknown[] }>(await get(suite.api, suite.auth, "/v1/jobs?limit=100"), 200);
    const before = jobs.data.length;
    await refused("id-uint8", [{ x: [256, 0] }]);
    expect((await expectJson<{ data: unknown[] }>(await get(suite.api, suite.auth, "/v1/jobs?limit=100"), 200)).data).toHaveLength(before);
  });

  it("predict refuses the same values with the same 422", async () => {
    const problem = await expectProblem(await requestJson(suite.api, suite.auth, "POST", "/v1/models/id-int8/predict", { inputs: [{ x: [-129, 0] }] }), 422, "validation_failed");
    expect(problem.errors).toEqual([{ field: "inputs[0].x[0]", message: "-129 is outside the int8 range (-128 to 127)" }]);
  });

  it("a CSV cell that does not fit fails its row, naming the line and the column; the others are scored", async () => {
    const upload = await finished(await uploadCsv("model=id-int8&id_column=id", "id,a,b\nr0,1,2\nr1,200,3\nr2,4,1.5\nr3,-5,6\n"));
    expect(upload.job).toMatchObject({ status: "succeeded", counts: { succeeded: 2, failed: 2 } });
    expect(upload.rows.map((row) => ({ id: row.id, outputs: row.outputs, error: row.error }))).toEqual([
      { id: "r0", outputs: { y: [1, 2] }, error: undefined },
      { id: "r1", outputs: undefined, error: { code: "invalid_row", message: "line 3, column 'a': 200 is out of int8 range" } },
      { id: "r2", outputs: undefined, error: { code: "invalid_row", message: "line 4, column 'b': '1.5' is not an integer" } },
      { id: "r3", outputs: { y: [-5, 6] }, error: undefined },
    ]);
  });
});
