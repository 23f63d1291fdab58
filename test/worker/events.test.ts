// GET /v1/jobs/{id}/events: a Server-Sent Events stream of progress, then the end.
import type { Job } from "@coalesce/contracts";
import { describe, expect, it } from "vitest";
import { expectProblem, get } from "../support/http.ts";
import { irisInputs, useIrisSuite } from "../support/iris-suite.ts";
import { startTestWorker } from "../support/worker.ts";

const suite = useIrisSuite("events", { chunkRows: 100 });

function parseEvents(text: string): { event: string; job: Job }[] {
  return text
    .split("\n\n")
    .filter((block) => block.trim())
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? "";
      const data = /^data: (.*)$/m.exec(block)?.[1] ?? "{}";
      return { event, job: JSON.parse(data) as Job };
    });
}

describe("GET /v1/jobs/{id}/events", () => {
  it("streams the job's progress while it runs, then its end", async () => {
    // One chunk at a time, each waiting out the batch delay: a few seconds of progress to watch.
    const worker = await startTestWorker(suite.services, { WORKER_CONCURRENCY: "1", MAX_BATCH_ROWS: "100000", MAX_BATCH_DELAY_MS: "250", ADAPTIVE_BATCHING: "false" });
    try {
      const submitted = await suite.api.app.request("/v1/jobs", {
        method: "POST",
        headers: { Authorization: suite.auth, "Content-Type": "application/json" },
        body: JSON.stringify({ model: "iris", inputs: irisInputs(suite, 1000) }),
      });
      const job = (await submitted.json()) as Job;
      const response = await get(suite.api, suite.auth, `/v1/jobs/${job.id}/events`);
      expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
      const events = parseEvents(await response.text());
      const progress = events.filter((e) => e.event === "progress");
      expect(progress.length).toBeGreaterThanOrEqual(2);
      expect(progress.some((e) => e.job.status === "running" && e.job.counts.succeeded > 0 && e.job.counts.succeeded < 1000)).toBe(true);
      // Counts only grow, and the stream ends with one `end` event.
      const counts = progress.map((e) => e.job.counts.succeeded);
      expect(counts).toEqual([...counts].sort((a, b) => a - b));
      expect(events.at(-1)).toMatchObject({ event: "end", job: { id: job.id, status: "succeeded", counts: { succeeded: 1000 } } });
      expect(events.filter((e) => e.event === "end")).toHaveLength(1);
    } finally {
      await worker.close();
    }
  });

  it("is 404 for an unknown job", async () => {
    await expectProblem(await get(suite.api, suite.auth, "/v1/jobs/job_nope/events"), 404, "not_found");
  });
});
