// expires_after: a job not finished in time ends `expired`, keeping the rows scored so far.
import type { Job, JobResults } from "@coalesce/contracts";
import { describe, expect, it } from "vitest";
import { expectProblem, get, waitForJob } from "../support/http.ts";
import { irisInputs, useIrisSuite } from "../support/iris-suite.ts";
import { startTestWorker } from "../support/worker.ts";

const suite = useIrisSuite("expiry", { chunkRows: 100 });

async function submit(rows: number, extra: object): Promise<Response> {
  return suite.api.app.request("/v1/jobs", {
    method: "POST",
    headers: { Authorization: suite.auth, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "iris", inputs: irisInputs(suite, rows), ...extra }),
  });
}

describe("expires_after", () => {
  it("ends a job that no worker reached in time, and takes its chunks off the queue", async () => {
    const job = (await (await submit(500, { expires_after: 1 })).json()) as Job;
    expect(job.expires_at).not.toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 1200));
    const before = (await suite.api.deps.queue.getJobCounts()).prioritized ?? 0;
    // A worker sweeps for expired jobs at start (and every few seconds).
    const worker = await startTestWorker(suite.services);
    try {
      const ended = await waitForJob(suite.api, suite.auth, job.id, 10_000);
      expect(ended).toMatchObject({ status: "expired", counts: { succeeded: 0 } });
      expect(ended.completed_at).not.toBeNull();
      // The sweep ends the job first, then takes its chunks off the queue: give it that moment.
      const queued = async () => (await suite.api.deps.queue.getJobCounts()).prioritized ?? 0;
      for (let i = 0; i < 100 && (await queued()) > before - 5; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(await queued()).toBeLessThanOrEqual(before - 5);
      const results = (await (await get(suite.api, suite.auth, `/v1/jobs/${job.id}/results`)).json()) as JobResults;
      expect(results).toMatchObject({ job_status: "expired", complete: true, data: [] });
    } finally {
      await worker.close();
    }
  });

  it("keeps the rows scored before the deadline", async () => {
    const worker = await startTestWorker(suite.services, { WORKER_CONCURRENCY: "1", MAX_BATCH_ROWS: "100000", MAX_BATCH_DELAY_MS: "250", ADAPTIVE_BATCHING: "false" });
    try {
      const job = (await (await submit(3000, { expires_after: 1, priority: "interactive" })).json()) as Job;
      const ended = await waitForJob(suite.api, suite.auth, job.id, 15_000);
      expect(ended.status).toBe("expired");
      expect(ended.counts.succeeded).toBeGreaterThan(0);
      expect(ended.counts.succeeded).toBeLessThan(3000);
      const results = (await (await get(suite.api, suite.auth, `/v1/jobs/${job.id}/results?limit=1000`)).json()) as JobResults;
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
