import { revokeApiKey } from "@coalesce/db";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { needs } from "../../auth/scopes.ts";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { audit } from "../audit/record.ts";
import { notFound, PARAM_ERRORS } from "../responses.ts";
import { ApiKeyIdParamsSchema } from "./params.ts";

export const revokeApiKeyRoute = createRoute({
  method: "delete",
  path: "/v1/api-keys/{id}",
  operationId: "revokeApiKey",
  security: needs("admin"),
  tags: ["API keys"],
  summary: "Revoke an API key",
  description:
    "The key, and its previous secret if it was rotated, stop working on every API replica within a second (each trusts a " +
    "valid key for at most that long). Revoking a revoked key changes nothing (204 again). A key may revoke itself.",
  request: { params: ApiKeyIdParamsSchema },
  responses: { ...PARAM_ERRORS, ...notFound("API key"), 204: { description: "Revoked" } },
});

export function registerRevokeApiKey(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(revokeApiKeyRoute, async (c) => {
    const { id } = c.req.valid("param");
    const outcome = await revokeApiKey(deps.db, c.get("tenantId"), id);
    if (!outcome) throw new ApiError("not_found", `no API key '${id}'`);
    if (outcome.revoked) {
      await audit(c, deps, "api_key.revoked", id, { name: outcome.key.name });
      c.get("logger").info({ revokedKeyId: id, self: id === c.get("principal").keyId }, "api key revoked");
    }
    return c.body(null, 204);
  });
}
