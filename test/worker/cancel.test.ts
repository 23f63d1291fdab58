// POST /v1/jobs/{id}/cancel on the real services: queued chunks leave the queue, scored rows stay.
import type { Job, JobResults } from "@coalesce/contracts";
import { describe, expect, it } from "vitest";
import { expectProblem, get, waitForJob } from "../support/http.ts";
import { irisInputs, useIrisSuite } from "../support/iris-suite.ts";
import { startTestWorker } from "../support/worker.ts";

const suite = useIrisSuite("cancel", { chunkRows: 100 });

async function submit(rows: number): Promise<Job> {
  const response = await suite.api.app.request("/v1/jobs", {
    method: "POST",
    headers: { Authorization: suite.auth, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "iris", inputs: irisInputs(suite, rows) }),
  });
  expect(response.status).toBe(202);
  return (await response.json()) as Job;
}

async function cancel(id: string, key = suite.auth): Promise<Response> {
  return suite.api.app.request(`/v1/jobs/${id}/cancel`, { method: "POST", headers: { Authorization: key } });
}

describe("POST /v1/jobs/{id}/cancel", () => {
  it("ends a queued job and takes its chunks off the queue", async () => {
    const job = await submit(1000);
    const before = (await suite.api.deps.queue.getJobCounts()).prioritized ?? 0;
    const response = await cancel(job.id);
    expect(response.status).toBe(200);
    expect(((await response.json()) as Job).status).toBe("cancelled");
    expect((await suite.api.deps.queue.getJobCounts()).prioritized).toBe(before - 10);
    expect(((await (await get(suite.api, suite.auth, `/v1/jobs/${job.id}`)).json()) as Job)).toMatchObject({ status: "cancelled", counts: { succeeded: 0 } });
  });

  it("stops a running job midway; the rows scored so far stay readable", async () => {
    // One chunk at a time, each waiting out the batch delay, so the job is caught midway.
    const worker = await startTestWorker(suite.services, { WORKER_CONCURRENCY: "1", MAX_BATCH_ROWS: "100000", MAX_BATCH_DELAY_MS: "200", ADAPTIVE_BATCHING: "false" });
    try {
      const job = await submit(3000);
      for (let i = 0; i < 200; i++) {
        const current = (await (await get(suite.api, suite.auth, `/v1/jobs/${job.id}`)).json()) as Job;
        if (current.counts.succeeded > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      expect((await cancel(job.id)).status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 600));
      const ended = (await (await get(suite.api, suite.auth, `/v1/jobs/${job.id}`)).json()) as Job;
      expect(ended.status).toBe("cancelled");
      expect(ended.counts.succeeded).toBeGreaterThan(0);
      expect(ended.counts.succeeded).toBeLessThan(3000);
      const results = (await (await get(suite.api, suite.auth, `/v1/jobs/${job.id}/results?limit=1000`)).json()) as JobResults;
      expect(results).toMatchObject({ job_status: "cancelled", complete: true });
      // Exactly the counted rows: a chunk being scored when the cancel landed is not stored.
      expect(results.data).toHaveLength(ended.counts.succeeded);
      expect(results.data[0]).toMatchObject({ index: 0, outputs: { label: expect.any(Number) } });
      // No chunk of the cancelled job is scored later.
      const done = await suite.api.db.prisma.jobChunk.count({ where: { jobId: job.id, status: "done" } });
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect(await suite.api.db.prisma.jobChunk.count({ where: { jobId: job.id, status: "done" } })).toBe(done);
    } finally {
      await worker.close();
    }
  });

  it("answers 409 for a finished job and 404 for another tenant's", async () => {
    const worker = await startTestWorker(suite.services);
    try {
      const job = await waitForJob(suite.api, suite.auth, (await submit(5)).id);
      expect(job.status).toBe("succeeded");
      await expectProblem(await cancel(job.id), 409, "conflict");
      const stranger = await suite.api.createTenant("stranger");
      await expectProblem(await cancel(job.id, stranger), 404, "not_found");
    } finally {
      await worker.close();
    }
  });
});
