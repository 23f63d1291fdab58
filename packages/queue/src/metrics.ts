import { Gauge, type Registry } from "prom-client";
import type { PredictQueue } from "./predict-queue.ts";

/**
 * `coalesce_queue_jobs{queue, state}`: BullMQ jobs in the prediction queue by state, read at scrape
 * time. Each carries one chunk, or several small chunks submitted together.
 */
export function registerQueueGauge(registry: Registry, queue: PredictQueue): void {
  new Gauge({
    name: "coalesce_queue_jobs",
    help: "BullMQ jobs in the prediction queue by state (each carries one chunk, or several small ones submitted together)",
    labelNames: ["queue", "state"],
    registers: [registry],
    async collect() {
      const counts = await queue.getJobCounts("waiting", "active", "delayed", "failed", "prioritized");
      for (const [state, count] of Object.entries(counts)) this.set({ queue: queue.name, state }, count);
    },
  });
}
