import { AliasListSchema, ModelNameSchema } from "@coalesce/contracts";
import { findModel, listAliases } from "@coalesce/db";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { noSuchModel } from "../model-resolver.ts";
import { notFound, PARAM_ERRORS } from "../responses.ts";
import { presentAlias } from "./present.ts";
import { needs } from "../../auth/scopes.ts";

export const listAliasesRoute = createRoute({
  method: "get",
  path: "/v1/models/{name}/aliases",
  operationId: "listAliases",
  security: needs("models:read"),
  tags: ["Aliases"],
  summary: "List a model's aliases",
  description: "Every alias of the model, by name, with its routes, shadow and guard.",
  request: { params: z.object({ name: ModelNameSchema }) },
  responses: {
    ...PARAM_ERRORS,
    ...notFound("model"),
    200: { description: "The aliases", content: { "application/json": { schema: AliasListSchema } } },
  },
});

export function registerListAliases(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(listAliasesRoute, async (c) => {
    const { name } = c.req.valid("param");
    const aliases = await listAliases(deps.db, c.get("tenantId"), name);
    if (aliases.length === 0 && !(await findModel(deps.db.prisma, c.get("tenantId"), name))) throw noSuchModel(name);
    return c.json({ data: aliases.map(presentAlias) }, 200);
  });
}
