import { z } from "@hono/zod-openapi";

/**
 * What a key or token may do. `admin` may do everything (and manage keys); existing keys and the
 * BOOTSTRAP_API_KEY one have it. Predict and inference count as `jobs:write` (they score rows).
 */
export const SCOPES = ["jobs:write", "jobs:read", "models:write", "models:read", "webhooks:write", "admin"] as const;
export const ScopeSchema = z.enum(SCOPES).openapi({ example: "jobs:write" });
export type Scope = z.infer<typeof ScopeSchema>;

/** The scope that grants every other one. */
export const ADMIN_SCOPE: Scope = "admin";

/** Whether `granted` allows `needed`: the scope itself, or admin. */
export function allows(granted: Iterable<string>, needed: Scope): boolean {
  for (const scope of granted) if (scope === needed || scope === ADMIN_SCOPE) return true;
  return false;
}
