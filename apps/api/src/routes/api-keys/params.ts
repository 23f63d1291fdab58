import { z } from "@hono/zod-openapi";
import { prefixedIdSchema } from "../params.ts";

export const ApiKeyIdParamsSchema = z.object({
  id: prefixedIdSchema("key", "an API key", "key_01jdq3x8m7k2v9c4n5p6r7s8t9"),
});
