import { CreatedApiKeySchema, RotateApiKeyRequestSchema } from "@coalesce/contracts";
import { rotateApiKey } from "@coalesce/db";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { generateApiKey, hashApiKey } from "../../auth/api-keys.ts";
import { needs } from "../../auth/scopes.ts";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { limitBody } from "../../middleware/body-limit.ts";
import { audit } from "../audit/record.ts";
import { JSON_BODY_ERRORS, notFound, problem } from "../responses.ts";
import { ApiKeyIdParamsSchema } from "./params.ts";
import { presentApiKey } from "./present.ts";
import { readOptionalJsonBody } from "../optional-body.ts";

export const rotateApiKeyRoute = createRoute({
  method: "post",
  path: "/v1/api-keys/{id}/rotate",
  operationId: "rotateApiKey",
  security: needs("admin"),
  tags: ["API keys"],
  summary: "Rotate an API key's secret",
  description:
    "Makes a new secret for the key (shown only in this answer) and keeps the old one working for `overlap_seconds` " +
    "(default 24 h, 0 for not at all), so its users can switch without an outage. The key keeps its id, scopes, expiry and " +
    "limits. Rotating again during an overlap ends the oldest secret at once.",
  request: { params: ApiKeyIdParamsSchema, body: { required: false, content: { "application/json": { schema: RotateApiKeyRequestSchema } } } },
  responses: {
    ...JSON_BODY_ERRORS,
    ...notFound("API key"),
    200: { description: "The key with its new `secret`", content: { "application/json": { schema: CreatedApiKeySchema } } },
    409: problem("The key is revoked; create a new one (`code: conflict`)"),
  },
});

/** The body is optional: none means the default overlap. */
async function readOverlapSeconds(c: Context<AppEnv>): Promise<number> {
  return (await readOptionalJsonBody(c, RotateApiKeyRequestSchema)).overlap_seconds;
}

export function registerRotateApiKey(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.use(rotateApiKeyRoute.getRoutingPath(), limitBody(deps.limits.maxBodyBytes, "the request body"));
  app.openapi(rotateApiKeyRoute, async (c) => {
    const { id } = c.req.valid("param");
    const overlapSeconds = await readOverlapSeconds(c);
    const secret = generateApiKey();
    const outcome = await rotateApiKey(deps.db, c.get("tenantId"), id, { hash: hashApiKey(secret), prefix: secret.slice(0, 8) }, overlapSeconds);
    if ("notFound" in outcome) throw new ApiError("not_found", `no API key '${id}'`);
    if ("revoked" in outcome) throw new ApiError("conflict", `API key '${id}' is revoked; create a new one with POST /v1/api-keys`);
    await audit(c, deps, "api_key.rotated", id, { overlap_seconds: overlapSeconds });
    c.get("logger").info({ rotatedKeyId: id, overlapSeconds }, "api key rotated");
    return c.json({ ...presentApiKey(outcome.rotated), secret }, 200);
  });
}
