import type { Scope } from "@coalesce/contracts";
import type { OpenAPIHono } from "@hono/zod-openapi";

type OpenAPIRegistry = OpenAPIHono["openAPIRegistry"];

/** The `security` of a route that needs `scope` (the OpenAPI document shows it; the auth middleware enforces it). */
export function needs(scope: Scope): { bearerAuth: Scope[] }[] {
  return [{ bearerAuth: [scope] }];
}

type Entry = { method: string; pattern: RegExp; scope: Scope | null };

/**
 * Which scope each route needs, read from the routes' own `security` once they are all registered,
 * so the OpenAPI document and the enforcement can never disagree. `null`: the route is public.
 */
export class ScopeTable {
  #entries: Entry[] = [];

  /** Reads every registered route's security (call after the routes are registered). */
  load(registry: OpenAPIRegistry): void {
    this.#entries = registry.definitions.flatMap((definition) => {
      if (definition.type !== "route") return [];
      const { method, path, security } = definition.route;
      const scope = (security?.[0]?.bearerAuth?.[0] as Scope | undefined) ?? null;
      // `{id}` matches one path segment, as Hono's `:id` does.
      const pattern = new RegExp(`^${path.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\\?\{[^/}]+\\?\}/g, "[^/]+")}$`);
      return [{ method: method.toUpperCase(), pattern, scope }];
    });
  }

  /** The scope a request needs; undefined when no route matches it (a 404 follows). */
  scopeFor(method: string, path: string): Scope | null | undefined {
    const wanted = method === "HEAD" ? "GET" : method;
    for (const entry of this.#entries) if (entry.method === wanted && entry.pattern.test(path)) return entry.scope;
    return undefined;
  }
}
