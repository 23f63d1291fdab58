import type { ApiDeps } from "../context.ts";
import { ApiError } from "../errors.ts";
import { isPlatformTenant } from "../auth/platform.ts";

/**
 * The limits protect every tenant from one: a tenant's own admin may tighten its limits (or go back
 * to the server's default, null), but only a platform admin may turn one off (0) or raise it past
 * the server's default. No check when the server enforces no limits at all (no limiter configured,
 * or its default is off), since there is nothing to protect.
 */
export async function assertNoLoosening(
  deps: Pick<ApiDeps, "db" | "platformTenant" | "rateLimits">,
  tenantId: string,
  asked: { field: string; value: number | null | undefined; serverDefault: (settings: NonNullable<ApiDeps["rateLimits"]>["settings"]) => number }[],
): Promise<void> {
  const settings = deps.rateLimits?.settings;
  if (!settings) return;
  const loosened = asked.find(({ value, serverDefault }) => {
    const limit = serverDefault(settings);
    return value !== null && value !== undefined && limit > 0 && (value === 0 || value > limit);
  });
  if (!loosened || (await isPlatformTenant(deps, tenantId))) return;
  throw new ApiError(
    "forbidden",
    `${loosened.field}: only an admin of the platform tenant may turn this limit off or raise it above the server's default (${loosened.serverDefault(settings)}); a tenant's admin may lower it, or set null for the default`,
  );
}
