// Fair share across tenants: another tenant's small job is scored while one tenant's big CSV is,
// rather than after it.
import type { Job } from "@coalesce/contracts";
import { describe, expect, it } from "vitest";
import { waitForJob } from "../support/http.ts";
import { irisInputs, irisTenant, useIrisSuite } from "../support/iris-suite.ts";
import { startTestWorker } from "../support/worker.ts";

const BIG_ROWS = 100_000;

const suite = useIrisSuite("fair-share", { chunkRows: 500 });

async function getJob(auth: string, id: string): Promise<Job> {
  return (await (await suite.api.app.request(`/v1/jobs/${id}`, { headers: { Authorization: auth } })).json()) as Job;
}

function irisCsv(rows: number): string {
  const lines = ["sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm"];
  for (let i = 0; i < rows; i++) lines.push((suite.features[i % suite.features.length] as number[]).join(","));
  return `${lines.join("\n")}\n`;
}

describe("fair share across tenants", () => {
  it("scores a small job of one tenant while another tenant's big CSV is still being scored", { timeout: 120_000 }, async () => {
    const other = await irisTenant(suite, "fair-share-b");
    const upload = await suite.api.app.request("/v1/jobs?model=iris", {
      method: "POST",
      headers: { Authorization: suite.auth, "Content-Type": "text/csv" },
      body: irisCsv(BIG_ROWS),
    });
    expect(upload.status).toBe(202);
    const big = (await upload.json()) as Job;
    // Small runs and fewer chunks in hand, so that the big job takes a while even on this tiny model.
    const worker = await startTestWorker(suite.services, { WORKER_CONCURRENCY: "16", MAX_BATCH_ROWS: "32", MAX_BATCH_DELAY_MS: "0" });
    try {
      while ((await getJob(suite.auth, big.id)).counts.succeeded === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      // Batch lane, as the big job: a 10-row job would otherwise go to the interactive lane, ahead of it anyway.
      const response = await suite.api.app.request("/v1/jobs", {
        method: "POST",
        headers: { Authorization: other, "Content-Type": "application/json" },
        body: JSON.stringify({ model: "iris", inputs: irisInputs(suite, 10), priority: "batch" }),
      });
      expect(response.status).toBe(202);
      const small = await waitForJob(suite.api, other, ((await response.json()) as Job).id);
      const bigThen = await getJob(suite.auth, big.id);
      expect(small.status).toBe("succeeded");
      expect(small.counts.succeeded).toBe(10);
      // The big job was still being scored when the small one ended.
      expect(bigThen.status).toBe("running");
      expect(bigThen.counts.succeeded).toBeLessThan(BIG_ROWS);

      const bigDone = await waitForJob(suite.api, suite.auth, big.id, 110_000);
      expect(bigDone.status).toBe("succeeded");
      expect(bigDone.counts.succeeded).toBe(BIG_ROWS);
      expect(Date.parse(small.completed_at as string)).toBeLessThan(Date.parse(bigDone.completed_at as string));
    } finally {
      await worker.close();
    }
  });
});
