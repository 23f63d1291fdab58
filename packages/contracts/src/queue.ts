import { z } from "@hono/zod-openapi";

/** The BullMQ payload of one chunk. The rows stay in Postgres; Redis carries only ids. */
export const ChunkJobSchema = z.object({
  chunkId: z.string(),
  jobId: z.string(),
  modelVersionId: z.string(),
});
export type ChunkJob = z.infer<typeof ChunkJobSchema>;
