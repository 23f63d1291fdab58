// A big upload against the model run directly, and partial results while a job runs.
import type { Job, JobResults } from "@coalesce/contracts";
import * as ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { uploadModel, waitForJob } from "../support/http.ts";
import { readModel } from "../support/fixtures.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "../support/services.ts";
import { startTestWorker } from "../support/worker.ts";

let services: TestServices;
let api: TestApi;
let auth: string;

beforeAll(async () => {
  services = await createTestServices();
  api = createTestApi(services, { chunkRows: 1000 });
  auth = await api.createTenant("large");
  expect((await uploadModel(api, auth, "iris", await readModel("iris"))).status).toBe(201);
});

afterAll(async () => {
  await api?.close();
  await services?.cleanup();
});

/** Deterministic rows near the iris ranges (a small LCG, so a failure can be reproduced). */
function irisLikeRows(count: number): number[][] {
  let seed = 42;
  const next = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  return Array.from({ length: count }, () => Array.from({ length: 4 }, () => Math.round((0.5 + next() * 7) * 10) / 10));
}

async function job(id: string): Promise<Job> {
  return (await (await api.app.request(`/v1/jobs/${id}`, { headers: { Authorization: auth } })).json()) as Job;
}


async function uploadRows(rows: number[][]): Promise<Job> {
  const csv = `row_id,a,b,c,d\n${rows.map((r, i) => `r${i},${r.join(",")}`).join("\n")}\n`;
  const response = await api.app.request("/v1/jobs?model=iris&id_column=row_id", {
    method: "POST",
    headers: { Authorization: auth, "Content-Type": "text/csv" },
    body: csv,
  });
  expect(response.status).toBe(202);
  return (await response.json()) as Job;
}

describe("a 100,000-row CSV upload", () => {
  let worker: RunningWorker;
  beforeAll(async () => {
    worker = await startTestWorker(services, { MAX_BATCH_ROWS: "1024" });
  });
  afterAll(async () => {
    await worker?.close();
  });

  it("gives CSV results equal to running the model directly on the same rows", async () => {
    const rows = irisLikeRows(100_000);
    const accepted = await uploadRows(rows);
    expect(accepted.counts.total).toBe(100_000);
    expect(await waitForJob(api, auth, accepted.id)).toMatchObject({ status: "succeeded", counts: { succeeded: 100_000, failed: 0 } });

    const session = await ort.InferenceSession.create(new Uint8Array(await readModel("iris")));
    const direct = await session.run({ features: new ort.Tensor("float32", Float32Array.from(rows.flat()), [rows.length, 4]) });
    await session.release();
    const probabilities = direct.probabilities?.data as Float32Array;
    const labels = direct.label?.data as BigInt64Array;

    const csv = await (await api.app.request(`/v1/jobs/${accepted.id}/results`, { headers: { Authorization: auth, Accept: "text/csv" } })).text();
    const lines = csv.trimEnd().split("\n");
    expect(lines[0]).toBe("row_id,probabilities_0,probabilities_1,probabilities_2,label,error");
    expect(lines).toHaveLength(100_001);
    let worst = 0;
    let mismatched = 0;
    for (let i = 0; i < rows.length; i++) {
      const cells = (lines[i + 1] as string).split(",");
      if (cells[0] !== `r${i}` || Number(cells[4]) !== Number(labels[i]) || cells[5] !== "") mismatched++;
      for (let k = 0; k < 3; k++) worst = Math.max(worst, Math.abs(Number(cells[k + 1]) - (probabilities[i * 3 + k] as number)));
    }
    expect(mismatched).toBe(0);
    expect(worst).toBeLessThan(1e-6);
  });
});

describe("partial results", () => {
  it("are readable while the job runs and say the job is not complete", async () => {
    // One chunk at a time, each waiting out the batch delay: the job takes a few seconds.
    const worker = await startTestWorker(services, { WORKER_CONCURRENCY: "1", MAX_BATCH_ROWS: "100000", MAX_BATCH_DELAY_MS: "300" });
    try {
      const accepted = await uploadRows(irisLikeRows(10_000));
      let partial: JobResults | undefined;
      const deadline = Date.now() + 30_000;
      while (!partial && Date.now() < deadline) {
        const page = (await (await api.app.request(`/v1/jobs/${accepted.id}/results?limit=1000`, { headers: { Authorization: auth } })).json()) as JobResults;
        if (page.data.length > 0) partial = page;
        else await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(partial).toMatchObject({ job_status: "running", complete: false });
      expect(partial?.data[0]).toMatchObject({ index: 0, id: "r0" });
      const running = await job(accepted.id);
      expect(running.status).toBe("running");
      expect(running.progress).toBeGreaterThan(0);
      expect(running.progress).toBeLessThan(1);

      const download = await api.app.request(`/v1/jobs/${accepted.id}/results`, { headers: { Authorization: auth, Accept: "application/x-ndjson" } });
      expect(download.headers.get("coalesce-results-complete")).toBe("false");
      expect(download.headers.get("coalesce-job-status")).toBe("running");
      const lines = (await download.text()).trim().split("\n");
      expect(lines.length).toBeGreaterThanOrEqual(1000);
      expect(lines.length).toBeLessThan(10_000);
      expect(JSON.parse(lines[0] as string)).toMatchObject({ index: 0, id: "r0", outputs: { label: expect.any(Number) } });

      expect((await waitForJob(api, auth, accepted.id)).status).toBe("succeeded");
      const whole = await api.app.request(`/v1/jobs/${accepted.id}/results?format=ndjson`, { headers: { Authorization: auth } });
      expect(whole.headers.get("coalesce-results-complete")).toBe("true");
      expect((await whole.text()).trim().split("\n")).toHaveLength(10_000);
    } finally {
      await worker.close();
    }
  });
});
