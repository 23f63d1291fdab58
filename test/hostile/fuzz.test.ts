// A schema-driven fuzzer over the live /openapi.json: for every operation, requests made from its own
// parameter and body schemas (valid, at the bounds, and hostile), sent to the API in process on the
// test's services. Whatever comes back must be a status the document lists for that operation, with a
// body that matches the schema it lists; never a 5xx. Deterministic: a fixed seed.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readModel } from "../support/fixtures.ts";
import { expectJson, get, requestJson, submitJob } from "../support/http.ts";
import { useApiSuite } from "../support/api-suite.ts";
import { startTestWorker } from "../support/worker.ts";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { ContractJudge, listOperations, seededRandom, type OpenApiDocument, type OperationRef } from "./contract.ts";
import { requestsFor, type FuzzRequest, type KnownValues } from "./generate.ts";

const SEED = 20261203;
const REQUESTS_PER_OPERATION = 36;
/** A request that takes longer than this has hung (no route here waits: every job it names is finished). */
const ANSWER_WITHIN_MS = 15_000;

/** Every operation the API publishes, by the operationId a generated client names its method after. */
const OPERATION_IDS = [
  "getLiveness",
  "getReadiness",
  "createModelVersion",
  "listModels",
  "getModel",
  "updateModelVersion",
  "deleteModelVersion",
  "listAliases",
  "putAlias",
  "getAlias",
  "deleteAlias",
  "getAliasHistory",
  "rollbackAlias",
  "getAliasComparison",
  "createJob",
  "listJobs",
  "getJob",
  "deleteJob",
  "getJobResults",
  "cancelJob",
  "streamJobEvents",
  "rotateWebhookSecret",
  "getDefaultWebhookSecret",
  "rotateDefaultWebhookSecret",
  "createWebhook",
  "listWebhooks",
  "getWebhook",
  "updateWebhook",
  "deleteWebhook",
  "listJobDeliveries",
  "retryDelivery",
  "predict",
  "predictVersion",
  "serverMetadata",
  "serverLive",
  "serverReady",
  "modelMetadata",
  "modelVersionMetadata",
  "modelReady",
  "modelVersionReady",
  "modelInfer",
  "modelVersionInfer",
  "createApiKey",
  "listApiKeys",
  "revokeApiKey",
  "rotateApiKey",
  "getTenant",
  "updateTenant",
  "listAudit",
];

/** Routes behind the API key: /v1, and the Open Inference Protocol's per-model routes. */
const needsKey = (path: string) => path.startsWith("/v1/") || path.startsWith("/v2/models/");
/** The Open Inference Protocol answers errors as `{"error": ...}` in application/json, and a bad request as 400. */
const isV2 = (path: string) => path === "/v2" || path.startsWith("/v2/");

const suite = useApiSuite("fuzz", { iris: true });
let doc: OpenApiDocument;
let judge: ContractJudge;
const failures = new Map<string, string[]>();
const byStatus = new Map<number, number>();
const byOperation = new Map<string, Map<number, number>>();
let sent = 0;
let worker: RunningWorker | undefined;

