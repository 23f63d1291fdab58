import type { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { registerGetTenant } from "./get.ts";
import { registerUpdateTenant } from "./update.ts";

/** The caller's tenant and its limits (admin). */
export function registerTenantRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  registerGetTenant(app, deps);
  registerUpdateTenant(app, deps);
}
