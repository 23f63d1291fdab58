import { ModelListSchema } from "@coalesce/contracts";
import { listModels, listTenantAliases } from "@coalesce/db";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { V1_ERRORS } from "../responses.ts";
import { presentModel } from "./present.ts";
import { needs } from "../../auth/scopes.ts";

export const listModelsRoute = createRoute({
  method: "get",
  path: "/v1/models",
  operationId: "listModels",
  security: needs("models:read"),
  tags: ["Models"],
  summary: "List models",
  description: "The caller's models with all their versions and signatures, by name.",
  responses: {
    ...V1_ERRORS,
    200: { description: "The models", content: { "application/json": { schema: ModelListSchema } } },
  },
});

export function registerListModels(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(listModelsRoute, async (c) => {
    const [models, aliases] = await Promise.all([listModels(deps.db.prisma, c.get("tenantId")), listTenantAliases(deps.db, c.get("tenantId"))]);
    return c.json({ data: models.map((model) => presentModel(model, aliases.filter((alias) => alias.modelName === model.name))) }, 200);
  });
}