async function send(request: FuzzRequest): Promise<Response> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ANSWER_WITHIN_MS} ms`)), ANSWER_WITHIN_MS);
  });
  try {
    const init: RequestInit = { method: request.method, headers: request.headers };
    if (request.body !== undefined) init.body = request.body;
    return await Promise.race([Promise.resolve(suite.api.app.request(request.url, init)), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function knownValues(): Promise<KnownValues> {
  const auth = suite.auth;
  const webhookUrl = "http://127.0.0.1:9/fuzz";
  const jobIds: string[] = [];
  for (let i = 0; i < 3; i++) {
    const job = await expectJson<{ id: string }>(await submitJob(suite.api, auth, { model: "iris", inputs: [{ features: [5.1, 3.5, 1.4, 0.2] }], webhook_url: webhookUrl }), 202);
    // Finished jobs only: a long-poll or an event stream on them answers at once.
    expect((await requestJson(suite.api, auth, "POST", `/v1/jobs/${job.id}/cancel`)).status).toBe(200);
    jobIds.push(job.id);
  }
  const webhook = await expectJson<{ id: string }>(await requestJson(suite.api, auth, "POST", "/v1/webhooks", { url: webhookUrl }), 201);
  // The alias routes' `{alias}` is sampled from its example, `production`: give it a history to
  // read and roll back through (which also routes the plain `iris` the other operations name).
  for (const version of [1, 1]) {
    expect((await requestJson(suite.api, auth, "PUT", "/v1/models/iris/aliases/production", { version })).status).toBeLessThan(300);
  }
  // Keys of their own to rotate and revoke, so the fuzz's own key keeps working throughout.
  const apiKeyIds: string[] = [];
  for (const name of ["fuzz-a", "fuzz-b"]) {
    apiKeyIds.push((await expectJson<{ id: string }>(await requestJson(suite.api, auth, "POST", "/v1/api-keys", { name, scopes: ["jobs:read"] }), 201)).id);
  }
  const deliveries = await suite.api.db.pool.query<{ id: string }>(`SELECT id FROM webhook_deliveries ORDER BY id`);
  expect(deliveries.rows.length).toBeGreaterThan(0);
  return {
    jobIds,
    webhookIds: [webhook.id],
    deliveryIds: deliveries.rows.map((row) => row.id),
    apiKeyIds,
    modelName: "iris",
    modelVersion: 1,
    model: new Uint8Array(await readModel("iris")),
    csv: "a,b,c,d\n5.1,3.5,1.4,0.2\n6.7,3.1,4.7,1.5\n",
    webhookUrl,
  };
}

/** Destructive operations last, so the ids the others use still exist for most of the run. */
function runOrder(operations: OperationRef[]): OperationRef[] {
  return [...operations].sort((a, b) => Number(a.method === "DELETE") - Number(b.method === "DELETE"));
}

beforeAll(async () => {
  // Predict and infer need a worker to answer rather than 503. The fuzz patches the model's batching up
  // to a 60 s delay, past PREDICT_TIMEOUT_MS: the worker never re-reads it (BATCHING_REFRESH_MS=0), and
  // has loaded the model before the fuzz starts.
  worker = await startTestWorker(suite.services, { BATCHING_REFRESH_MS: "0" });
  expect((await requestJson(suite.api, suite.auth, "POST", "/v1/models/iris/predict", { inputs: [{ features: [5.1, 3.5, 1.4, 0.2] }] })).status).toBe(200);
  doc = await expectJson<OpenApiDocument>(await get(suite.api, null, "/openapi.json"), 200);
  judge = new ContractJudge(doc);
  const known = await knownValues();
  const random = seededRandom(SEED);
  for (const ref of runOrder(listOperations(doc))) {
    const problems: string[] = [];
    const counts = new Map<number, number>();
    for (const request of requestsFor(judge, ref, known, suite.auth, random, REQUESTS_PER_OPERATION)) {
      sent += 1;
      const where = `${request.method} ${request.url.slice(0, 120)} [${request.label}]`;
      let response: Response;
      try {
        response = await send(request);
      } catch (error) {
        problems.push(`${where}: ${(error as Error).message}`);
        continue;
      }
      const body = await response.text();
      counts.set(response.status, (counts.get(response.status) ?? 0) + 1);
      byStatus.set(response.status, (byStatus.get(response.status) ?? 0) + 1);
      const found = judge.judge(ref, { status: response.status, headers: response.headers, body });
      if (response.status >= 500) found.unshift(`answered ${response.status}: ${body.slice(0, 300)}`);
      for (const problem of found) problems.push(`${where}: ${problem}`);
    }
    failures.set(ref.id, problems);
    byOperation.set(ref.id, counts);
  }
}, 180_000);

afterAll(async () => {
  await worker?.close();
  const statuses = [...byStatus.entries()].sort(([a], [b]) => a - b).map(([status, n]) => `${status}: ${n}`);
  console.log(`fuzz (seed ${SEED}): ${sent} requests over ${byOperation.size} operations; by status ${statuses.join(", ")}`);
  for (const [id, counts] of byOperation) {
    console.log(`  ${id.padEnd(28)} ${[...counts.entries()].sort(([a], [b]) => a - b).map(([s, n]) => `${s}x${n}`).join(" ")}`);
  }
});

describe("the OpenAPI document", () => {
  it("names every operation with an operationId a client can use as a method name", () => {
    const ids = listOperations(doc).map((ref) => ref.operation.operationId);
    expect(ids.every((id) => id !== undefined && /^[a-z][A-Za-z]+$/.test(id))).toBe(true);
    expect([...ids].sort()).toEqual([...OPERATION_IDS].sort());
  });

  it("has servers and applies the bearer scheme, with each operation's scope, to /v1 and /v2/models, not to the health checks", () => {
    expect(doc.servers?.length).toBeGreaterThan(0);
    expect(doc.components.securitySchemes?.bearerAuth).toMatchObject({ type: "http", scheme: "bearer" });
    for (const ref of listOperations(doc)) {
      const security = ref.operation.security ?? doc.security;
      // Every keyed operation names the one scope it needs (the auth middleware enforces exactly that).
      if (needsKey(ref.path)) expect(security, ref.id).toEqual([{ bearerAuth: [expect.stringMatching(/^(jobs|models|webhooks):(read|write)$|^admin$/)] }]);
      else expect(security, ref.id).toEqual([]);
    }
  });

  it("lists 401, 403 and 503 on every keyed operation, and 400, 413, 415 and 422 (400 under /v2) where a JSON body is taken", () => {
    for (const ref of listOperations(doc)) {
      const statuses = Object.keys(ref.operation.responses);
      const invalid = isV2(ref.path) ? "400" : "422";
      if (needsKey(ref.path)) expect(statuses, ref.id).toEqual(expect.arrayContaining(["401", "403", "503"]));
      if (ref.operation.requestBody?.content["application/json"]) expect(statuses, ref.id).toEqual(expect.arrayContaining(["400", "413", "415", invalid]));
      if ((ref.operation.parameters ?? []).length > 0) expect(statuses, ref.id).toContain(invalid);
      for (const [status, response] of Object.entries(ref.operation.responses)) {
        if (Number(status) >= 400) expect(Object.keys(response.content ?? {}), `${ref.id} ${status}`).toEqual([isV2(ref.path) ? "application/json" : "application/problem+json"]);
      }
      if (needsKey(ref.path)) expect(Object.keys(ref.operation.responses["503"]?.headers ?? {}), ref.id).toContain("Retry-After");
    }
  });

  it("describes the CSV upload bodies and types tensor values", () => {
    const content = doc.paths["/v1/jobs"]?.post?.requestBody?.content ?? {};
    expect(Object.keys(content).sort()).toEqual(["application/json", "multipart/form-data", "text/csv"]);
    expect(content["multipart/form-data"]?.schema).toMatchObject({ properties: { file: { type: "string", format: "binary" } }, required: ["file"] });
    expect(doc.components.schemas.TensorValue).toMatchObject({ anyOf: expect.arrayContaining([{ type: "number" }, { type: "boolean" }, { type: "string" }]) });
  });
});

describe("fuzzing every operation", () => {
  it.each(OPERATION_IDS)("%s: no 5xx, every status documented, every body as documented", (id) => {
    const problems = failures.get(id);
    expect(problems, `${id} was not fuzzed`).toBeDefined();
    expect(problems?.slice(0, 15)).toEqual([]);
  });

  it("leaves the API alive", async () => {
    expect((await get(suite.api, null, "/healthz")).status).toBe(200);
    expect(sent).toBeGreaterThanOrEqual(OPERATION_IDS.length * REQUESTS_PER_OPERATION);
  });
});
