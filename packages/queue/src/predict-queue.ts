import type { ChunkJob } from "@coalesce/contracts";
import { Queue, type ConnectionOptions, type JobsOptions } from "bullmq";

export const PREDICT_QUEUE = "predict";

/** @defaultValue "coalesce"; tests give each run its own prefix so queues never mix. */
export const DEFAULT_QUEUE_PREFIX = "coalesce";

export type QueueSettings = { connection: ConnectionOptions; prefix: string };

export type PredictQueue = Queue<ChunkJob, void, "score">;

export function createPredictQueue(settings: QueueSettings): PredictQueue {
  return new Queue<ChunkJob, void, "score">(PREDICT_QUEUE, {
    connection: settings.connection,
    prefix: settings.prefix,
  });
}

const CHUNK_JOB_OPTIONS: JobsOptions = {
  // A transient failure (Postgres or Redis hiccup) retries; a bad row never reaches here as an
  // exception because the worker fails it alone.
  attempts: 5,
  backoff: { type: "exponential", delay: 1_000 },
  // Postgres holds the results; a finished chunk need not stay in Redis.
  removeOnComplete: true,
  removeOnFail: { age: 7 * 24 * 3600 },
};

/**
 * Enqueues chunks that are already committed to Postgres. The BullMQ job id is the chunk id, so
 * enqueueing a chunk twice (a retried request, a reconciler) adds it once.
 */
export async function enqueueChunks(queue: PredictQueue, chunks: ChunkJob[]): Promise<void> {
  await queue.addBulk(
    chunks.map((chunk) => ({ name: "score" as const, data: chunk, opts: { ...CHUNK_JOB_OPTIONS, jobId: chunk.chunkId } })),
  );
}
