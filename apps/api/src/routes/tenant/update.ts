import { TenantSchema, UpdateTenantRequestSchema } from "@coalesce/contracts";
import { updateTenantLimits } from "@coalesce/db";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { needs } from "../../auth/scopes.ts";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { assertNoLoosening } from "../../limits/loosening.ts";
import { limitBody } from "../../middleware/body-limit.ts";
import { audit } from "../audit/record.ts";
import { JSON_BODY_ERRORS } from "../responses.ts";
import { presentTenant } from "./present.ts";

export const updateTenantRoute = createRoute({
  method: "patch",
  path: "/v1/tenant",
  operationId: "updateTenant",
  security: needs("admin"),
  tags: ["Tenant"],
  summary: "Change the tenant's limits",
  description:
    "Sets `rate_limit_rows_per_minute` (rows per minute over all the tenant's submissions) and `quota_queued_rows` (most " +
    "unfinished rows queued at once); a field left out stays, null returns it to the server's default, 0 turns it off. A tenant's admin may only lower a limit the server enforces " +
    "(or set null); turning one off or raising it past the server's default takes an admin of the platform tenant (403 otherwise).",
  request: { body: { required: true, content: { "application/json": { schema: UpdateTenantRequestSchema } } } },
  responses: { ...JSON_BODY_ERRORS, 200: { description: "The tenant", content: { "application/json": { schema: TenantSchema } } } },
});

export function registerUpdateTenant(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.use(updateTenantRoute.getRoutingPath(), limitBody(deps.limits.maxBodyBytes, "the request body"));
  app.openapi(updateTenantRoute, async (c) => {
    const body = c.req.valid("json");
    await assertNoLoosening(deps, c.get("tenantId"), [
      { field: "rate_limit_rows_per_minute", value: body.rate_limit_rows_per_minute, serverDefault: (limits) => limits.rowsPerMinute },
      { field: "quota_queued_rows", value: body.quota_queued_rows, serverDefault: (limits) => limits.queuedRows },
    ]);
    const tenant = await updateTenantLimits(deps.db.prisma, c.get("tenantId"), {
      ...(body.rate_limit_rows_per_minute !== undefined ? { rateLimitRowsPerMinute: body.rate_limit_rows_per_minute } : {}),
      ...(body.quota_queued_rows !== undefined ? { quotaQueuedRows: body.quota_queued_rows } : {}),
    });
    if (!tenant) throw new ApiError("unauthorized", "the API key's tenant no longer exists");
    await audit(c, deps, "tenant.limits_updated", tenant.name, { ...body });
    return c.json(presentTenant(tenant), 200);
  });
}
