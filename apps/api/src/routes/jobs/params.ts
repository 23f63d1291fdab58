import { z } from "@hono/zod-openapi";

export const JobIdParamsSchema = z.object({
  id: z.string().min(1).max(64).openapi({ example: "job_01jdq3x8m7k2v9c4n5p6r7s8t9" }),
});

export function pageLimitSchema(defaultLimit: number, maxLimit: number) {
  return z.coerce
    .number()
    .int()
    .min(1)
    .max(maxLimit)
    .default(defaultLimit)
    .openapi({ description: `Items per page, 1-${maxLimit}.`, example: defaultLimit });
}
