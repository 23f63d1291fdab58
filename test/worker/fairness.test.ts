// Scheduling between jobs: interactive before batch, and concurrent jobs of one lane taking turns.
import type { Job } from "@coalesce/contracts";
import { describe, expect, it } from "vitest";
import { waitForJob } from "../support/http.ts";
import { irisInputs, useIrisSuite } from "../support/iris-suite.ts";
import { startTestWorker } from "../support/worker.ts";

const suite = useIrisSuite("fairness", { chunkRows: 100 });

const rows = (count: number) => irisInputs(suite, count);

async function submit(body: object): Promise<Job> {
  const response = await suite.api.app.request("/v1/jobs", {
    method: "POST",
    headers: { Authorization: suite.auth, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "iris", ...body }),
  });
  expect(response.status).toBe(202);
  return (await response.json()) as Job;
}


/** The order chunks finished in, as `jobId:seq`. */
async function completionOrder(jobIds: string[]): Promise<string[]> {
  const chunks = await suite.api.db.prisma.jobChunk.findMany({
    where: { jobId: { in: jobIds } },
    orderBy: { completedAt: "asc" },
    select: { jobId: true, seq: true },
  });
  return chunks.map((chunk) => `${chunk.jobId}:${chunk.seq}`);
}

describe("lanes", () => {
  it("picks the lane by size unless the caller names one", async () => {
    expect((await submit({ inputs: rows(1) })).priority).toBe("interactive");
    expect((await submit({ inputs: rows(1001) })).priority).toBe("batch");
    expect((await submit({ inputs: rows(1), priority: "batch" })).priority).toBe("batch");
    const bad = await suite.api.app.request("/v1/jobs", {
      method: "POST",
      headers: { Authorization: suite.auth, "Content-Type": "application/json" },
      body: JSON.stringify({ model: "iris", inputs: rows(1), priority: "urgent" }),
    });
    expect(bad.status).toBe(422);
  });

  it("runs a single-row interactive job ahead of a big batch job queued before it", async () => {
    const big = await submit({ inputs: rows(4000), priority: "batch" });
    const small = await submit({ inputs: rows(1) });
    // The worker starts with both queued: the interactive chunk goes first.
    const worker = await startTestWorker(suite.services, { WORKER_CONCURRENCY: "2", MAX_BATCH_DELAY_MS: "0" });
    try {
      await waitForJob(suite.api, suite.auth, small.id);
      const bigThen = (await (await suite.api.app.request(`/v1/jobs/${big.id}`, { headers: { Authorization: suite.auth } })).json()) as Job;
      // At most the chunks already in hand (about one batch) went before it.
      expect(bigThen.counts.succeeded).toBeLessThanOrEqual(400);
      const order = await completionOrder([big.id, small.id]);
      await waitForJob(suite.api, suite.auth, big.id);
      expect(order.indexOf(`${small.id}:0`)).toBeLessThanOrEqual(2);
    } finally {
      await worker.close();
    }
  });

  it("runs an interactive row that arrives while a big job runs in a run of its own, not in the big job's batches", async () => {
    // Small runs, so that the big job takes a while even on this tiny model.
    const worker = await startTestWorker(suite.services, { MAX_BATCH_ROWS: "8", MAX_BATCH_DELAY_MS: "5" });
    try {
      const big = await submit({ inputs: rows(4000), priority: "batch" });
      for (;;) {
        const now = (await (await suite.api.app.request(`/v1/jobs/${big.id}`, { headers: { Authorization: suite.auth } })).json()) as Job;
        if (now.counts.succeeded > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const small = await waitForJob(suite.api, suite.auth, (await submit({ inputs: rows(1) })).id);
      const bigDone = await waitForJob(suite.api, suite.auth, big.id);
      expect(small.status).toBe("succeeded");
      // It came and went while the big job ran, and never shared a run with the big job's rows.
      expect(Date.parse(small.completed_at as string)).toBeLessThan(Date.parse(bigDone.completed_at as string));
      expect(small.execution.batch_rows).toEqual({ min: 1, mean: 1, max: 1 });
      expect(bigDone.execution.batch_rows?.max).toBe(8);
    } finally {
      await worker.close();
    }
  });

  it("lets concurrent jobs of one lane take turns chunk by chunk", async () => {
    const first = await submit({ inputs: rows(2000), priority: "batch" });
    const second = await submit({ inputs: rows(2000), priority: "batch" });
    const worker = await startTestWorker(suite.services, { WORKER_CONCURRENCY: "2", MAX_BATCH_DELAY_MS: "0" });
    try {
      await Promise.all([waitForJob(suite.api, suite.auth, first.id), waitForJob(suite.api, suite.auth, second.id)]);
      const order = await completionOrder([first.id, second.id]);
      // Chunk k of both jobs finish close together: neither job waits for the other to end.
      for (let seq = 0; seq < 20; seq++) {
        const gap = Math.abs(order.indexOf(`${first.id}:${seq}`) - order.indexOf(`${second.id}:${seq}`));
        expect(gap, `chunk ${seq}`).toBeLessThanOrEqual(4);
      }
    } finally {
      await worker.close();
    }
  });
});
