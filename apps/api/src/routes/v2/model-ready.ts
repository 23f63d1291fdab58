import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { RETRY_AFTER_SECONDS } from "../../errors.ts";
import { createModelRouter, parseModelRef, type ModelRef } from "../model-resolver.ts";
import { V2_MODEL_ERRORS } from "./errors.ts";
import { ModelParamsSchema, ModelVersionParamsSchema } from "./params.ts";
import { V2ErrorSchema, V2ModelReadySchema } from "./schemas.ts";
import { needs } from "../../auth/scopes.ts";

const DESCRIPTION =
  "Whether the model can answer inference requests now: it exists for your tenant and a worker serving predictions is running " +
  "(workers load a model on its first request). 200 `ready: true`, or 503 `ready: false` with Retry-After; an unknown model is a 404.";

const responses = {
  ...V2_MODEL_ERRORS,
  200: { description: "Ready", content: { "application/json": { schema: V2ModelReadySchema, example: { name: "iris", ready: true } } } },
  503: {
    description: "No worker serves predictions (`ready: false`), or Postgres or Redis cannot be reached (`error`); retry after Retry-After seconds",
    headers: z.object({ "Retry-After": z.string().openapi({ description: "Seconds to wait before asking again", example: "5" }) }),
    content: { "application/json": { schema: z.union([V2ModelReadySchema, V2ErrorSchema]), example: { name: "iris", ready: false } } },
  },
};

export const v2ModelReadyRoute = createRoute({
  method: "get",
  path: "/v2/models/{name}/ready",
  operationId: "modelReady",
  security: needs("models:read"),
  tags: ["Open Inference Protocol"],
  summary: "Model ready (the latest version)",
  description: DESCRIPTION,
  request: { params: ModelParamsSchema },
  responses,
});

export const v2ModelVersionReadyRoute = createRoute({
  method: "get",
  path: "/v2/models/{name}/versions/{version}/ready",
  operationId: "modelVersionReady",
  security: needs("models:read"),
  tags: ["Open Inference Protocol"],
  summary: "Model ready (a given version)",
  description: DESCRIPTION,
  request: { params: ModelVersionParamsSchema },
  responses,
});

export function registerV2ModelReady(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  const route = createModelRouter(deps);
  const handle = async (c: Context<AppEnv>, name: string, ref: ModelRef) => {
    await route(c.get("tenantId"), ref);
    if (await deps.predict.ready()) return c.json({ name, ready: true }, 200);
    // 503 as the server's readiness answers, for the same reason (see server.ts).
    return c.json({ name, ready: false }, 503, { "Retry-After": String(RETRY_AFTER_SECONDS) });
  };
  app.openapi(v2ModelReadyRoute, (c) => handle(c, c.req.valid("param").name, parseModelRef(c.req.valid("param").name)));
  app.openapi(v2ModelVersionReadyRoute, (c) => {
    const { name, version } = c.req.valid("param");
    return handle(c, name, { name, version });
  });
}
