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
  // Attempts are for the work's own failures (a model that will not load, say): a transient
  // infrastructure failure (Postgres or Redis unreachable) is held back by the worker without
  // spending one, and a bad row never reaches here as an exception because the worker fails it alone.
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
 * Enqueues chunks that are already committed to Postgres: one BullMQ job per chunk, or per group of
 * chunks that share a queue job id (recorded in Postgres when the chunks were written). The BullMQ
 * job id is the chunk id or the group's id, so enqueueing twice (a retried request, a reconciler)
 * adds it once.
 */
export async function enqueueChunks(queue: PredictQueue, chunks: ChunkToEnqueue[]): Promise<void> {
  const queueJobs = new Map<string, { data: ChunkJob; priority: number }>();
  for (const chunk of chunks) {
    const id = chunk.queueJobId ?? chunk.chunkId;
    const priority = chunkPriority(chunk.priority, chunk.seq);
    const queueJob = queueJobs.get(id);
    if (!queueJob) {
      queueJobs.set(id, { data: { modelVersionId: chunk.modelVersionId, chunks: [{ chunkId: chunk.chunkId, jobId: chunk.jobId }] }, priority });
      continue;
    }
    queueJob.data.chunks.push({ chunkId: chunk.chunkId, jobId: chunk.jobId });
    queueJob.priority = Math.min(queueJob.priority, priority);
  }
  await queue.addBulk(
    [...queueJobs].map(([jobId, { data, priority }]) => ({
      name: "score" as const,
      data,
      opts: { ...CHUNK_JOB_OPTIONS, jobId, priority },
    })),
  );
}

/**
 * Takes chunks of a job that ended early (cancelled, expired, deleted, a rejected upload) off the
 * queue, by the ids of chunks that have a queue job of their own (a queue job shared with other
 * jobs' chunks stays). A chunk already taken by a worker, or left in a shared queue job, is skipped
 * by the worker since its job is no longer running. Returns how many were removed.
 */
export async function unqueueChunks(queue: PredictQueue, chunkIds: readonly string[]): Promise<number> {
  const removed = await Promise.all(chunkIds.map((chunkId) => queue.remove(chunkId).catch(() => 0)));
  return removed.filter((n) => n === 1).length;
}
