import type { ChunkToEnqueue } from "@coalesce/contracts";
import { createJobs, GroupCommit, type CreatedJob, type CreateJobInput, type Database } from "@coalesce/db";
import { enqueueChunks, type PredictQueue } from "@coalesce/queue";
import type { Logger } from "pino";

/** Most jobs written by one statement; more wait for the next. */
const MAX_JOBS_PER_WRITE = 256;

/**
 * Stores JSON jobs and queues their chunks, concurrent submissions together: one INSERT statement
 * and one BullMQ addBulk per group (see GroupCommit). Resolves once a job is committed.
 */
export function createJobWriter(db: Database, queue: PredictQueue, logger: Logger): GroupCommit<CreateJobInput, CreatedJob> {
  return new GroupCommit(async (inputs) => {
    const created = await createJobs(db, inputs);
    const chunks: ChunkToEnqueue[] = created.flatMap(({ job, chunkIds }) =>
      chunkIds.map((chunkId, seq) => ({ chunkId, jobId: job.id, modelVersionId: job.modelVersionId, seq, priority: job.priority })),
    );
    try {
      await enqueueChunks(queue, chunks);
    } catch (error) {
      // The jobs and their rows are committed; the worker's reconciler queues what Redis missed.
      logger.warn({ err: error, jobs: created.length }, "enqueue failed; the jobs stay queued for the reconciler");
    }
    return created;
  }, MAX_JOBS_PER_WRITE);
}
