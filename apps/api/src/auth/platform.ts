import { findTenant } from "@coalesce/db";
import type { ApiDeps } from "../context.ts";

/** The tenant BOOTSTRAP_API_KEY belongs to when PLATFORM_TENANT is not set. */
export const DEFAULT_PLATFORM_TENANT = "default";

/** The name of the platform's own tenant, whose admins run the service. */
export function platformTenantName(deps: Pick<ApiDeps, "platformTenant">): string {
  return deps.platformTenant ?? DEFAULT_PLATFORM_TENANT;
}

/** Whether the tenant is the platform's own (PLATFORM_TENANT): its admins may act for other tenants and loosen limits. */
export async function isPlatformTenant(deps: Pick<ApiDeps, "db" | "platformTenant">, tenantId: string): Promise<boolean> {
  return (await findTenant(deps.db.prisma, tenantId))?.name === platformTenantName(deps);
}
