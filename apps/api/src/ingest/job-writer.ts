import { describeFailure, TransientError, type ChunkToEnqueue } from "@coalesce/contracts";
import { createJobs, GroupCommit, type CreatedJob, type CreateJobInput, type Database, type QueueSharing, type VersionGone } from "@coalesce/db";
import { enqueueChunks, type PredictQueue } from "@coalesce/queue";
import type { Logger } from "pino";

/** Most jobs written by one statement; more wait for the next. */
const MAX_JOBS_PER_WRITE = 256;

/** Small chunks written together share BullMQ jobs of up to a full batch of rows. */
const QUEUE_SHARING: QueueSharing = { maxRows: 256, maxChunks: 256 };

/**
 * Longest a submission waits for Redis to take its chunks. Past the Redis connection's own command
 * timeout, for the one wait that has none: BullMQ holding commands until its first connection is
 * ready (an API started while Redis was down).
 */
const ENQUEUE_WAIT_MS = 3_000;

/**
 * Stores JSON jobs and queues their chunks, concurrent submissions together: one INSERT statement
 * and one BullMQ addBulk per group (see GroupCommit), in which small chunks share queue jobs (see
 * QueueSharing). Resolves once a job is committed.
 */
export function createJobWriter(db: Database, queue: PredictQueue, logger: Logger): GroupCommit<CreateJobInput, CreatedJob | VersionGone> {
  // Jobs committed while Redis would not take their chunks: said once when it starts, once when it ends.
  let deferredJobs = 0;
  return new GroupCommit(async (inputs) => {
    const created = await createJobs(db, inputs, QUEUE_SHARING);
    const chunks: ChunkToEnqueue[] = created.flatMap((written) =>
      "gone" in written
        ? []
        : written.chunks.map((chunk) => ({
            chunkId: chunk.id,
            jobId: written.job.id,
            modelVersionId: written.job.modelVersionId,
            seq: chunk.seq,
            priority: written.job.priority,
            queueJobId: chunk.queueJobId,
          })),
    );
    try {
      await enqueueWithin(queue, chunks);
      if (deferredJobs > 0) {
        logger.info({ deferredJobs }, `enqueueing works again; ${deferredJobs} jobs were left for the reconciler meanwhile`);
        deferredJobs = 0;
      }
    } catch (error) {
      // The jobs and their rows are committed; the worker's reconciler queues what Redis missed
      // (an enqueue that lands after all is harmless: queue job ids are the chunks' ids).
      if (deferredJobs === 0) logger.warn({ reason: describeFailure(error), jobs: created.length }, "enqueue failed; jobs stay queued for the reconciler until Redis takes them");
      deferredJobs += created.length;
    }
    return created;
  }, MAX_JOBS_PER_WRITE);
}

/**
 * Queues chunks already stored, or fails with a TransientError once ENQUEUE_WAIT_MS have passed
 * (the add itself goes on, and lands harmlessly if it lands: queue job ids are the chunks' ids).
 */
export function enqueueWithin(queue: PredictQueue, chunks: ChunkToEnqueue[]): Promise<void> {
  return withDeadline(enqueueChunks(queue, chunks), ENQUEUE_WAIT_MS);
}

/** `work`, or a TransientError once `ms` have passed; the work itself goes on. */
async function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TransientError("redis", `Redis did not take the chunks within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
