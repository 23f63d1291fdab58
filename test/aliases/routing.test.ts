// Jobs and predictions through aliases, against the real API in process, Postgres, Redis and a
// worker: which version a name chooses (`name`, `name@3`, `name@alias`), a split's weights and its
// routing keys, a job scored whole by one version, and aliases changed and rolled back while
// requests keep arriving. Every version here is an offset model (y = x + 100 * version), so each
// result row says which version scored it.
import type { Alias, Job, PredictResponse } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { offsetRows, offsetVersionOf, readAllResults, registerOffsetVersions, rollbackAlias, setAlias } from "../support/aliases.ts";
import { useApiSuite } from "../support/api-suite.ts";
import { expectJson, requestJson, submitJob, waitForJob } from "../support/http.ts";
import { startTestWorker } from "../support/worker.ts";

const suite = useApiSuite("alias-routing");
let worker: RunningWorker;

beforeAll(async () => {
  worker = await startTestWorker(suite.services);
  await registerOffsetVersions(suite.api, suite.auth, "route", 3);
  await registerOffsetVersions(suite.api, suite.auth, "plain", 2);
});
afterAll(async () => {
  await worker?.close();
});

type Row = { x: number[] };

function predict(model: string, inputs: Row[], headers: Record<string, string> = {}): Promise<Response> {
  return requestJson(suite.api, suite.auth, "POST", `/v1/models/${model}/predict`, { inputs }, { "Cache-Control": "no-store", ...headers });
}

/** The versions that scored a job's rows (one entry per row), after it finished. */
async function versionsOfJob(job: Job, inputs: Row[]): Promise<number[]> {
  expect(await waitForJob(suite.api, suite.auth, job.id)).toMatchObject({ status: "succeeded" });
  const results = await readAllResults(suite.api, suite.auth, job);
  expect(results).toHaveLength(inputs.length);
  return results.map((row) => offsetVersionOf(inputs[row.index]!.x, (row.outputs as { y: number[] }).y));
}

/** The versions that scored a predict answer's rows. */
function versionsOfAnswer(answer: PredictResponse, inputs: Row[]): number[] {
  return answer.outputs.map((row) => offsetVersionOf(inputs[row.index]!.x, (row.outputs as { y: number[] }).y));
}

