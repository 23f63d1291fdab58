// DELETE /v1/jobs/{id} and retention: a job's inputs and results go, now or after RETENTION_DAYS.
import type { Job } from "@coalesce/contracts";
import { describe, expect, it } from "vitest";
import { expectProblem, get, waitForJob } from "../support/http.ts";
import { useIrisSuite } from "../support/iris-suite.ts";
import { startTestWorker } from "../support/worker.ts";

const suite = useIrisSuite("retention", { chunkRows: 10 });

async function submit(): Promise<Job> {
  const response = await suite.api.app.request("/v1/jobs", {
    method: "POST",
    headers: { Authorization: suite.auth, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "iris", inputs: suite.features.slice(0, 30).map((f) => ({ features: f })) }),
  });
  expect(response.status).toBe(202);
  return (await response.json()) as Job;
}

function remove(id: string, key = suite.auth): Promise<Response> {
  return Promise.resolve(suite.api.app.request(`/v1/jobs/${id}`, { method: "DELETE", headers: { Authorization: key } }));
}

describe("DELETE /v1/jobs/{id}", () => {
  it("deletes a queued job with its rows and takes its chunks off the queue", async () => {
    const job = await submit();
    const before = (await suite.api.deps.queue.getJobCounts()).prioritized ?? 0;
    expect((await remove(job.id)).status).toBe(204);
    expect((await suite.api.deps.queue.getJobCounts()).prioritized).toBe(before - 3);
    expect(await suite.api.db.prisma.jobChunk.count({ where: { jobId: job.id } })).toBe(0);
    await expectProblem(await get(suite.api, suite.auth, `/v1/jobs/${job.id}`), 404, "not_found");
    await expectProblem(await remove(job.id), 404, "not_found");
  });

  it("is 404 for another tenant's job, which stays", async () => {
    const job = await submit();
    const stranger = await suite.api.createTenant("retention-stranger");
    await expectProblem(await remove(job.id, stranger), 404, "not_found");
    expect((await get(suite.api, suite.auth, `/v1/jobs/${job.id}`)).status).toBe(200);
  });
});

describe("retention", () => {
  it("deletes finished jobs past RETENTION_DAYS when a worker sweeps, and keeps the rest", async () => {
    const worker = await startTestWorker(suite.services, { RETENTION_DAYS: "30" });
    let old: Job;
    let recent: Job;
    try {
      old = await waitForJob(suite.api, suite.auth, (await submit()).id);
      recent = await waitForJob(suite.api, suite.auth, (await submit()).id);
    } finally {
      await worker.close();
    }
    await suite.api.db.pool.query(`UPDATE jobs SET completed_at = now() - interval '31 days' WHERE id = $1`, [old.id]);
    // A worker sweeps at start.
    const sweeper = await startTestWorker(suite.services, { RETENTION_DAYS: "30" });
    try {
      for (let i = 0; i < 100 && (await get(suite.api, suite.auth, `/v1/jobs/${old.id}`)).status === 200; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      await sweeper.close();
    }
    await expectProblem(await get(suite.api, suite.auth, `/v1/jobs/${old.id}`), 404, "not_found");
    expect(await suite.api.db.prisma.jobChunk.count({ where: { jobId: old.id } })).toBe(0);
    expect((await get(suite.api, suite.auth, `/v1/jobs/${recent.id}`)).status).toBe(200);
  });
});
