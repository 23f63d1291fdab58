import { isTransientError } from "@coalesce/contracts";
import { findUnfinishedChunks, stillUnfinishedChunks, type Database, type UnfinishedChunk } from "@coalesce/db";
import { enqueueChunks, type PredictQueue } from "@coalesce/queue";
import type { Logger } from "pino";
import type { Outages } from "./outages.ts";

const PAGE = 1_000;
const PAGES_PER_PASS = 20;

export type ReconcilerOptions = {
  /** How often to look. */
  intervalMs: number;
  /** Only chunks of jobs older than this, so a job being enqueued right now is left alone. */
  graceMs: number;
};

/** What one pass did, by the state the chunks' queue jobs were found in. */
export type ReconcileCounts = { missing: number; failed: number; completed: number };

/**
 * Postgres is the system of record, so whatever it says is still to do for a queued or running job
 * is brought back to the queue, whatever became of its queue job in Redis:
 * - missing (Redis lost it, or never got it): enqueued again;
 * - failed (its attempts ran out before the failure could be recorded, it was failed before
 *   infrastructure errors were told apart, or its worker kept dying) or completed while a chunk of it
 *   is not (it was skipped, or its results were not stored): removed and enqueued afresh, with fresh
 *   attempts. A shared queue job comes back with its chunks that are still unfinished.
 * Waiting, delayed, prioritized and active queue jobs are BullMQ's business (an active one whose
 * worker died is taken over by BullMQ's stalled check). Every step is idempotent (the BullMQ job id is
 * the chunk id or the shared queue job's id, and a worker skips a chunk already done), so several
 * workers may reconcile at once.
 */
export async function reconcileOnce(
  db: Database,
  queue: PredictQueue,
  graceMs: number,
  scan: { from?: UnfinishedChunk | null; maxPages?: number } = {},
): Promise<ReconcileCounts & { next: UnfinishedChunk | null }> {
  const counts: ReconcileCounts = { missing: 0, failed: 0, completed: 0 };
  const createdBefore = new Date(Date.now() - graceMs);
  let after: UnfinishedChunk | null = scan.from ?? null;
  for (let page = 0; page < (scan.maxPages ?? Number.POSITIVE_INFINITY); page++) {
    const chunks: UnfinishedChunk[] = await findUnfinishedChunks(db.prisma, createdBefore, PAGE, after);
    if (chunks.length === 0) return { ...counts, next: null };
    const queueJobIds = [...new Set(chunks.map(queueJobOf))];
    const states = new Map(await Promise.all(queueJobIds.map(async (id) => [id, await queue.getJobState(id)] as const)));
    const finished = queueJobIds.filter((id) => states.get(id) === "failed" || states.get(id) === "completed");
    // A finished queue job holds its id: it goes first, so the add below creates a fresh one. A
    // remove that finds the job taken meanwhile (another worker reconciled it first, and it is active
    // now) removes nothing, and the add then adds nothing.
    await Promise.all(finished.map((id) => queue.remove(id)));
    const candidates = chunks.filter((chunk) => {
      const state = states.get(queueJobOf(chunk));
      return state === "unknown" || state === "failed" || state === "completed";
    });
    // A chunk scored between the first look and the queue's answer had its queue job removed as it
    // completed: a second look leaves it out (enqueueing it anyway would be harmless, the worker
    // skips a done chunk, but it would be reported as lost).
    const unfinished = candidates.length > 0 ? await stillUnfinishedChunks(db, candidates.map((chunk) => chunk.chunkId)) : new Set<string>();
    const requeue = candidates.filter((chunk) => unfinished.has(chunk.chunkId));
    if (requeue.length > 0) await enqueueChunks(queue, requeue);
    for (const chunk of requeue) {
      const state = states.get(queueJobOf(chunk));
      if (state === "unknown") counts.missing++;
      else if (state === "failed") counts.failed++;
      else counts.completed++;
    }
    if (chunks.length < PAGE) return { ...counts, next: null };
    after = chunks[chunks.length - 1] ?? null;
  }
  return { ...counts, next: after };
}

function queueJobOf(chunk: UnfinishedChunk): string {
  return chunk.queueJobId ?? chunk.chunkId;
}

/** Runs reconcileOnce every `intervalMs` (one pass at a time), logging what it brought back. */
export function startReconciler(db: Database, queue: PredictQueue, options: ReconcilerOptions, logger: Logger, outages?: Outages): () => void {
  let running = false;
  // A pass looks at PAGES_PER_PASS pages at most (a backlog of millions of chunks waiting is not
  // millions of Redis calls every interval); the next goes on from there, and a scan that reaches
  // the end starts over.
  let from: UnfinishedChunk | null = null;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      const { next, ...counts } = await reconcileOnce(db, queue, options.graceMs, { from, maxPages: PAGES_PER_PASS });
      from = next;
      outages?.ok("postgres");
      if (counts.missing + counts.failed + counts.completed > 0) {
        logger.warn(counts, "re-enqueued chunks that Postgres holds as unfinished but whose queue jobs were missing or finished");
      }
    } catch (error) {
      // During an outage the outage is the news, not each pass that met it.
      if (outages && isTransientError(error)) outages.failed("postgres", error);
      else logger.warn({ err: error }, "reconcile pass failed; will try again");
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void tick(), options.intervalMs);
  void tick();
  return () => clearInterval(timer);
}
