import { z } from "@hono/zod-openapi";

/** The BullMQ payload of one chunk. The rows stay in Postgres; Redis carries only ids. */
export const ChunkJobSchema = z.object({
  chunkId: z.string(),
  jobId: z.string(),
  modelVersionId: z.string(),
});
export type ChunkJob = z.infer<typeof ChunkJobSchema>;

/** A chunk to enqueue: its payload, plus where it goes in line (its job's lane and its place in the job). */
export type ChunkToEnqueue = ChunkJob & { seq: number; priority: "interactive" | "batch" };
