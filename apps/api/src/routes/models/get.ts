import { ModelNameSchema, ModelSchema } from "@coalesce/contracts";
import { findModel, listAliases } from "@coalesce/db";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { noSuchModel } from "../model-resolver.ts";
import { notFound, PARAM_ERRORS } from "../responses.ts";
import { presentModel } from "./present.ts";
import { needs } from "../../auth/scopes.ts";

export const getModelRoute = createRoute({
  method: "get",
  path: "/v1/models/{name}",
  operationId: "getModel",
  security: needs("models:read"),
  tags: ["Models"],
  summary: "Get a model",
  description: "A model with each of its versions (deleted ones are not shown), their input and output signatures, and the aliases that point at each.",
  request: { params: z.object({ name: ModelNameSchema }) },
  responses: {
    ...PARAM_ERRORS,
    ...notFound("model"),
    200: { description: "The model", content: { "application/json": { schema: ModelSchema } } },
  },
});

export function registerGetModel(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(getModelRoute, async (c) => {
    const { name } = c.req.valid("param");
    const [model, aliases] = await Promise.all([findModel(deps.db.prisma, c.get("tenantId"), name), listAliases(deps.db, c.get("tenantId"), name)]);
    if (!model) throw noSuchModel(name);
    return c.json(presentModel(model, aliases), 200);
  });
}
