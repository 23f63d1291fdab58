import type { Model, ModelList, ModelVersion } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorFields, expectJson, expectProblem, fixture, get, requestJson, sha256, uploadModel } from "../support/http.ts";
import { useApiSuite } from "../support/api-suite.ts";
import { createTestApi, type TestApi } from "../support/services.ts";

const IRIS = fixture("iris.onnx");
const DIGITS = fixture("digits.onnx");

const IRIS_SIGNATURE = {
  inputs: [{ name: "features", type: "float32", shape: ["batch", 4] }],
  outputs: [
    { name: "probabilities", type: "float32", shape: ["batch", 3] },
    { name: "label", type: "int64", shape: ["batch"] },
  ],
};

const suite = useApiSuite("models");

describe("POST /v1/models/{name}/versions", () => {
  // These run in order: each builds on the versions the previous one registered.
  it("registers the first version with the model's signature", async () => {
    const version = await expectJson<ModelVersion>(await uploadModel(suite.api, suite.auth, "iris", IRIS), 201);
    expect(version).toEqual({
      name: "iris",
      version: 1,
      sha256: sha256(IRIS),
      size_bytes: IRIS.byteLength,
      ...IRIS_SIGNATURE,
      batching: { max_batch_rows: null, max_batch_delay_ms: null, max_batch_bytes: null },
      description: null,
      labels: {},
      aliases: [],
      shadow_of: [],
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as string,
    });
  });

  it("registers a different file under the same name as the next version", async () => {
    const version = await expectJson<ModelVersion>(await uploadModel(suite.api, suite.auth, "iris", DIGITS), 201);
    expect(version).toMatchObject({
      name: "iris",
      version: 2,
      sha256: sha256(DIGITS),
      size_bytes: DIGITS.byteLength,
      inputs: [{ name: "features", type: "float32", shape: ["batch", 64] }],
    });
  });

  it("answers 200 with the latest version when the same bytes are uploaded again", async () => {
    const version = await expectJson<ModelVersion>(await uploadModel(suite.api, suite.auth, "iris", DIGITS), 200);
    expect(version).toMatchObject({ name: "iris", version: 2, sha256: sha256(DIGITS) });
  });

  it("makes a new version of bytes that match an older version but not the latest", async () => {
    expect((await uploadModel(suite.api, suite.auth, "cycle", IRIS)).status).toBe(201);
    expect((await uploadModel(suite.api, suite.auth, "cycle", DIGITS)).status).toBe(201);
    const version = await expectJson<ModelVersion>(await uploadModel(suite.api, suite.auth, "cycle", IRIS), 201);
    expect(version).toMatchObject({ name: "cycle", version: 3, sha256: sha256(IRIS) });
  });

  it("accepts a content type with parameters", async () => {
    const response = await uploadModel(suite.api, suite.auth, "iris-params", IRIS, "application/octet-stream; charset=binary");
    expect(await expectJson<ModelVersion>(response, 201)).toMatchObject({ name: "iris-params", version: 1 });
  });

  it("refuses bytes that are not an ONNX model with 422 invalid_model", async () => {
    const garbage = new TextEncoder().encode("this is not an onnx model, just some text ".repeat(10));
    const problem = await expectProblem(await uploadModel(suite.api, suite.auth, "garbage", garbage), 422, "invalid_model");
    expect(problem.detail).toMatch(/onnx/i);
  });

  it("refuses an empty body with 422", async () => {
    const problem = await expectProblem(await uploadModel(suite.api, suite.auth, "empty", new Uint8Array(0)), 422, "invalid_model");
    expect(problem.detail).toMatch(/empty/);
  });

  it("refuses a JSON body with 415", async () => {
    const response = await uploadModel(suite.api, suite.auth, "iris", IRIS, "application/json");
    const problem = await expectProblem(response, 415, "unsupported_media_type");
    expect(problem.detail).toContain("application/octet-stream");
  });

  it("refuses a body without a content type with 415", async () => {
    const response = await suite.api.app.request("/v1/models/iris/versions", { method: "POST", headers: { Authorization: suite.auth }, body: IRIS });
    await expectProblem(response, 415, "unsupported_media_type");
  });

  it.each([
    ["spaces and punctuation", encodeURIComponent("Bad Name!")],
    ["upper case", "Iris"],
    ["a leading dot", ".iris"],
    ["65 characters", "a".repeat(65)],
  ])("refuses a model name with %s with 422 naming `name`", async (_, name) => {
    const problem = await expectProblem(await uploadModel(suite.api, suite.auth, name, IRIS), 422, "validation_failed");
    expect(errorFields(problem)).toEqual(["name"]);
    expect(problem.detail).toMatch(/^name: /);
  });

  it("stores nothing for a refused upload", async () => {
    const list = await expectJson<ModelList>(await get(suite.api, suite.auth, "/v1/models"), 200);
    expect(list.data.map((model) => model.name)).toEqual(["cycle", "iris", "iris-params"]);
  });
});

