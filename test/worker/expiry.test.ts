// expires_after: a job not finished in time ends `expired`, keeping the rows scored so far.
import type { Job, JobResults } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectProblem, get, uploadModel, waitForJob } from "../support/http.ts";
import { readFeatureCsv, readModel } from "../support/fixtures.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "../support/services.ts";
import { startTestWorker } from "../support/worker.ts";

let services: TestServices;
let api: TestApi;
let auth: string;
let features: number[][];

beforeAll(async () => {
  services = await createTestServices();
  api = createTestApi(services, { chunkRows: 100 });
  auth = await api.createTenant("expiry");
  ({ features } = await readFeatureCsv("iris"));
  expect((await uploadModel(api, auth, "iris", await readModel("iris"))).status).toBe(201);
});

afterAll(async () => {
  await api?.close();
  await services?.cleanup();
});

async function submit(rows: number, extra: object): Promise<Response> {
  return api.app.request("/v1/jobs", {
    method: "POST",
    headers: { Authorization: auth, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "iris", inputs: Array.from({ length: rows }, (_, i) => ({ features: features[i % features.length] })), ...extra }),
  });
}

describe("expires_after", () => {
  it("ends a job that no worker reached in time, and takes its chunks off the queue", async () => {
    const job = (await (await submit(500, { expires_after: 1 })).json()) as Job;
    expect(job.expires_at).not.toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 1200));
    const before = (await api.deps.queue.getJobCounts()).prioritized ?? 0;
    // A worker sweeps for expired jobs at start (and every few seconds).
    const worker = await startTestWorker(services);
    try {
      const ended = await waitForJob(api, auth, job.id, 10_000);
      expect(ended).toMatchObject({ status: "expired", counts: { succeeded: 0 } });
      expect(ended.completed_at).not.toBeNull();
      expect((await api.deps.queue.getJobCounts()).prioritized).toBeLessThanOrEqual(before - 5);
      const results = (await (await get(api, auth, `/v1/jobs/${job.id}/results`)).json()) as JobResults;
      expect(results).toMatchObject({ job_status: "expired", complete: true, data: [] });
    } finally {
      await worker.close();
    }
  });

  it("keeps the rows scored before the deadline", async () => {
    const worker = await startTestWorker(services, { WORKER_CONCURRENCY: "1", MAX_BATCH_ROWS: "100000", MAX_BATCH_DELAY_MS: "250", ADAPTIVE_BATCHING: "false" });
    try {
      const job = (await (await submit(3000, { expires_after: 1, priority: "interactive" })).json()) as Job;
      const ended = await waitForJob(api, auth, job.id, 15_000);
      expect(ended.status).toBe("expired");
      expect(ended.counts.succeeded).toBeGreaterThan(0);
      expect(ended.counts.succeeded).toBeLessThan(3000);
      const results = (await (await get(api, auth, `/v1/jobs/${job.id}/results?limit=1000`)).json()) as JobResults;
      expect(results.data[0]).toMatchObject({ index: 0, outputs: { label: expect.any(Number) } });
    } finally {
      await worker.close();
    }
  });

  it("refuses a non-positive or too long expires_after", async () => {
    await expectProblem(await submit(1, { expires_after: 0 }), 422, "validation_failed");
    await expectProblem(await submit(1, { expires_after: 31 * 24 * 3600 }), 422, "validation_failed");
  });
});
