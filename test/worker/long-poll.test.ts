// GET /v1/jobs/{id}?wait=N: answers when the job finishes, woken through Redis pub/sub.
import type { Job } from "@coalesce/contracts";
import { describe, expect, it } from "vitest";
import { expectProblem, get } from "../support/http.ts";
import { useIrisSuite } from "../support/iris-suite.ts";
import { startTestWorker } from "../support/worker.ts";

const suite = useIrisSuite("long-poll");

async function submit(): Promise<Job> {
  const response = await suite.api.app.request("/v1/jobs", {
    method: "POST",
    headers: { Authorization: suite.auth, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "iris", inputs: suite.features.slice(0, 20).map((f) => ({ features: f })) }),
  });
  expect(response.status).toBe(202);
  return (await response.json()) as Job;
}

async function longPoll(id: string, seconds: number): Promise<{ job: Job; ms: number }> {
  const started = performance.now();
  const response = await get(suite.api, suite.auth, `/v1/jobs/${id}?wait=${seconds}`);
  expect(response.status).toBe(200);
  return { job: (await response.json()) as Job, ms: performance.now() - started };
}

describe("GET /v1/jobs/{id}?wait=N", () => {
  it("answers as soon as the job finishes, long before the wait is up", async () => {
    const job = await submit();
    const polling = longPoll(job.id, 30);
    // No worker yet: the poll is waiting. Start one; the job finishes and the poll answers.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const worker = await startTestWorker(suite.services);
    try {
      const { job: answered, ms } = await polling;
      expect(answered.status).toBe("succeeded");
      expect(answered.counts.succeeded).toBe(20);
      expect(ms).toBeLessThan(30_000);
    } finally {
      await worker.close();
    }
  });

  it("answers with the job as it is when the wait runs out", async () => {
    const job = await submit();
    const { job: answered, ms } = await longPoll(job.id, 1);
    expect(answered.status).toBe("queued");
    expect(ms).toBeGreaterThanOrEqual(900);
  });

  it("is woken by a cancel", async () => {
    const job = await submit();
    const polling = longPoll(job.id, 30);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await suite.api.app.request(`/v1/jobs/${job.id}/cancel`, { method: "POST", headers: { Authorization: suite.auth } })).status).toBe(200);
    const { job: answered, ms } = await polling;
    expect(answered.status).toBe("cancelled");
    expect(ms).toBeLessThan(30_000);
  });

  it("answers at once for a finished job, and refuses a wait past 60 s", async () => {
    const job = await submit();
    await suite.api.app.request(`/v1/jobs/${job.id}/cancel`, { method: "POST", headers: { Authorization: suite.auth } });
    const { job: answered, ms } = await longPoll(job.id, 30);
    expect(answered.status).toBe("cancelled");
    expect(ms).toBeLessThan(30_000);
    await expectProblem(await get(suite.api, suite.auth, `/v1/jobs/${job.id}?wait=61`), 422, "validation_failed");
  });
});
