import { RotateSecretRequestSchema, WebhookSecretSchema, type WebhookSecret } from "@coalesce/contracts";
import {
  ensureTenantWebhookSecret,
  previousSecretSignsUntil,
  rotateTenantWebhookSecret,
  rotateWebhookEndpointSecret,
  type SecretRecord,
} from "@coalesce/db";
import { generateSecret } from "@coalesce/webhooks";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { limitBody } from "../../middleware/body-limit.ts";
import { JSON_BODY_ERRORS, notFound, V1_ERRORS } from "../responses.ts";
import { WebhookIdParamsSchema } from "./params.ts";
import { needs } from "../../auth/scopes.ts";
import { readOptionalJsonBody } from "../optional-body.ts";

const TAGS = ["Webhooks"];
const secretResponse = { description: "The secret", content: { "application/json": { schema: WebhookSecretSchema } } };
const rotateBody = { required: false, content: { "application/json": { schema: RotateSecretRequestSchema } } };
const ROTATION =
  "For `overlap_seconds` (default 24 h) every delivery carries two signatures, one by each secret, so the receiver " +
  "can switch secrets without missing a delivery.";

const rotateWebhookSecretRoute = createRoute({
  method: "post",
  path: "/v1/webhooks/{id}/rotate-secret",
  operationId: "rotateWebhookSecret",
  security: needs("webhooks:write"),
  tags: TAGS,
  summary: "Rotate an endpoint's signing secret",
  description: `Makes a new secret for the endpoint. ${ROTATION}`,
  request: { params: WebhookIdParamsSchema, body: rotateBody },
  responses: { ...JSON_BODY_ERRORS, ...notFound("webhook endpoint"), 200: secretResponse },
});

const getDefaultSecretRoute = createRoute({
  method: "get",
  path: "/v1/webhooks/default-secret",
  operationId: "getDefaultWebhookSecret",
  security: needs("webhooks:write"),
  tags: TAGS,
  summary: "The secret that signs deliveries to jobs' own webhook_url",
  description: "A job submitted with `webhook_url` gets its final event signed with this tenant-wide secret (made on first use).",
  responses: { ...V1_ERRORS, 200: secretResponse },
});

const rotateDefaultSecretRoute = createRoute({
  method: "post",
  path: "/v1/webhooks/default-secret/rotate",
  operationId: "rotateDefaultWebhookSecret",
  security: needs("webhooks:write"),
  tags: TAGS,
  summary: "Rotate the default secret",
  description: `Makes a new default secret. ${ROTATION}`,
  request: { body: rotateBody },
  responses: { ...JSON_BODY_ERRORS, 200: secretResponse },
});

/** The rotation body is optional: no body means the default overlap. */
async function readOverlapSeconds(c: Context<AppEnv>): Promise<number> {
  return (await readOptionalJsonBody(c, RotateSecretRequestSchema)).overlap_seconds;
}

function presentSecret(record: SecretRecord, now = new Date()): WebhookSecret {
  return { secret: record.secret, previous_secret_expires_at: previousSecretSignsUntil(record, now)?.toISOString() ?? null };
}

export function registerWebhookSecretRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.use(rotateWebhookSecretRoute.getRoutingPath(), limitBody(deps.limits.maxBodyBytes, "the request body"));
  app.use(rotateDefaultSecretRoute.getRoutingPath(), limitBody(deps.limits.maxBodyBytes, "the request body"));
  app.openapi(rotateWebhookSecretRoute, async (c) => {
    const { id } = c.req.valid("param");
    const record = await rotateWebhookEndpointSecret(deps.db, c.get("tenantId"), id, generateSecret(), await readOverlapSeconds(c));
    if (!record) throw new ApiError("not_found", `no webhook endpoint '${id}'`);
    c.get("logger").info({ webhookId: id }, "webhook secret rotated");
    return c.json(presentSecret(record), 200);
  });

  app.openapi(getDefaultSecretRoute, async (c) => {
    return c.json(presentSecret(await ensureTenantWebhookSecret(deps.db, c.get("tenantId"), generateSecret())), 200);
  });

  app.openapi(rotateDefaultSecretRoute, async (c) => {
    const record = await rotateTenantWebhookSecret(deps.db, c.get("tenantId"), generateSecret(), await readOverlapSeconds(c));
    c.get("logger").info("default webhook secret rotated");
    return c.json(presentSecret(record), 200);
  });
}
