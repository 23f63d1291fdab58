// The Open Inference Protocol (KServe V2) REST routes against a real worker: tensors in, the same
// engine as /v1 predict, tensors out; and every error in the protocol's `{"error": "..."}` form.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { buildIdentityModel } from "../../packages/models/src/tiny-onnx.ts";
import { addModel } from "../support/predict.ts";
import { expectJson, requestJson, uploadModel } from "../support/http.ts";
import { irisInputs, useIrisSuite } from "../support/iris-suite.ts";
import { createTestApi, createTestServices } from "../support/services.ts";
import { startTestWorker } from "../support/worker.ts";

const suite = useIrisSuite("predict-v2");

let worker: RunningWorker;
beforeAll(async () => {
  expect((await uploadModel(suite.api, suite.auth, "ids", buildIdentityModel("int64", ["batch", 2]))).status).toBe(201);
  expect((await uploadModel(suite.api, suite.auth, "add", addModel)).status).toBe(201);
  worker = await startTestWorker(suite.services);
});
afterAll(async () => {
  await worker?.close();
});

type InferResponse = { model_name: string; model_version: string; id?: string; outputs: { name: string; shape: number[]; datatype: string; data: unknown[] }[] };

function infer(body: unknown, path = "/v2/models/iris/infer", headers: Record<string, string> = {}): Promise<Response> {
  return requestJson(suite.api, suite.auth, "POST", path, body, headers);
}

/** What a V2 client sees of an error: the status, application/json, `{"error"}` and nothing else. */
async function expectV2Error(response: Response, status: number, message: RegExp | string): Promise<string> {
  const text = await response.text();
  expect(response.status, text).toBe(status);
  expect(response.headers.get("content-type")).toMatch(/^application\/json/);
  const body = JSON.parse(text) as { error: string };
  expect(Object.keys(body)).toEqual(["error"]);
  if (typeof message === "string") expect(body.error).toBe(message);
  else expect(body.error).toMatch(message);
  expect(body.error).not.toMatch(/\n\s+at /);
  return body.error;
}

const irisTensor = (rows: { features: number[] }[]) => ({ name: "features", datatype: "FP32", shape: [rows.length, 4], data: rows.flatMap((row) => row.features) });

describe("V2 inference", () => {
  it("answers iris exactly as /v1 predict does for the same rows", async () => {
    const rows = irisInputs(suite, 5);
    const v1 = await expectJson<{ outputs: { outputs: { label: number; probabilities: number[] } }[] }>(
      await requestJson(suite.api, suite.auth, "POST", "/v1/models/iris/predict", { inputs: rows }, { "Cache-Control": "no-store" }),
      200,
    );
    const response = await infer({ inputs: [irisTensor(rows)] }, "/v2/models/iris/infer", { "Cache-Control": "no-store" });
    const v2 = await expectJson<InferResponse>(response, 200);
    expect(v2.model_name).toBe("iris");
    expect(v2.model_version).toBe("1");
    expect(v2).not.toHaveProperty("id");
    const byName = Object.fromEntries(v2.outputs.map((output) => [output.name, output]));
    expect(byName.label).toEqual({ name: "label", datatype: "INT64", shape: [5], data: v1.outputs.map((row) => row.outputs.label) });
    expect(byName.probabilities).toEqual({ name: "probabilities", datatype: "FP32", shape: [5, 3], data: v1.outputs.flatMap((row) => row.outputs.probabilities) });
  });

  it("takes nested data to the same answer as flat data, echoes id, and returns only the outputs asked for", async () => {
    const rows = irisInputs(suite, 3);
    const flat = await expectJson<InferResponse>(await infer({ id: "flat", inputs: [irisTensor(rows)], outputs: [{ name: "probabilities" }] }), 200);
    const nested = await expectJson<InferResponse>(
      await infer({ id: "nested-42", inputs: [{ name: "features", datatype: "FP32", shape: [3, 4], data: rows.map((row) => row.features) }], outputs: [{ name: "probabilities" }] }),
      200,
    );
    expect(flat.id).toBe("flat");
    expect(nested.id).toBe("nested-42");
    expect(nested.outputs).toEqual(flat.outputs);
    expect(nested.outputs.map((output) => output.name)).toEqual(["probabilities"]);
  });

  it("runs the versioned route and sets Coalesce-Cache as /v1 does", async () => {
    const body = { inputs: [irisTensor(irisInputs(suite, 2))] };
    const first = await infer(body, "/v2/models/iris/versions/1/infer", { "Cache-Control": "no-cache" });
    expect(first.headers.get("coalesce-cache")).toBe("miss");
    const again = await infer(body, "/v2/models/iris/versions/1/infer");
    expect(again.headers.get("coalesce-cache")).toBe("hit");
    expect(await expectJson(again, 200)).toEqual(await expectJson(first, 200));
  });

  it("takes INT64 as numbers and decimal strings and answers exact JSON integers beyond 2^53", async () => {
    const data = [1, "9007199254740993", -7, "-9223372036854775808"];
    const response = await infer({ inputs: [{ name: "x", datatype: "INT64", shape: [2, 2], data }] }, "/v2/models/ids/infer");
    const text = await response.text();
    expect(response.status, text).toBe(200);
    expect(text).toContain('"data":[1,9007199254740993,-7,-9223372036854775808]');
    expect(JSON.parse(text)).toMatchObject({ model_name: "ids", outputs: [{ name: "y", datatype: "INT64", shape: [2, 2] }] });
  });
});

