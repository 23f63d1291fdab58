// Shadows and guards against the real API, worker, Postgres and Redis: a shadow's outputs never
// reach the caller and its failures fail nothing; the comparison counts what both versions said;
// a guard rolls a deliberately wrong candidate back by itself, and the history, the webhook event
// and the metric say why.
import { rm } from "node:fs/promises";
import type { Alias, AliasComparison, AliasHistoryEntry, CreatedWebhook, Job, JobResults, PredictResponse } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { identityAgainModel as identityAgain, identityModel as identity, negateModel as negate } from "../support/aliases.ts";
import { createModelStore } from "../../packages/models/src/model-store.ts";
import { useApiSuite } from "../support/api-suite.ts";
import { expectJson, get, requestJson, sha256, submitJob, uploadModel, waitForJob } from "../support/http.ts";
import { readWorkerMetric, waitUntil } from "../support/predict.ts";
import { TEST_WEBHOOK_ENV } from "../support/services.ts";
import { verifyWebhook, WebhookReceiver } from "../support/webhook-receiver.ts";
import { startTestWorker } from "../support/worker.ts";

/** Rows with one clear largest value, so the argmax of y = x and of y = -x always differ. */
function rows(count: number, seed = 0): { x: number[] }[] {
  return Array.from({ length: count }, (_, i) => ({ x: [1 + ((i + seed) % 7), 0.5, 0.25, 0.125].map((v, j) => (j === (i + seed) % 4 ? v + 10 : v)) }));
}

const suite = useApiSuite("alias-guards");
let worker: RunningWorker;
let receiver: WebhookReceiver;
let endpoint: CreatedWebhook;

beforeAll(async () => {
  worker = await startTestWorker(suite.services, { ...TEST_WEBHOOK_ENV, ALIAS_GUARD_INTERVAL_MS: "100", METRICS_PORT: "0", BATCHING_REFRESH_MS: "0", WEBHOOK_POLL_MS: "100" });
  receiver = await WebhookReceiver.start();
  endpoint = await expectJson<CreatedWebhook>(
    await requestJson(suite.api, suite.auth, "POST", "/v1/webhooks", { url: receiver.url, events: ["model.alias.rolled_back"] }),
    201,
  );
});
afterAll(async () => {
  await worker?.close();
  await receiver?.down();
});

/** Registers `files` as versions 1, 2, ... of a model of its own. */
async function registerVersions(name: string, files: Uint8Array[]): Promise<void> {
  for (const file of files) expect((await uploadModel(suite.api, suite.auth, name, file)).status).toBe(201);
}

async function putAlias(model: string, alias: string, body: unknown): Promise<Alias> {
  const response = await requestJson(suite.api, suite.auth, "PUT", `/v1/models/${model}/aliases/${alias}`, body);
  expect([200, 201], await response.clone().text()).toContain(response.status);
  return (await response.json()) as Alias;
}

async function jobThrough(model: string, inputs: unknown[]): Promise<{ job: Job; results: JobResults["data"] }> {
  const accepted = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model, inputs }), 202);
  const job = await waitForJob(suite.api, suite.auth, accepted.id);
  expect(job.status).toBe("succeeded");
  const results = await expectJson<JobResults>(await get(suite.api, suite.auth, `/v1/jobs/${job.id}/results?limit=1000`), 200);
  return { job, results: results.data };
}

async function predictThrough(model: string, inputs: unknown[]): Promise<PredictResponse> {
  const response = await requestJson(suite.api, suite.auth, "POST", `/v1/models/${model}/predict`, { inputs }, { "Cache-Control": "no-store" });
  return expectJson<PredictResponse>(response, 200);
}

async function comparison(model: string, alias: string): Promise<AliasComparison> {
  return expectJson<AliasComparison>(await get(suite.api, suite.auth, `/v1/models/${model}/aliases/${alias}/comparison`), 200);
}

