import type { ChunkJob, ChunkToEnqueue } from "@coalesce/contracts";
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

const INTERACTIVE_BASE = 1;
const BATCH_BASE = 100_000;
const BULLMQ_PRIORITY_LIMIT = 2 ** 21 - 1;

/**
 * A chunk's BullMQ priority (lower runs first): every interactive chunk before any batch chunk, and
 * within a lane by the chunk's place in its job, so concurrent jobs take turns a chunk at a time
 * instead of the first job's thousand chunks going before the second job's first.
 */
export function chunkPriority(lane: ChunkToEnqueue["priority"], seq: number): number {
  return lane === "interactive"
    ? INTERACTIVE_BASE + Math.min(seq, BATCH_BASE - 2)
    : Math.min(BATCH_BASE + seq, BULLMQ_PRIORITY_LIMIT);
}

/**
 * Enqueues chunks that are already committed to Postgres. The BullMQ job id is the chunk id, so
 * enqueueing a chunk twice (a retried request, a reconciler) adds it once.
 */
export async function enqueueChunks(queue: PredictQueue, chunks: ChunkToEnqueue[]): Promise<void> {
  await queue.addBulk(
    chunks.map(({ seq, priority, ...payload }) => ({
      name: "score" as const,
      data: payload satisfies ChunkJob,
      opts: { ...CHUNK_JOB_OPTIONS, jobId: payload.chunkId, priority: chunkPriority(priority, seq) },
    })),
  );
}

/**
 * Takes chunks of a job that ended early (cancelled, expired, deleted, a rejected upload) off the
 * queue. A chunk already taken by a worker cannot be removed; workers skip chunks of a job that is
 * no longer running, so that is harmless. Returns how many were removed.
 */
export async function unqueueChunks(queue: PredictQueue, chunkIds: readonly string[]): Promise<number> {
  const removed = await Promise.all(chunkIds.map((chunkId) => queue.remove(chunkId).catch(() => 0)));
  return removed.filter((n) => n === 1).length;
}
