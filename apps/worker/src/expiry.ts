import { isTransientError } from "@coalesce/contracts";
import { expireJobs, type Database } from "@coalesce/db";
import { unqueueChunks, type PredictQueue } from "@coalesce/queue";
import type { Logger } from "pino";
import type { Outages } from "./outages.ts";

const SWEEP_EVERY_MS = 5_000;

/**
 * Ends jobs past their expires_at (`expired`, keeping the rows scored so far), takes their waiting
 * chunks off the queue and announces them, every few seconds. Workers skip chunks of a job that is
 * no longer running, so a chunk taken meanwhile is not scored either.
 */
export function startExpiry(db: Database, queue: PredictQueue, announce: (jobId: string) => void, logger: Logger, outages?: Outages): () => void {
  let running = false;
  const sweep = async () => {
    if (running) return;
    running = true;
    try {
      for (const { jobId, queuedChunkIds } of await expireJobs(db)) {
        const unqueued = await unqueueChunks(queue, queuedChunkIds);
        announce(jobId);
        logger.info({ jobId, unqueued }, "job expired");
      }
    } catch (error) {
      if (outages && isTransientError(error)) outages.failed("postgres", error);
      else logger.warn({ err: error }, "expiry sweep failed; will try again");
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void sweep(), SWEEP_EVERY_MS);
  timer.unref();
  void sweep();
  return () => clearInterval(timer);
}