async function history(model: string, alias: string): Promise<AliasHistoryEntry[]> {
  return (await expectJson<{ data: AliasHistoryEntry[] }>(await get(suite.api, suite.auth, `/v1/models/${model}/aliases/${alias}/history`), 200)).data;
}

describe("a shadow", () => {
  it("is scored beside every sampled row and compared, and never reaches the caller", async () => {
    await registerVersions("shadowed", [identity, negate]);
    await putAlias("shadowed", "production", { version: 1, shadow: { version: 2, sample: 1 } });
    const inputs = rows(40);
    const { job, results } = await jobThrough("shadowed", inputs);
    expect(job.model).toEqual({ name: "shadowed", version: 1, alias: "production" });
    // The primary's answers only: y = x, never the shadow's -x.
    results.forEach((result, i) => expect(result).toMatchObject({ outputs: { y: inputs[i]!.x } }));
    const answer = await predictThrough("shadowed", inputs.slice(0, 10));
    expect(answer.model).toEqual({ name: "shadowed", version: 1, alias: "production" });
    answer.outputs.forEach((result, i) => expect(result).toMatchObject({ outputs: { y: inputs[i]!.x } }));

    let figures!: AliasComparison;
    await waitUntil("the comparison of 50 rows", async () => (figures = await comparison("shadowed", "production")).pairs[0]?.compared === 50, 15_000);
    expect(figures.versions).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ version: 1, role: "route", rows: 50, errors: 0, error_rate: 0 }),
        expect.objectContaining({ version: 2, role: "shadow", rows: 50, errors: 0, error_rate: 0 }),
      ]),
    );
    const [pair] = figures.pairs;
    expect(pair).toMatchObject({ primary_version: 1, shadow_version: 2, compared: 50, agreement: 0 });
    const [y] = pair!.outputs;
    expect(y).toMatchObject({ output: "y", compared: 50, agreement: 0 });
    // |x - (-x)| = 2|x|, whose largest value in these rows is 2 * 17.
    expect(y!.max_abs_diff).toBeCloseTo(34);
    expect(await readWorkerMetric(worker, "coalesce_shadow_compared_rows_total", { model: "shadowed", alias: "production" })).toBe(50);
    expect(await readWorkerMetric(worker, "coalesce_alias_rows_total", { model: "shadowed", alias: "production", role: "shadow" })).toBe(50);
  });

  it("that cannot run fails no row, and a guard drops it for its error rate", async () => {
    await registerVersions("broken-shadow", [identity, identityAgain]);
    // Version 2's file leaves the store: every shadow row fails to load it.
    await rm(createModelStore(suite.services.env.MODEL_STORE_DIR!).pathOf(sha256(identityAgain)), { force: true });
    await putAlias("broken-shadow", "production", { version: 1, shadow: { version: 2, sample: 1 }, guard: { max_error_rate: 0.05, min_rows: 20 } });
    const { results } = await jobThrough("broken-shadow", rows(30));
    expect(results.every((result) => "outputs" in result)).toBe(true);
    let alias!: Alias;
    await waitUntil(
      "the guard to drop the shadow",
      async () => (alias = await expectJson<Alias>(await get(suite.api, suite.auth, "/v1/models/broken-shadow/aliases/production"), 200)).shadow === null,
      15_000,
    );
    expect(alias).toMatchObject({ routes: [{ version: 1, weight: 100 }], shadow: null, guard: null });
    const [latest] = await history("broken-shadow", "production");
    expect(latest).toMatchObject({ action: "guard_rollback", key_id: null, reason: { figure: "error_rate", value: 1, limit: 0.05, version: 2, role: "shadow" } });
    expect(latest!.reason!.rows).toBeGreaterThanOrEqual(20);
    // Rows after the rollback are still answered.
    expect((await jobThrough("broken-shadow", rows(5))).results.every((result) => "outputs" in result)).toBe(true);
  });
});