describe("naming a model", () => {
  beforeAll(async () => {
    await setAlias(suite.api, suite.auth, "route", "canary", { version: 2 });
    await setAlias(suite.api, suite.auth, "route", "production", { version: 3 });
  });

  it("a job for name@alias runs on the alias's version and shows the alias", async () => {
    const inputs = offsetRows(3, 1);
    const job = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "route@canary", inputs }), 202);
    expect(job.model).toEqual({ name: "route", version: 2, alias: "canary" });
    expect(await versionsOfJob(job, inputs)).toEqual([2, 2, 2]);
    expect((await waitForJob(suite.api, suite.auth, job.id)).model).toEqual({ name: "route", version: 2, alias: "canary" });
  });

  it("a plain name means the production alias when the model has one", async () => {
    const inputs = offsetRows(2, 2);
    const job = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "route", inputs }), 202);
    expect(job.model).toEqual({ name: "route", version: 3, alias: "production" });
    expect(await versionsOfJob(job, inputs)).toEqual([3, 3]);
  });

  it("a plain name without a production alias means the latest version", async () => {
    const inputs = offsetRows(2, 3);
    const job = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "plain", inputs }), 202);
    expect(job.model).toEqual({ name: "plain", version: 2, alias: null });
    expect(await versionsOfJob(job, inputs)).toEqual([2, 2]);
  });

  it("name@N pins the version, past any alias", async () => {
    const inputs = offsetRows(2, 4);
    const job = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "route@1", inputs }), 202);
    expect(job.model).toEqual({ name: "route", version: 1, alias: null });
    expect(await versionsOfJob(job, inputs)).toEqual([1, 1]);
  });

  it("an unknown alias is a 404 that names it; an unknown model a 404 that names the model", async () => {
    const alias = await submitJob(suite.api, suite.auth, { model: "route@nightly", inputs: offsetRows(1) });
    expect(alias.status).toBe(404);
    expect(((await alias.json()) as { detail: string }).detail).toContain("model 'route' has no alias 'nightly'");
    const model = await submitJob(suite.api, suite.auth, { model: "nothing@production", inputs: offsetRows(1) });
    expect(model.status).toBe(404);
    expect(((await model.json()) as { detail: string }).detail).toContain("no model named 'nothing'");
    const bad = await submitJob(suite.api, suite.auth, { model: "route@Canary", inputs: offsetRows(1) });
    expect(bad.status).toBe(422);
  });

  it("a CSV upload with ?model=name@alias runs on the alias's version", async () => {
    const inputs = offsetRows(5, 5);
    const csv = `a,b,c,d\n${inputs.map((row) => row.x.join(",")).join("\n")}\n`;
    const response = await suite.api.app.request("/v1/jobs?model=route@canary", {
      method: "POST",
      headers: { Authorization: suite.auth, "Content-Type": "text/csv" },
      body: csv,
    });
    const job = await expectJson<Job>(response, 202);
    expect(job.model).toEqual({ name: "route", version: 2, alias: "canary" });
    expect(await versionsOfJob(job, inputs)).toEqual([2, 2, 2, 2, 2]);
  });

  it("predict at /v1/models/name@alias/predict answers from the alias's version, naming it", async () => {
    const inputs = offsetRows(2, 6);
    const canary = await expectJson<PredictResponse>(await predict("route@canary", inputs), 200);
    expect(canary.model).toEqual({ name: "route", version: 2, alias: "canary" });
    expect(versionsOfAnswer(canary, inputs)).toEqual([2, 2]);
    const plain = await expectJson<PredictResponse>(await predict("route", inputs), 200);
    expect(plain.model).toEqual({ name: "route", version: 3, alias: "production" });
    const pinned = await expectJson<PredictResponse>(await predict("route@1", inputs), 200);
    expect(pinned.model).toEqual({ name: "route", version: 1, alias: null });
    expect(versionsOfAnswer(pinned, inputs)).toEqual([1, 1]);
    expect((await predict("route@nightly", inputs)).status).toBe(404);
  });

  it("/v2/models/name@alias/infer and its metadata answer from the alias's version", async () => {
    const inputs = offsetRows(2, 7);
    const body = { inputs: [{ name: "x", datatype: "FP32", shape: [2, 4], data: inputs.flatMap((row) => row.x) }] };
    const response = await requestJson(suite.api, suite.auth, "POST", "/v2/models/route@canary/infer", body, { "Cache-Control": "no-store" });
    const answer = await expectJson<{ model_name: string; model_version: string; outputs: { name: string; data: number[] }[] }>(response, 200);
    expect([answer.model_name, answer.model_version]).toEqual(["route", "2"]);
    const y = answer.outputs.find((output) => output.name === "y")?.data ?? [];
    expect(offsetVersionOf(inputs[1]!.x, y.slice(4, 8))).toBe(2);
    const metadata = await expectJson<{ name: string; versions: string[] }>(await requestJson(suite.api, suite.auth, "GET", "/v2/models/route@canary"), 200);
    expect(metadata.name).toBe("route");
    expect((await requestJson(suite.api, suite.auth, "GET", "/v2/models/route@canary/ready")).status).toBe(200);
    expect((await requestJson(suite.api, suite.auth, "GET", "/v2/models/route@nightly/ready")).status).toBe(404);
  });
});

