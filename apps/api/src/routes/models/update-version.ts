import { ModelNameSchema, ModelVersionSchema, UpdateModelVersionRequestSchema } from "@coalesce/contracts";
import { listAliases, updateModelVersionBatching } from "@coalesce/db";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { limitBody } from "../../middleware/body-limit.ts";
import { JSON_BODY_ERRORS, notFound } from "../responses.ts";
import { presentModelVersion } from "./present.ts";
import { needs } from "../../auth/scopes.ts";
import { audit } from "../audit/record.ts";

export const updateModelVersionRoute = createRoute({
  method: "patch",
  path: "/v1/models/{name}/versions/{version}",
  operationId: "updateModelVersion",
  security: needs("models:write"),
  tags: ["Models"],
  summary: "Change a model version's batching, description or labels",
  description:
    "`batching` sets how the workers batch this version's rows: `max_batch_rows` (1 turns coalescing off), `max_batch_delay_ms`, " +
    "`max_batch_bytes`. A key left out stays as it is; null goes back to the workers' default. Running workers apply " +
    "the change within a few seconds (BATCHING_REFRESH_MS), without a restart. `description` (null clears it) and `labels` " +
    "(replaced whole) describe the version for people and tools.",
  request: {
    params: z.object({ name: ModelNameSchema, version: z.coerce.number().int().min(1).max(2_147_483_647).openapi({ example: 1 }) }),
    body: { required: true, content: { "application/json": { schema: UpdateModelVersionRequestSchema } } },
  },
  responses: {
    ...JSON_BODY_ERRORS,
    ...notFound("model or version"),
    200: { description: "The version with its new limits", content: { "application/json": { schema: ModelVersionSchema } } },
  },
});

export function registerUpdateModelVersion(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.use(updateModelVersionRoute.getRoutingPath(), limitBody(deps.limits.maxBodyBytes, "the request body"));
  app.openapi(updateModelVersionRoute, async (c) => {
    const { name, version } = c.req.valid("param");
    const { batching = {}, description, labels } = c.req.valid("json");
    const tenantId = c.get("tenantId");
    const updated = await updateModelVersionBatching(
      deps.db,
      tenantId,
      name,
      version,
      { maxBatchRows: batching.max_batch_rows, maxBatchDelayMs: batching.max_batch_delay_ms, maxBatchBytes: batching.max_batch_bytes },
      { description, labels },
    );
    if (!updated) throw new ApiError("not_found", `model '${name}' has no version ${version}`);
    await audit(c, deps, "model_version.updated", `${name}@${version}`, { batching, ...(description !== undefined ? { description } : {}), ...(labels !== undefined ? { labels } : {}) });
    c.get("logger").info({ model: name, version, batching, description: description !== undefined, labels: labels !== undefined }, "model version changed");
    return c.json(presentModelVersion(updated, await listAliases(deps.db, tenantId, name)), 200);
  });
}
