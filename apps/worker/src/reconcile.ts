import { findUnfinishedChunks, type Database } from "@coalesce/db";
import { enqueueChunks, type PredictQueue } from "@coalesce/queue";
import type { Logger } from "pino";

const BATCH = 1_000;

export type ReconcilerOptions = {
  /** How often to look. */
  intervalMs: number;
  /** Only chunks of jobs older than this, so a job being enqueued right now is left alone. */
  graceMs: number;
};

/**
 * Postgres is the system of record, so whatever it says is still to do is enqueued again from time
 * to time. Enqueueing is idempotent (the BullMQ job id is the chunk id, or the id of the queue job
 * it shares), so chunks still in Redis are untouched and several workers may run this at once.
 */
export function startReconciler(db: Database, queue: PredictQueue, options: ReconcilerOptions, logger: Logger): () => void {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      const chunks = await findUnfinishedChunks(db.prisma, new Date(Date.now() - options.graceMs), BATCH);
      // A chunk is lost when the queue job meant to carry it (its own, or one it shares) is gone.
      const queueJobIds = [...new Set(chunks.map((chunk) => chunk.queueJobId ?? chunk.chunkId))];
      const states = new Map(await Promise.all(queueJobIds.map(async (id) => [id, await queue.getJobState(id)] as const)));
      const lost = chunks.filter((chunk) => states.get(chunk.queueJobId ?? chunk.chunkId) === "unknown");
      if (lost.length === 0) return;
      await enqueueChunks(queue, lost);
      logger.warn({ requeued: lost.length }, "re-enqueued chunks that were in Postgres but not in Redis");
    } catch (error) {
      logger.warn({ err: error }, "reconcile pass failed; will try again");
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void tick(), options.intervalMs);
  void tick();
  return () => clearInterval(timer);
}
