import { Gauge, type Registry } from "prom-client";
import type { RedisClient } from "./connection.ts";
import type { PredictQueue } from "./predict-queue.ts";

/**
 * Longest a scrape waits for Redis' counts: a Redis that does not answer leaves the gauge empty
 * (and the API's coalesce_dependency_up says why) rather than holding /metrics until Prometheus
 * gives up on the whole scrape.
 */
const COUNTS_TIMEOUT_MS = 2_000;

/**
 * `coalesce_queue_jobs{queue, state}`: BullMQ jobs in the prediction queue by state, read at scrape
 * time. Each carries one chunk, or several small chunks submitted together. `connection` is the
 * queue's own.
 */
export function registerQueueGauge(registry: Registry, queue: PredictQueue, connection: Pick<RedisClient, "status">): void {
  new Gauge({
    name: "coalesce_queue_jobs",
    help: "BullMQ jobs in the prediction queue by state (each carries one chunk, or several small ones submitted together)",
    labelNames: ["queue", "state"],
    registers: [registry],
    async collect() {
      this.reset();
      // A worker's connection queues commands while Redis is away and sends them when it is back: a
      // read per scrape would pile up meanwhile. Not connected, the gauge is left empty at once.
      if (connection.status !== "ready") return;
      let timer: NodeJS.Timeout | undefined;
      const counts = await Promise.race([
        queue.getJobCounts("waiting", "active", "delayed", "failed", "prioritized"),
        new Promise<null>((resolve) => {
          timer = setTimeout(() => resolve(null), COUNTS_TIMEOUT_MS);
        }),
      ])
        .catch(() => null)
        .finally(() => clearTimeout(timer));
      if (counts) for (const [state, count] of Object.entries(counts)) this.set({ queue: queue.name, state }, count);
    },
  });
}
