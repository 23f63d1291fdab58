import type { ChunkToEnqueue } from "@coalesce/contracts";
import { createJobs, type CreatedJob, type CreateJobInput, type Database } from "@coalesce/db";
import { enqueueChunks, type PredictQueue } from "@coalesce/queue";
import type { Logger } from "pino";

/** Most jobs written by one statement; more wait for the next. */
const MAX_JOBS_PER_WRITE = 256;

type Pending = { input: CreateJobInput; resolve: (job: CreatedJob) => void; reject: (error: unknown) => void };

/**
 * Writes JSON jobs the way a database does group commit: submissions that arrive while a write is
 * in flight go together in the next one, as one INSERT statement and one BullMQ addBulk. One
 * request alone is written at once; under load, the per-job cost of a round trip to Postgres and
 * Redis is shared by every job of the write.
 */
export class JobWriter {
  readonly #db: Database;
  readonly #queue: PredictQueue;
  readonly #logger: Logger;
  #pending: Pending[] = [];
  #writing = false;

  constructor(db: Database, queue: PredictQueue, logger: Logger) {
    this.#db = db;
    this.#queue = queue;
    this.#logger = logger;
  }

  /** Stores the job and its rows, then queues its chunks; resolves once it is committed. */
  write(input: CreateJobInput): Promise<CreatedJob> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ input, resolve, reject });
      if (!this.#writing) void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending.splice(0, MAX_JOBS_PER_WRITE);
        let created: CreatedJob[];
        try {
          created = await createJobs(this.#db, batch.map((p) => p.input));
        } catch (error) {
          for (const p of batch) p.reject(error);
          continue;
        }
        const chunks: ChunkToEnqueue[] = created.flatMap(({ job, chunkIds }) =>
          chunkIds.map((chunkId, seq) => ({ chunkId, jobId: job.id, modelVersionId: job.modelVersionId, seq, priority: job.priority })),
        );
        try {
          await enqueueChunks(this.#queue, chunks);
        } catch (error) {
          // The jobs and their rows are committed; the worker's reconciler queues what Redis missed.
          this.#logger.warn({ err: error, jobs: created.length }, "enqueue failed; the jobs stay queued for the reconciler");
        }
        batch.forEach((p, i) => p.resolve(created[i] as CreatedJob));
      }
    } finally {
      this.#writing = false;
    }
  }
}
