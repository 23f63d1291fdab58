import {
  CreatedWebhookSchema,
  CreateWebhookRequestSchema,
  DEFAULT_WEBHOOK_EVENTS,
  UpdateWebhookRequestSchema,
  WebhookEndpointSchema,
  WebhookListSchema,
} from "@coalesce/contracts";
import {
  createWebhookEndpoint,
  deleteWebhookEndpoint,
  findWebhookEndpoint,
  listWebhookEndpoints,
  updateWebhookEndpoint,
} from "@coalesce/db";
import { generateSecret } from "@coalesce/webhooks";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { limitBody } from "../../middleware/body-limit.ts";
import { JSON_BODY_ERRORS, notFound, PARAM_ERRORS, problem, V1_ERRORS } from "../responses.ts";
import { assertDeliverableUrl } from "./check-url.ts";
import { WebhookIdParamsSchema } from "./params.ts";
import { presentWebhook } from "./present.ts";
import { needs } from "../../auth/scopes.ts";
import { audit } from "../audit/record.ts";

const TAGS = ["Webhooks"];
const json = <T>(schema: T) => ({ "application/json": { schema } });

const createWebhookRoute = createRoute({
  method: "post",
  path: "/v1/webhooks",
  operationId: "createWebhook",
  security: needs("webhooks:write"),
  tags: TAGS,
  summary: "Register a webhook endpoint",
  description:
    "Every event of a subscribed type for this tenant's jobs is POSTed to `url` as a Standard Webhooks v1 delivery: " +
    "headers `webhook-id` (the same on every retry of one event), `webhook-timestamp` and `webhook-signature` " +
    "(`v1,<base64 HMAC-SHA256 of id.timestamp.body>`), body `{type, timestamp, data}` where `data` is the job as " +
    "GET /v1/jobs/{id} shows it. A 2xx answer is success; anything else, or no answer within 10 s, is retried " +
    "(5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); 429 and 503 are retried after their Retry-After; 410 Gone " +
    "disables the endpoint. The signing `secret` is shown only in this answer.",
  request: { body: { required: true, content: json(CreateWebhookRequestSchema) } },
  responses: {
    ...JSON_BODY_ERRORS,
    201: { description: "Registered", content: json(CreatedWebhookSchema) },
    422: problem(
      "The URL cannot be delivered to (not https, or a private address), an unknown event type or field; `errors` names it (`code: validation_failed`)",
    ),
  },
});

const listWebhooksRoute = createRoute({
  method: "get",
  path: "/v1/webhooks",
  operationId: "listWebhooks",
  security: needs("webhooks:write"),
  tags: TAGS,
  summary: "List webhook endpoints",
  responses: { ...V1_ERRORS, 200: { description: "The tenant's endpoints", content: json(WebhookListSchema) } },
});

const getWebhookRoute = createRoute({
  method: "get",
  path: "/v1/webhooks/{id}",
  operationId: "getWebhook",
  security: needs("webhooks:write"),
  tags: TAGS,
  summary: "Get a webhook endpoint",
  request: { params: WebhookIdParamsSchema },
  responses: { ...PARAM_ERRORS, ...notFound("webhook endpoint"), 200: { description: "The endpoint", content: json(WebhookEndpointSchema) } },
});

const updateWebhookRoute = createRoute({
  method: "patch",
  path: "/v1/webhooks/{id}",
  operationId: "updateWebhook",
  security: needs("webhooks:write"),
  tags: TAGS,
  summary: "Change a webhook endpoint",
  description: "Change its URL, events or description, pause it (`enabled: false`) or re-enable it, also after a 410 disabled it.",
  request: { params: WebhookIdParamsSchema, body: { required: true, content: json(UpdateWebhookRequestSchema) } },
  responses: {
    ...JSON_BODY_ERRORS,
    ...notFound("webhook endpoint"),
    200: { description: "The endpoint", content: json(WebhookEndpointSchema) },
    422: problem("The URL cannot be delivered to, an unknown event type or field, or a malformed id; `errors` names it (`code: validation_failed`)"),
  },
});

const deleteWebhookRoute = createRoute({
  method: "delete",
  path: "/v1/webhooks/{id}",
  operationId: "deleteWebhook",
  security: needs("webhooks:write"),
  tags: TAGS,
  summary: "Delete a webhook endpoint",
  description: "Its pending deliveries end `failed`; past deliveries stay listed under their jobs.",
  request: { params: WebhookIdParamsSchema },
  responses: { ...PARAM_ERRORS, ...notFound("webhook endpoint"), 204: { description: "Deleted" } },
});

export function registerWebhookEndpointRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  // Held to MAX_BODY_BYTES like every JSON body, so a huge one is refused before it is buffered.
  app.use(createWebhookRoute.getRoutingPath(), limitBody(deps.limits.maxBodyBytes, "the request body"));
  app.use(updateWebhookRoute.getRoutingPath(), limitBody(deps.limits.maxBodyBytes, "the request body"));
  app.openapi(createWebhookRoute, async (c) => {
    const body = c.req.valid("json");
    const url = await assertDeliverableUrl(body.url, deps.webhookPolicy, "url");
    const record = await createWebhookEndpoint(deps.db, {
      tenantId: c.get("tenantId"),
      url,
      events: [...new Set(body.events ?? DEFAULT_WEBHOOK_EVENTS)],
      description: body.description ?? null,
      secret: generateSecret(),
    });
    await audit(c, deps, "webhook.created", record.id, { url, events: record.events });
    c.get("logger").info({ webhookId: record.id, url, events: record.events }, "webhook endpoint registered");
    return c.json({ ...presentWebhook(record), secret: record.secret }, 201);
  });

  app.openapi(listWebhooksRoute, async (c) => {
    const records = await listWebhookEndpoints(deps.db, c.get("tenantId"));
    return c.json({ data: records.map((record) => presentWebhook(record)) }, 200);
  });

  app.openapi(getWebhookRoute, async (c) => {
    const { id } = c.req.valid("param");
    const record = await findWebhookEndpoint(deps.db, c.get("tenantId"), id);
    if (!record) throw new ApiError("not_found", `no webhook endpoint '${id}'`);
    return c.json(presentWebhook(record), 200);
  });

  app.openapi(updateWebhookRoute, async (c) => {
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    const url = body.url === undefined ? undefined : await assertDeliverableUrl(body.url, deps.webhookPolicy, "url");
    const record = await updateWebhookEndpoint(deps.db, c.get("tenantId"), id, {
      ...(url !== undefined ? { url } : {}),
      ...(body.events !== undefined ? { events: [...new Set(body.events)] } : {}),
      ...(body.description !== undefined ? { description: body.description } : {}),
      ...(body.enabled !== undefined ? { enabled: body.enabled } : {}),
    });
    if (!record) throw new ApiError("not_found", `no webhook endpoint '${id}'`);
    return c.json(presentWebhook(record), 200);
  });

  app.openapi(deleteWebhookRoute, async (c) => {
    const { id } = c.req.valid("param");
    if (!(await deleteWebhookEndpoint(deps.db, c.get("tenantId"), id))) throw new ApiError("not_found", `no webhook endpoint '${id}'`);
    await audit(c, deps, "webhook.deleted", id);
    return c.body(null, 204);
  });

}
