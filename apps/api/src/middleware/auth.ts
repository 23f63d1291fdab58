import { allows } from "@coalesce/contracts";
import { findApiKeyOwner, SingleFlight, touchApiKey, type ApiKeyOwner, type Database } from "@coalesce/db";
import type { Context, MiddlewareHandler } from "hono";
import { hashApiKey } from "../auth/api-keys.ts";
import type { ScopeTable } from "../auth/scopes.ts";
import type { AppEnv, Principal } from "../context.ts";
import { ApiError } from "../errors.ts";

/** Records a key's use at most this often per process. */
const TOUCH_EVERY_MS = 60_000;

/**
 * How long a valid key is trusted without asking Postgres again: a revoked key stops working within
 * this long. A predict request answered from the cache takes about a millisecond, and the key's
 * lookup was a third of it. Keys that are not valid are never remembered (each is asked anew).
 */
const TRUST_MS = 1_000;

/** Most keys remembered per process; past it the memory starts afresh. */
const MAX_REMEMBERED = 10_000;

/**
 * `Authorization: Bearer <key>`: sets the caller (tenant, key, scopes) for every route behind it,
 * and refuses (403) a route whose scope (its OpenAPI `security`, see ScopeTable) the key lacks.
 */
export function requireApiKey(db: Database, scopes: ScopeTable): MiddlewareHandler<AppEnv> {
  const touched = new Map<string, number>();
  const lookups = new SingleFlight<ApiKeyOwner | null>();
  const remembered = new Map<string, { owner: ApiKeyOwner; at: number }>();
  const lookUp = async (hash: string): Promise<ApiKeyOwner | null> => {
    const known = remembered.get(hash);
    if (known && performance.now() - known.at < TRUST_MS) return known.owner;
    const owner = await lookups.run(hash, () => findApiKeyOwner(db, hash));
    if (remembered.size >= MAX_REMEMBERED) remembered.clear();
    if (owner) remembered.set(hash, { owner, at: performance.now() });
    else remembered.delete(hash);
    return owner;
  };
  return async (c, next) => {
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match?.[1]) {
      throw new ApiError("unauthorized", "send your API key as 'Authorization: Bearer <key>'");
    }
    // Requests that arrive together with the same key share one lookup, and a valid key is trusted
    // for TRUST_MS after it.
    const hash = hashApiKey(match[1]);
    const owner = await lookUp(hash);
    if (!owner) throw new ApiError("unauthorized", "the API key is not valid; create one with `npm run keys:create -- --name NAME`");
    const now = Date.now();
    authenticate(c, { tenantId: owner.tenantId, actor: owner.keyId, keyId: owner.keyId, scopes: owner.scopes, rateLimitRps: owner.rateLimitRps }, scopes);
    if ((touched.get(owner.keyId) ?? 0) < now - TOUCH_EVERY_MS) {
      touched.set(owner.keyId, now);
      // Bookkeeping only: the request does not wait for it, and a failure is just logged.
      touchApiKey(db.prisma, owner.keyId).catch((error: unknown) => c.get("logger").warn({ err: error }, "could not record key use"));
    }
    await next();
  };
}

/** Sets the request's caller, then checks that it may use the route it asked for (403 naming the scope). */
export function authenticate(c: Context<AppEnv>, principal: Principal, scopes: ScopeTable): void {
  c.set("principal", principal);
  c.set("tenantId", principal.tenantId);
  c.set("keyId", principal.actor);
  c.set("logger", c.get("logger").child({ tenantId: principal.tenantId }));
  const needed = scopes.scopeFor(c.req.method, c.req.path);
  if (needed && !allows(principal.scopes, needed)) {
    throw new ApiError("forbidden", `this ${principal.keyId ? "key" : "token"} lacks the scope '${needed}' that ${c.req.method} ${c.req.path} needs; use a key or token with it (or admin)`);
  }
}
