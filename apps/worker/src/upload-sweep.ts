import { setInterval } from "node:timers/promises";
import { isTransientError } from "@coalesce/contracts";
import { endAbandonedUploads, releaseAbandonedClaims, type Database } from "@coalesce/db";
import { unqueueChunks, type PredictQueue } from "@coalesce/queue";
import type { Logger } from "pino";
import type { Outages } from "./outages.ts";

export type UploadSweepOptions = {
  /** How often to look for abandoned uploads. @defaultValue 10,000 (UPLOAD_SWEEP_MS) */
  intervalMs: number;
  /**
   * An upload whose API has not said it is alive for this long is abandoned (the API says so every
   * UPLOAD_HEARTBEAT_MS, 2 s, while it reads a file). UPLOAD_STALE_MS, the setting the API reads too
   * (a retry may take an abandoned upload's Idempotency-Key after it); at least MIN_UPLOAD_STALE_MS.
   * @defaultValue 60,000 (DEFAULT_UPLOAD_STALE_MS)
   */
  staleMs: number;
};

/**
 * Ends CSV uploads whose API process died mid-file, every `intervalMs`: each job fails with
 * `upload_interrupted` (keeping the rows scored so far), its waiting chunks are taken off the queue
 * (a worker skips one taken meanwhile: the job is no longer running) and it is announced, so
 * long-polls and webhooks learn it ended; then Idempotency-Keys whose request died before writing
 * its job are freed, so a retry with the same key starts afresh. Postgres decides each ending (one
 * UPDATE), so any number of workers may sweep at once. Resolves `stop()` once the loop has ended.
 */
export function startUploadSweep(
  db: Database,
  queue: PredictQueue,
  options: UploadSweepOptions,
  announce: (jobId: string) => void,
  logger: Logger,
  outages?: Outages,
): () => Promise<void> {
  const controller = new AbortController();
  const sweep = async () => {
    for (const { jobId, receivedRows, queuedChunkIds } of await endAbandonedUploads(db, options.staleMs)) {
      const unqueued = await unqueueChunks(queue, queuedChunkIds);
      announce(jobId);
      logger.warn({ jobId, receivedRows, unqueued }, "upload interrupted: its API went away before the file ended; job failed");
    }
    const released = await releaseAbandonedClaims(db, options.staleMs);
    if (released > 0) logger.info({ released }, "released the Idempotency-Keys of abandoned requests");
  };
  const loop = (async () => {
    try {
      for await (const _ of setInterval(options.intervalMs, undefined, { signal: controller.signal, ref: false })) {
        await sweep().then(
          () => outages?.ok("postgres"),
          (error: unknown) => {
            // During an outage the outage is the news (said once), not each sweep that met it.
            if (outages && isTransientError(error)) outages.failed("postgres", error);
            else logger.warn({ err: error }, "upload sweep failed; will try again");
          },
        );
      }
    } catch (error) {
      if (!controller.signal.aborted) throw error;
    }
  })();
  return async () => {
    controller.abort();
    await loop;
  };
}
