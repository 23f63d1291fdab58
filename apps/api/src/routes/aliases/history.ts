import { AliasHistorySchema } from "@coalesce/contracts";
import { findModel, listAliasHistory } from "@coalesce/db";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { noSuchModel } from "../model-resolver.ts";
import { notFound, PARAM_ERRORS } from "../responses.ts";
import { AliasParamsSchema } from "./params.ts";
import { presentHistoryEntry } from "./present.ts";
import { needs } from "../../auth/scopes.ts";

const MAX_BIGINT = "9223372036854775807";

export const aliasHistoryRoute = createRoute({
  method: "get",
  path: "/v1/models/{name}/aliases/{alias}/history",
  operationId: "getAliasHistory",
  security: needs("models:read"),
  tags: ["Aliases"],
  summary: "An alias's history",
  description:
    "Every change of the alias, newest first: when, by which API key (null for the guard), the routing before and after, and for a " +
    "`guard_rollback` which figure crossed which limit. Kept after the alias is deleted. `before=ID` pages to older entries.",
  request: {
    params: AliasParamsSchema,
    query: z.object({
      limit: z.coerce.number().int().min(1).max(200).default(50),
      before: z
        .string()
        .regex(/^[1-9][0-9]{0,18}$/, "expected an entry id from a previous page")
        // 19 digits can pass Postgres's bigint, which would refuse the query rather than the request.
        // (Compared as text: a refinement also runs on a string the regex refused.)
        .refine((id) => id.length < 19 || (id.length === 19 && id <= MAX_BIGINT), "expected an entry id from a previous page")
        .optional(),
    }),
  },
  responses: {
    ...PARAM_ERRORS,
    ...notFound("model"),
    200: { description: "The changes, newest first", content: { "application/json": { schema: AliasHistorySchema } } },
  },
});

export function registerAliasHistory(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(aliasHistoryRoute, async (c) => {
    const { name, alias } = c.req.valid("param");
    const { limit, before } = c.req.valid("query");
    const tenantId = c.get("tenantId");
    const entries = await listAliasHistory(deps.db, { tenantId, modelName: name, alias, limit, before });
    if (entries.length === 0 && !(await findModel(deps.db.prisma, tenantId, name))) throw noSuchModel(name);
    return c.json({ data: entries.map(presentHistoryEntry) }, 200);
  });
}
