import { findApiKeyOwner, touchApiKey, type Database } from "@coalesce/db";
import type { MiddlewareHandler } from "hono";
import { hashApiKey } from "../auth/api-keys.ts";
import type { AppEnv } from "../context.ts";
import { ApiError } from "../errors.ts";

/** `Authorization: Bearer <key>`; sets the caller's tenant for every route behind it. */
export function requireApiKey(db: Database): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match?.[1]) {
      throw new ApiError("unauthorized", "send your API key as 'Authorization: Bearer <key>'");
    }
    const owner = await findApiKeyOwner(db.prisma, hashApiKey(match[1]));
    if (!owner) throw new ApiError("unauthorized", "the API key is not valid; create one with `npm run keys:create -- --name NAME`");
    c.set("tenantId", owner.tenantId);
    // Bookkeeping only: the request does not wait for it, and a failure is just logged.
    touchApiKey(db.prisma, owner.keyId).catch((error: unknown) => c.get("logger").warn({ err: error }, "could not record key use"));
    c.set("logger", c.get("logger").child({ tenantId: owner.tenantId }));
    await next();
  };
}
