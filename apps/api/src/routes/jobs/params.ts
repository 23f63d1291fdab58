import { z } from "@hono/zod-openapi";
import { prefixedIdSchema } from "../params.ts";

export const JobIdParamsSchema = z.object({
  id: prefixedIdSchema("job", "a job", "job_01jdq3x8m7k2v9c4n5p6r7s8t9"),
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
