import { allows, CreateApiKeyRequestSchema, CreatedApiKeySchema } from "@coalesce/contracts";
import { createApiKey, ensureTenant, recordAudit } from "@coalesce/db";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { generateApiKey, hashApiKey } from "../../auth/api-keys.ts";
import { needs } from "../../auth/scopes.ts";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError, validationError } from "../../errors.ts";
import { isPlatformTenant, platformTenantName } from "../../auth/platform.ts";
import { assertNoLoosening } from "../../limits/loosening.ts";
import { limitBody } from "../../middleware/body-limit.ts";
import { audit } from "../audit/record.ts";
import { JSON_BODY_ERRORS, problem } from "../responses.ts";
import { presentApiKey } from "./present.ts";

/** The tenant BOOTSTRAP_API_KEY makes, when ApiDeps does not name another. */

export const createApiKeyRoute = createRoute({
  method: "post",
  path: "/v1/api-keys",
  operationId: "createApiKey",
  security: needs("admin"),
  tags: ["API keys"],
  summary: "Create an API key",
  description:
    "Makes a key with the scopes given, for this tenant (or, for a platform admin, the tenant named in `tenant`). The answer " +
    "holds the key itself as `secret`, shown only this once: only its hash is stored. A key cannot grant a scope the caller " +
    "lacks. Revoke it with DELETE /v1/api-keys/{id}.",
  request: { body: { required: true, content: { "application/json": { schema: CreateApiKeyRequestSchema } } } },
  responses: {
    ...JSON_BODY_ERRORS,
    201: { description: "Created; `secret` is shown only here", content: { "application/json": { schema: CreatedApiKeySchema } } },
    403: problem("The caller is not admin, names a scope it lacks, or passes `tenant` without being a platform admin (`code: forbidden`)"),
    422: problem("A field fails its schema, `expires_at` is not in the future, or a field is unknown; `errors` names it (`code: validation_failed`)"),
  },
});

export function registerCreateApiKey(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.use(createApiKeyRoute.getRoutingPath(), limitBody(deps.limits.maxBodyBytes, "the request body"));
  app.openapi(createApiKeyRoute, async (c) => {
    const body = c.req.valid("json");
    const principal = c.get("principal");
    // Only admin reaches this route today, but the rule holds whatever the route's scope becomes.
    const missing = body.scopes.find((scope) => !allows(principal.scopes, scope));
    if (missing) throw new ApiError("forbidden", `scopes: this ${principal.keyId ? "key" : "token"} cannot grant '${missing}', which it lacks`);
    const expiresAt = body.expires_at === undefined ? null : new Date(body.expires_at);
    if (expiresAt && expiresAt.getTime() <= Date.now()) {
      throw validationError([{ field: "expires_at", message: "must be in the future" }]);
    }
    const tenantId = c.get("tenantId");
    let target = { id: tenantId, name: null as string | null };
    await assertNoLoosening(deps, tenantId, [{ field: "rate_limit_rps", value: body.rate_limit_rps, serverDefault: (limits) => limits.requestsPerSecond }]);
    if (body.tenant !== undefined) {
      const platform = platformTenantName(deps);
      if (!(await isPlatformTenant(deps, tenantId))) {
        throw new ApiError("forbidden", `tenant: only an admin of the platform tenant ('${platform}', PLATFORM_TENANT) may create keys for another tenant; leave tenant out`);
      }
      const other = await ensureTenant(deps.db.prisma, body.tenant);
      target = { id: other.id, name: other.name };
    }
    const secret = generateApiKey();
    const key = await createApiKey(deps.db.prisma, {
      tenantId: target.id,
      name: body.name,
      hash: hashApiKey(secret),
      prefix: secret.slice(0, 8),
      scopes: [...new Set(body.scopes)],
      expiresAt,
      rateLimitRps: body.rate_limit_rps ?? null,
    });
    const details = { name: key.name, scopes: key.scopes, expires_at: key.expiresAt?.toISOString() ?? null, ...(target.name ? { tenant: target.name } : {}) };
    await audit(c, deps, "api_key.created", key.id, details);
    if (target.id !== tenantId) {
      // The other tenant's own log says a key appeared, and who made it.
      await recordAudit(deps.db, { tenantId: target.id, actor: c.get("keyId"), action: "api_key.created", resource: key.id, details }).catch((error: unknown) =>
        c.get("logger").error({ err: error }, "could not record an audit entry"),
      );
    }
    c.get("logger").info({ keyId: key.id, scopes: key.scopes, forTenant: target.id }, "api key created");
    return c.json({ ...presentApiKey(key), secret }, 201);
  });
}