describe("V2 inference refusals", () => {
  const features = { name: "features", datatype: "FP32", shape: [1, 4], data: [5.1, 3.5, 1.4, 0.2] };

  it("answers 400 {error} naming the input for a bad datatype, shape, element count, unknown or missing input, unknown output", async () => {
    await expectV2Error(await infer({ inputs: [{ ...features, datatype: "FP64" }] }), 400, "input 'features' has datatype FP64, but the model takes FP32");
    await expectV2Error(await infer({ inputs: [{ ...features, shape: [1, 3], data: [1, 2, 3] }] }), 400, /input 'features' has shape \[1, 3\], which does not fit the model's \[-1, 4\]/);
    await expectV2Error(await infer({ inputs: [{ ...features, shape: [2, 4] }] }), 400, "input 'features' has 4 elements in data, but its shape [2, 4] holds 8");
    await expectV2Error(await infer({ inputs: [features, { ...features, name: "petals" }] }), 400, "unknown input 'petals'; the model's inputs are: features");
    await expectV2Error(await infer({ inputs: [] }), 400, "missing input 'features'; the model's inputs are: features");
    await expectV2Error(await infer({ inputs: [features], outputs: [{ name: "score" }] }), 400, /^unknown output 'score'; the model's outputs are: /);
  });

  it("answers 400 for an element of the wrong type, a body that fails its schema, malformed JSON, a malformed version and more rows than PREDICT_MAX_ROWS; 413 for a body too large", async () => {
    await expectV2Error(await infer({ inputs: [{ ...features, data: [1, 2, "x", 4] }] }), 400, "input 'features' [0][2]: expected a number, got the string \"x\"");
    await expectV2Error(await infer({ inputs: [{ ...features, shape: "1x4" }] }), 400, /inputs\[0\]\.shape/);
    await expectV2Error(await infer("{\"inputs\": ["), 400, /not valid JSON/);
    await expectV2Error(await requestJson(suite.api, suite.auth, "GET", "/v2/models/iris/versions/latest"), 400, /^version: /);
    await expectV2Error(await infer(" ".repeat(suite.api.deps.limits.maxBodyBytes + 1)), 413, /larger than the limit/);
    const rows = irisInputs(suite, suite.api.deps.predict.settings.maxRows + 1);
    await expectV2Error(await infer({ inputs: [irisTensor(rows)] }), 400, /at most 1024 rows \(PREDICT_MAX_ROWS\)/);
  });

  it("answers 400 `row i: ...` when a row's inference fails, since a tensor cannot hold a hole; symbolic dimensions take any size", async () => {
    const a = { name: "a", datatype: "FP32", shape: [2, 2], data: [1, 2, 3, 4] };
    const fine = await expectJson<InferResponse>(await infer({ inputs: [a, { name: "b", datatype: "FP32", shape: [2, 2], data: [10, 20, 30, 40] }] }, "/v2/models/add/infer"), 200);
    expect(fine.outputs).toEqual([{ name: "y", datatype: "FP32", shape: [2, 2], data: [11, 22, 33, 44] }]);
    const failed = await infer({ inputs: [a, { name: "b", datatype: "FP32", shape: [2, 3], data: [1, 2, 3, 4, 5, 6] }] }, "/v2/models/add/infer");
    await expectV2Error(failed, 400, /^row 0: .+ \(and 1 more row failed\)$/);
  });

  it("refuses the binary tensor extension with a 400 that says so", async () => {
    await expectV2Error(await infer({ inputs: [{ ...features, parameters: { binary_data_size: 16 } }] }), 400, /binary tensor extension is not supported/);
    const binary = await suite.api.app.request("/v2/models/iris/infer", {
      method: "POST",
      headers: { Authorization: suite.auth, "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "2" },
      body: "{}\u0000\u0000",
    });
    await expectV2Error(binary, 400, /binary tensor extension is not supported/);
  });

  it("answers 404 {error} for an unknown model or version, and for an unknown route under /v2", async () => {
    await expectV2Error(await infer({ inputs: [features] }, "/v2/models/nope/infer"), 404, /no model named 'nope'/);
    await expectV2Error(await infer({ inputs: [features] }, "/v2/models/iris/versions/7/infer"), 404, "model 'iris' has no version 7");
    await expectV2Error(await requestJson(suite.api, suite.auth, "GET", "/v2/models/nope"), 404, /no model named 'nope'/);
    await expectV2Error(await requestJson(suite.api, suite.auth, "GET", "/v2/models/iris/versions/7"), 404, "model 'iris' has no version 7; its versions are 1");
    await expectV2Error(await requestJson(suite.api, suite.auth, "GET", "/v2/models/nope/ready"), 404, /no model named 'nope'/);
    await expectV2Error(await requestJson(suite.api, null, "GET", "/v2/nothing-here"), 404, /no route for GET \/v2\/nothing-here/);
  });

  it("answers 401 {error} with WWW-Authenticate without a valid key", async () => {
    const none = await requestJson(suite.api, null, "POST", "/v2/models/iris/infer", { inputs: [features] });
    expect(none.headers.get("www-authenticate")).toMatch(/^Bearer/);
    await expectV2Error(none, 401, /Authorization: Bearer <key>/);
    await expectV2Error(await requestJson(suite.api, "Bearer csk_not_a_key", "GET", "/v2/models/iris"), 401, /not valid/);
  });
});

describe("V2 metadata and health", () => {
  it("describes a model: its versions, platform, and tensors with -1 for the batch dimension", async () => {
    const metadata = await expectJson(await requestJson(suite.api, suite.auth, "GET", "/v2/models/iris"), 200);
    expect(metadata).toMatchObject({ name: "iris", versions: ["1"], platform: "onnxruntime_onnx", inputs: [{ name: "features", datatype: "FP32", shape: [-1, 4] }] });
    expect(metadata.outputs).toEqual(
      expect.arrayContaining([
        { name: "label", datatype: "INT64", shape: [-1] },
        { name: "probabilities", datatype: "FP32", shape: [-1, 3] },
      ]),
    );
    expect(await expectJson(await requestJson(suite.api, suite.auth, "GET", "/v2/models/iris/versions/1"), 200)).toEqual(metadata);
    expect(await expectJson(await requestJson(suite.api, suite.auth, "GET", "/v2/models/ids"), 200)).toMatchObject({
      inputs: [{ name: "x", datatype: "INT64", shape: [-1, 2] }],
      outputs: [{ name: "y", datatype: "INT64", shape: [-1, 2] }],
    });
  });

  it("says a model is ready while a worker serves predictions", async () => {
    expect(await expectJson(await requestJson(suite.api, suite.auth, "GET", "/v2/models/iris/ready"), 200)).toEqual({ name: "iris", ready: true });
    expect(await expectJson(await requestJson(suite.api, suite.auth, "GET", "/v2/models/iris/versions/1/ready"), 200)).toEqual({ name: "iris", ready: true });
  });

  it("answers server metadata, live and ready without a key", async () => {
    const metadata = await expectJson(await requestJson(suite.api, null, "GET", "/v2"), 200);
    expect(metadata).toEqual({ name: "coalesce", version: expect.stringMatching(/^\d+\.\d+\.\d+/) as string, extensions: [] });
    expect(await expectJson(await requestJson(suite.api, null, "GET", "/v2/"), 200)).toEqual(metadata);
    expect(await expectJson(await requestJson(suite.api, null, "GET", "/v2/health/live"), 200)).toEqual({ live: true });
    expect(await expectJson(await requestJson(suite.api, null, "GET", "/v2/health/ready"), 200)).toEqual({ ready: true });
  });

  it("is not ready, server or model, where no worker serves predictions", async () => {
    const services = await createTestServices();
    const api = createTestApi(services);
    try {
      const auth = await api.createTenant("v2-no-worker");
      expect((await uploadModel(api, auth, "ids", buildIdentityModel("int64", ["batch", 2]))).status).toBe(201);
      const server = await requestJson(api, null, "GET", "/v2/health/ready");
      expect(server.headers.get("retry-after")).toBe("5");
      expect(await expectJson(server, 503)).toEqual({ ready: false });
      expect(await expectJson(await requestJson(api, auth, "GET", "/v2/models/ids/ready"), 503)).toEqual({ name: "ids", ready: false });
      const refused = await requestJson(api, auth, "POST", "/v2/models/ids/infer", { inputs: [{ name: "x", datatype: "INT64", shape: [1, 2], data: [1, 2] }] });
      expect(refused.headers.get("retry-after")).toBe("5");
      await expectV2Error(refused, 503, /no worker is running/);
    } finally {
      await api.close();
      await services.cleanup();
    }
  });
});