describe("batching limits per version", () => {
  const TINY = fixture("iris.onnx");
  const upload = (query: string) =>
    suite.api.app.request(`/v1/models/limited/versions?${query}`, {
      method: "POST",
      headers: { Authorization: suite.auth, "Content-Type": "application/octet-stream" },
      body: TINY,
    });
  const patch = (path: string, body: unknown) => requestJson(suite.api, suite.auth, "PATCH", path, body);

  it("are set at registration from the query and shown on the version", async () => {
    const version = await expectJson<ModelVersion>(await upload("max_batch_rows=32&max_batch_delay_ms=2"), 201);
    expect(version.batching).toEqual({ max_batch_rows: 32, max_batch_delay_ms: 2, max_batch_bytes: null });
    const model = await expectJson<Model>(await get(suite.api, suite.auth, "/v1/models/limited"), 200);
    expect(model.versions[0]?.batching).toEqual(version.batching);
  });

  it("apply to the existing version when the same bytes are registered again with limits", async () => {
    const again = await expectJson<ModelVersion>(await upload("max_batch_rows=16"), 200);
    expect(again).toMatchObject({ version: 1, batching: { max_batch_rows: 16, max_batch_delay_ms: 2, max_batch_bytes: null } });
  });

  it("refuses a limit out of range at registration with 422 naming it, storing nothing", async () => {
    const problem = await expectProblem(await upload("max_batch_rows=0&max_batch_delay_ms=abc"), 422, "validation_failed");
    expect(errorFields(problem).sort()).toEqual(["max_batch_delay_ms", "max_batch_rows"]);
    const model = await expectJson<Model>(await get(suite.api, suite.auth, "/v1/models/limited"), 200);
    expect(model.versions).toHaveLength(1);
  });

  it("change with PATCH: a key given changes, a key left out stays, null goes back to the workers' default", async () => {
    const changed = await expectJson<ModelVersion>(await patch("/v1/models/limited/versions/1", { batching: { max_batch_rows: 1, max_batch_bytes: 4096 } }), 200);
    expect(changed.batching).toEqual({ max_batch_rows: 1, max_batch_delay_ms: 2, max_batch_bytes: 4096 });
    const reset = await expectJson<ModelVersion>(await patch("/v1/models/limited/versions/1", { batching: { max_batch_delay_ms: null } }), 200);
    expect(reset.batching).toEqual({ max_batch_rows: 1, max_batch_delay_ms: null, max_batch_bytes: 4096 });
  });

  it("refuses a bad PATCH with 422 naming the field, and an unknown version with 404", async () => {
    const tooBig = await expectProblem(await patch("/v1/models/limited/versions/1", { batching: { max_batch_rows: 1_000_000 } }), 422, "validation_failed");
    expect(errorFields(tooBig)).toEqual(["batching.max_batch_rows"]);
    const unknown = await expectProblem(await patch("/v1/models/limited/versions/1", { batching: { max_rows: 3 } }), 422, "validation_failed");
    expect(errorFields(unknown)).toEqual(["batching.max_rows"]);
    await expectProblem(await patch("/v1/models/limited/versions/9", { batching: { max_batch_rows: 3 } }), 404, "not_found");
    await expectProblem(await patch("/v1/models/nothing-here/versions/1", { batching: { max_batch_rows: 3 } }), 404, "not_found");
  });
});

describe("GET /v1/models", () => {
  it("lists the caller's models by name with every version", async () => {
    const list = await expectJson<ModelList>(await get(suite.api, suite.auth, "/v1/models"), 200);
    const iris = list.data.find((model) => model.name === "iris");
    expect(iris).toMatchObject({ name: "iris", latest_version: 2 });
    expect(iris?.versions.map((v) => [v.version, v.sha256])).toEqual([
      [1, sha256(IRIS)],
      [2, sha256(DIGITS)],
    ]);
    expect(iris?.versions[0]).toMatchObject(IRIS_SIGNATURE);
  });
});

describe("GET /v1/models/{name}", () => {
  it("returns the model with its versions and signatures", async () => {
    const model = await expectJson<Model>(await get(suite.api, suite.auth, "/v1/models/iris"), 200);
    expect(model).toMatchObject({ name: "iris", latest_version: 2 });
    expect(model.versions).toHaveLength(2);
    expect(model.versions[0]).toMatchObject({ version: 1, size_bytes: IRIS.byteLength, ...IRIS_SIGNATURE });
  });

  it("answers 404 problem+json for an unknown model", async () => {
    const problem = await expectProblem(await get(suite.api, suite.auth, "/v1/models/no-such-model"), 404, "not_found");
    expect(problem.detail).toContain("no-such-model");
  });

  it("answers 422 naming `name` for an invalid name", async () => {
    const problem = await expectProblem(await get(suite.api, suite.auth, `/v1/models/${encodeURIComponent("Bad Name!")}`), 422, "validation_failed");
    expect(errorFields(problem)).toEqual(["name"]);
  });
});

describe("model upload limit", () => {
  let small: TestApi;
  beforeAll(() => {
    small = createTestApi(suite.services, { maxModelBytes: 1024 });
  });
  afterAll(async () => {
    await small?.close();
  });

  it("refuses a file over maxModelBytes with 413 payload_too_large", async () => {
    expect(IRIS.byteLength).toBeGreaterThan(1024);
    const problem = await expectProblem(await uploadModel(small, suite.auth, "too-big", IRIS), 413, "payload_too_large");
    expect(problem.detail).toContain("1024");
  });

  it("refuses it on Content-Length alone, as a real client sends it", async () => {
    const response = await small.app.request("/v1/models/too-big/versions", {
      method: "POST",
      headers: { Authorization: suite.auth, "Content-Type": "application/octet-stream", "Content-Length": String(IRIS.byteLength) },
      body: IRIS,
    });
    await expectProblem(response, 413, "payload_too_large");
  });

  it("stores nothing for the refused file", async () => {
    await expectProblem(await get(small, suite.auth, "/v1/models/too-big"), 404, "not_found");
  });
});
