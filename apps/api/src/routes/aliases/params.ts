import { AliasNameSchema, ModelNameSchema } from "@coalesce/contracts";
import { z } from "@hono/zod-openapi";

/** `{name}` and `{alias}` of every /v1/models/{name}/aliases/{alias} route. */
export const AliasParamsSchema = z.object({ name: ModelNameSchema, alias: AliasNameSchema });
