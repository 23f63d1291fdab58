import { WebhookDeliveryListSchema } from "@coalesce/contracts";
import { findJob, listJobDeliveries, retryDelivery } from "@coalesce/db";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { JobIdParamsSchema } from "../jobs/params.ts";
import { notFound, PARAM_ERRORS, problem } from "../responses.ts";
import { DeliveryIdParamsSchema } from "./params.ts";
import { presentDelivery } from "./present.ts";
import { needs } from "../../auth/scopes.ts";

const listDeliveriesRoute = createRoute({
  method: "get",
  path: "/v1/jobs/{id}/deliveries",
  operationId: "listJobDeliveries",
  security: needs("jobs:read"),
  tags: ["Webhooks"],
  summary: "A job's webhook deliveries",
  description: "Every event of the job sent to each endpoint (and to the job's webhook_url), with every attempt: when, how long, the status code or error.",
  request: { params: JobIdParamsSchema },
  responses: {
    ...PARAM_ERRORS,
    ...notFound("job"),
    200: { description: "The deliveries, oldest first", content: { "application/json": { schema: WebhookDeliveryListSchema } } },
  },
});

const retryDeliveryRoute = createRoute({
  method: "post",
  path: "/v1/deliveries/{id}/retry",
  operationId: "retryDelivery",
  security: needs("webhooks:write"),
  tags: ["Webhooks"],
  summary: "Send a delivery again",
  description:
    "Replays the delivery now, with the same webhook-id and body (receivers de-duplicate on webhook-id); if it fails " +
    "the retry schedule starts over. Works on failed and succeeded deliveries alike.",
  request: { params: DeliveryIdParamsSchema },
  responses: {
    ...PARAM_ERRORS,
    ...notFound("delivery"),
    202: { description: "Queued for delivery now", content: { "application/json": { schema: z.object({ id: z.string(), state: z.literal("pending") }) } } },
    409: problem("Its endpoint is disabled or was deleted (`code: conflict`)"),
  },
});

export function registerDeliveryRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(listDeliveriesRoute, async (c) => {
    const { id } = c.req.valid("param");
    const tenantId = c.get("tenantId");
    if (!(await findJob(deps.db, tenantId, id))) throw new ApiError("not_found", `no job '${id}'`);
    const deliveries = await listJobDeliveries(deps.db, tenantId, id);
    return c.json({ data: deliveries.map(presentDelivery) }, 200);
  });

  app.openapi(retryDeliveryRoute, async (c) => {
    const { id } = c.req.valid("param");
    const outcome = await retryDelivery(deps.db, c.get("tenantId"), id);
    if (outcome.kind === "not_found") throw new ApiError("not_found", `no delivery '${id}'`);
    if (outcome.kind === "endpoint_unavailable") {
      throw new ApiError("conflict", `cannot send delivery '${id}' again: ${outcome.reason}; re-enable it with PATCH /v1/webhooks/{id} {"enabled": true}`);
    }
    c.get("logger").info({ deliveryId: id, jobId: outcome.jobId }, "webhook delivery replay requested");
    return c.json({ id, state: "pending" as const }, 202);
  });
}