describe("a split", () => {
  let half: Alias;
  beforeAll(async () => {
    half = await setAlias(suite.api, suite.auth, "route", "half", { routes: [{ version: 1, weight: 50 }, { version: 2, weight: 50 }] });
  });

  it("sends jobs with distinct routing keys to both versions, and a key always to the same one", async () => {
    const chosen = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const job = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "route@half", inputs: offsetRows(1, i), routing_key: `user-${i}` }), 202);
      expect(job.model.alias).toBe("half");
      chosen.set(`user-${i}`, job.model.version);
    }
    const counts = [1, 2].map((version) => [...chosen.values()].filter((v) => v === version).length);
    // An even split of 200 keys: each side far from empty (the hash is fixed, so this is not chance at work).
    expect(counts[0]).toBeGreaterThan(50);
    expect(counts[1]).toBeGreaterThan(50);
    for (const key of ["user-1", "user-2", "user-3", "user-150"]) {
      for (let again = 0; again < 5; again++) {
        const job = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "route@half", inputs: offsetRows(1), routing_key: key }), 202);
        expect(job.model.version, key).toBe(chosen.get(key));
      }
      // Predict with the header: the same key reaches the same version as its jobs.
      const inputs = offsetRows(1, 9);
      for (let again = 0; again < 3; again++) {
        const answer = await expectJson<PredictResponse>(await predict("route@half", inputs, { "Coalesce-Routing-Key": key }), 200);
        expect([answer.model.version, ...versionsOfAnswer(answer, inputs)], key).toEqual([chosen.get(key), chosen.get(key)]);
      }
    }
  });

  it("a CSV upload takes its routing key from the query", async () => {
    const keyed = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "route@half", inputs: offsetRows(1), routing_key: "csv-user" }), 202);
    const response = await suite.api.app.request("/v1/jobs?model=route@half&routing_key=csv-user", {
      method: "POST",
      headers: { Authorization: suite.auth, "Content-Type": "text/csv" },
      body: "a,b,c,d\n1,2,3,4\n",
    });
    expect((await expectJson<Job>(response, 202)).model.version).toBe(keyed.model.version);
  });

  it("without a key, requests are spread over both versions", async () => {
    const seen = new Set<number>();
    for (let i = 0; i < 60 && seen.size < 2; i++) {
      seen.add((await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "route@half", inputs: offsetRows(1) }), 202)).model.version);
    }
    expect([...seen].sort()).toEqual([1, 2]);
  });

  it("scores every row of a job of many chunks on the job's one version", async () => {
    const inputs = offsetRows(300, 11); // 5 chunks of 64 rows
    const jobs = await Promise.all(
      Array.from({ length: 6 }, async () => expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "route@half", inputs }), 202)),
    );
    for (const job of jobs) {
      const versions = new Set(await versionsOfJob(job, inputs));
      expect([...versions], job.id).toEqual([job.model.version]);
    }
    expect(half.revision).toBe(1);
  });

  it("a predict request's rows all come from one version", async () => {
    const inputs = offsetRows(40, 12);
    for (let i = 0; i < 6; i++) {
      const answer = await expectJson<PredictResponse>(await predict("route@half", inputs), 200);
      expect(new Set(versionsOfAnswer(answer, inputs))).toEqual(new Set([answer.model.version]));
    }
  });
});

describe("changes while requests arrive", () => {
  beforeAll(async () => {
    await registerOffsetVersions(suite.api, suite.auth, "flux", 3);
    await setAlias(suite.api, suite.auth, "flux", "production", { version: 1 });
  });

  it("PUT and rollback many times under load: no request fails, and every job is scored by one version", async () => {
    const inputs = offsetRows(150, 13); // 3 chunks
    const predictRows = offsetRows(8, 14);
    const jobs: Job[] = [];
    const failures: string[] = [];
    const predictVersions: { answered: number; rows: number[] }[] = [];
    let changing = true;

    const submitter = async () => {
      while (changing) {
        const response = await submitJob(suite.api, suite.auth, { model: "flux@production", inputs });
        if (response.status === 202) jobs.push((await response.json()) as Job);
        else failures.push(`job: ${response.status} ${await response.text()}`);
      }
    };
    const predictor = async () => {
      while (changing) {
        const response = await predict("flux@production", predictRows);
        if (response.status !== 200) {
          failures.push(`predict: ${response.status} ${await response.text()}`);
          continue;
        }
        const answer = (await response.json()) as PredictResponse;
        predictVersions.push({ answered: answer.model.version, rows: versionsOfAnswer(answer, predictRows) });
      }
    };
    const changer = async () => {
      try {
        for (let i = 0; i < 40; i++) {
          if (i % 3 === 2) {
            const response = await rollbackAlias(suite.api, suite.auth, "flux", "production");
            expect([200, 409], await response.clone().text()).toContain(response.status);
          } else {
            const body = i % 2 === 0 ? { version: (i % 3) + 1 } : { routes: [{ version: 1, weight: 30 }, { version: 2, weight: 30 }, { version: 3, weight: 40 }] };
            await setAlias(suite.api, suite.auth, "flux", "production", body);
          }
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      } finally {
        changing = false;
      }
    };
    await Promise.all([submitter(), submitter(), predictor(), changer()]);

    expect(failures).toEqual([]);
    expect(jobs.length).toBeGreaterThan(5);
    expect(predictVersions.length).toBeGreaterThan(5);
    expect(new Set(jobs.map((job) => job.model.version)).size).toBeGreaterThan(1);
    for (const job of jobs) {
      expect(job.model.alias).toBe("production");
      expect(new Set(await versionsOfJob(job, inputs)), job.id).toEqual(new Set([job.model.version]));
    }
    for (const { answered, rows } of predictVersions) expect(new Set(rows)).toEqual(new Set([answered]));
    const history = await expectJson<{ data: unknown[] }>(await requestJson(suite.api, suite.auth, "GET", "/v1/models/flux/aliases/production/history?limit=200"), 200);
    expect(history.data.length).toBeGreaterThan(30);
  }, 120_000);
});
