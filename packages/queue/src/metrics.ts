import { Gauge, type Registry } from "prom-client";
import type { PredictQueue } from "./predict-queue.ts";

/** `coalesce_queue_jobs{queue, state}`: chunks in the prediction queue by state, read at scrape time. */
export function registerQueueGauge(registry: Registry, queue: PredictQueue): void {
  new Gauge({
    name: "coalesce_queue_jobs",
    help: "Chunks in the prediction queue by state",
    labelNames: ["queue", "state"],
    registers: [registry],
    async collect() {
      const counts = await queue.getJobCounts("waiting", "active", "delayed", "failed", "prioritized");
      for (const [state, count] of Object.entries(counts)) this.set({ queue: queue.name, state }, count);
    },
  });
}
