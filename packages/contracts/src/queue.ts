import { z } from "@hono/zod-openapi";

/**
 * The BullMQ payload: one chunk, or several small chunks of one model version submitted together
 * (single-row jobs arriving at once share a queue job, so the queue's cost is paid once for them).
 * The rows stay in Postgres; Redis carries only ids.
 */
export const ChunkJobSchema = z.object({
  modelVersionId: z.string(),
  chunks: z.array(z.object({ chunkId: z.string(), jobId: z.string() })).min(1),
});
export type ChunkJob = z.infer<typeof ChunkJobSchema>;

/**
 * A chunk to enqueue, with where it goes in line (its job's lane and its place in the job) and the
 * queue job it shares with other chunks, if any (null or absent: a queue job of its own, whose id is
 * the chunk id).
 */
export type ChunkToEnqueue = {
  chunkId: string;
  jobId: string;
  modelVersionId: string;
  seq: number;
  priority: "interactive" | "batch";
  queueJobId?: string | null;
};
