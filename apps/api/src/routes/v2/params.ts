import { ModelNameSchema, ModelRefSchema } from "@coalesce/contracts";
import { z } from "@hono/zod-openapi";

/** `{name}` in a /v2/models path: the name as /v1 spells it, or with an alias or version (`iris@canary`, `iris@3`). */
export const ModelParamsSchema = z.object({ name: ModelRefSchema });

/** `{name}` and `{version}`: versions are the numbers /v1 gives them (the protocol's version is a string; ours are 1, 2, ...). */
export const ModelVersionParamsSchema = z.object({
  name: ModelNameSchema,
  version: z.coerce.number().int().min(1).max(2_147_483_647).openapi({ example: 1 }),
});