describe("a guarded canary", () => {
  it("that disagrees with the stable version is rolled back by itself, and the history, the webhook and the metric say why", async () => {
    await registerVersions("canaried", [identity, negate]);
    await putAlias("canaried", "production", {
      routes: [
        { version: 1, weight: 50 },
        { version: 2, weight: 50 },
      ],
      guard: { min_agreement: 0.98, min_rows: 30, compare_sample: 1 },
    });
    // Submitted until the guard acts: rows reach the candidate at 50 %, and each is checked on the stable version.
    let alias!: Alias;
    let sent = 0;
    await waitUntil(
      "the guard to roll the canary back",
      async () => {
        const answer = await predictThrough("canaried", rows(10, sent++));
        expect([1, 2]).toContain(answer.model.version);
        alias = await expectJson<Alias>(await get(suite.api, suite.auth, "/v1/models/canaried/aliases/production"), 200);
        return alias.routes.length === 1;
      },
      30_000,
    );
    expect(alias).toMatchObject({ routes: [{ version: 1, weight: 100 }], shadow: null, guard: null });
    const [latest, set] = await history("canaried", "production");
    expect(latest).toMatchObject({
      action: "guard_rollback",
      key_id: null,
      reason: { figure: "agreement", value: 0, limit: 0.98, version: 2, role: "route" },
      before: { routes: [{ version: 1, weight: 50 }, { version: 2, weight: 50 }] },
      after: { routes: [{ version: 1, weight: 100 }] },
    });
    expect(set).toMatchObject({ action: "set" });

    const received = await receiver.waitFor((all) => all.some((r) => r.body.includes('"canaried"')));
    const delivered = verifyWebhook(endpoint.secret, received.find((r) => r.body.includes('"canaried"'))!) as { type: string; data: Record<string, unknown> };
    expect(delivered.type).toBe("model.alias.rolled_back");
    expect(delivered.data).toMatchObject({ model: "canaried", alias: "production", trigger: "guard", reason: { figure: "agreement", version: 2 } });
    expect(await readWorkerMetric(worker, "coalesce_alias_rollbacks_total", { model: "canaried", alias: "production" })).toBe(1);

    // Every request from now on is answered by the stable version (once the API's memory of the
    // alias, trusted for a second, has lapsed: the guard rolled it back in the worker).
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    for (let i = 0; i < 5; i++) expect((await predictThrough("canaried", rows(3, i))).model.version).toBe(1);
    // A person can put the candidate back: the rollback of the guard's rollback.
    const restored = await expectJson<Alias>(await requestJson(suite.api, suite.auth, "POST", "/v1/models/canaried/aliases/production/rollback"), 200);
    expect(restored.routes).toEqual([
      { version: 1, weight: 50 },
      { version: 2, weight: 50 },
    ]);
  });

  it("that agrees is left alone", async () => {
    await registerVersions("healthy", [identity, identityAgain]);
    const set = await putAlias("healthy", "production", {
      routes: [
        { version: 1, weight: 50 },
        { version: 2, weight: 50 },
      ],
      guard: { max_error_rate: 0.01, min_agreement: 0.98, min_rows: 20, compare_sample: 1 },
    });
    for (let i = 0; i < 10; i++) await predictThrough("healthy", rows(10, i));
    await jobThrough("healthy", rows(50));
    let figures!: AliasComparison;
    await waitUntil("the candidate's rows compared", async () => ((figures = await comparison("healthy", "production")).pairs[0]?.compared ?? 0) >= 20, 15_000);
    expect(figures.pairs[0]).toMatchObject({ primary_version: 2, shadow_version: 1, agreement: 1 });
    expect(figures.pairs[0]!.outputs[0]!.max_abs_diff).toBe(0);
    const now = await expectJson<Alias>(await get(suite.api, suite.auth, "/v1/models/healthy/aliases/production"), 200);
    expect(now.revision).toBe(set.revision);
  });
});
