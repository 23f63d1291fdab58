import { AliasSchema } from "@coalesce/contracts";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { notFound, PARAM_ERRORS } from "../responses.ts";
import { AliasParamsSchema } from "./params.ts";
import { presentAlias } from "./present.ts";
import { requireAlias } from "./require-alias.ts";
import { needs } from "../../auth/scopes.ts";

export const getAliasRoute = createRoute({
  method: "get",
  path: "/v1/models/{name}/aliases/{alias}",
  operationId: "getAlias",
  security: needs("models:read"),
  tags: ["Aliases"],
  summary: "Get an alias",
  description: "The alias's routes (versions and weights), shadow, guard and revision.",
  request: { params: AliasParamsSchema },
  responses: {
    ...PARAM_ERRORS,
    ...notFound("model or alias"),
    200: { description: "The alias", content: { "application/json": { schema: AliasSchema } } },
  },
});

export function registerGetAlias(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(getAliasRoute, async (c) => {
    const { name, alias } = c.req.valid("param");
    return c.json(presentAlias(await requireAlias(deps, c.get("tenantId"), name, alias)), 200);
  });
}
