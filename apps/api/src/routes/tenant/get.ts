import { TenantSchema } from "@coalesce/contracts";
import { findTenant } from "@coalesce/db";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { needs } from "../../auth/scopes.ts";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { V1_ERRORS } from "../responses.ts";
import { presentTenant } from "./present.ts";

export const getTenantRoute = createRoute({
  method: "get",
  path: "/v1/tenant",
  operationId: "getTenant",
  security: needs("admin"),
  tags: ["Tenant"],
  summary: "The caller's tenant and its limits",
  description: "A limit of null is the server's default (RATE_LIMIT_ROWS_PER_MINUTE, QUOTA_QUEUED_ROWS); 0 is no limit.",
  responses: { ...V1_ERRORS, 200: { description: "The tenant", content: { "application/json": { schema: TenantSchema } } } },
});

export function registerGetTenant(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(getTenantRoute, async (c) => {
    const tenant = await findTenant(deps.db.prisma, c.get("tenantId"));
    // A key's tenant is deleted with it (cascade), so this is a race with a deletion at most.
    if (!tenant) throw new ApiError("unauthorized", "the API key's tenant no longer exists");
    return c.json(presentTenant(tenant), 200);
  });
}
