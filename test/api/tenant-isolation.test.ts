import type { Job, JobList, Model, ModelList, ModelVersion } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectJson, expectProblem, fixture, get, irisRows, sha256, submitJob, uploadModel } from "../support/http.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "../support/services.ts";

let services: TestServices;
let api: TestApi;
let tenantA: string;
let tenantB: string;
let jobOfA: Job;

beforeAll(async () => {
  services = await createTestServices();
  api = createTestApi(services);
  tenantA = await api.createTenant("tenant-a");
  tenantB = await api.createTenant("tenant-b");
  await expectJson(await uploadModel(api, tenantA, "iris", fixture("iris.onnx")), 201);
  jobOfA = await expectJson<Job>(await submitJob(api, tenantA, { model: "iris", inputs: irisRows(3) }), 202);
});

afterAll(async () => {
  await api?.close();
  await services?.cleanup();
});

describe("another tenant", () => {
  it("cannot see the model: GET /v1/models/{name} is 404", async () => {
    await expectProblem(await get(api, tenantB, "/v1/models/iris"), 404, "not_found");
  });

  it("does not find the model in its list", async () => {
    expect(await expectJson<ModelList>(await get(api, tenantB, "/v1/models"), 200)).toEqual({ data: [] });
  });

  it.each(["iris", "iris@1"])("cannot submit a job with the model (%s): 404", async (model) => {
    await expectProblem(await submitJob(api, tenantB, { model, inputs: irisRows(1) }), 404, "not_found");
    expect(await api.db.prisma.job.count()).toBe(1);
  });

  it("cannot read the job: 404, not 403", async () => {
    await expectProblem(await get(api, tenantB, `/v1/jobs/${jobOfA.id}`), 404, "not_found");
  });

  it("cannot read the job's results: 404, not 403", async () => {
    await expectProblem(await get(api, tenantB, `/v1/jobs/${jobOfA.id}/results`), 404, "not_found");
  });

  it("does not find the job in its list", async () => {
    expect(await expectJson<JobList>(await get(api, tenantB, "/v1/jobs"), 200)).toEqual({ data: [], next_cursor: null });
  });

  it("gets its own, independent version 1 when it registers a model of the same name", async () => {
    const digits = fixture("digits.onnx");
    const version = await expectJson<ModelVersion>(await uploadModel(api, tenantB, "iris", digits), 201);
    expect(version).toMatchObject({ name: "iris", version: 1, sha256: sha256(digits) });

    const ofA = await expectJson<Model>(await get(api, tenantA, "/v1/models/iris"), 200);
    expect(ofA.versions.map((v) => v.sha256)).toEqual([sha256(fixture("iris.onnx"))]);
    // B's job runs on B's model, not A's.
    const jobOfB = await expectJson<Job>(await submitJob(api, tenantB, { model: "iris", inputs: [{ features: new Array(64).fill(0) }] }), 202);
    expect(jobOfB.model).toEqual({ name: "iris", version: 1, alias: null });
    await expectProblem(await submitJob(api, tenantB, { model: "iris", inputs: irisRows(1) }), 422, "validation_failed");
  });

  it("leaves the owner's view unchanged", async () => {
    expect(await expectJson<Job>(await get(api, tenantA, `/v1/jobs/${jobOfA.id}`), 200)).toEqual(jobOfA);
    const list = await expectJson<JobList>(await get(api, tenantA, "/v1/jobs"), 200);
    expect(list.data.map((job) => job.id)).toEqual([jobOfA.id]);
  });
});
