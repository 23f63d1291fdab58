import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../context.ts";
import type { RateLimits } from "../limits/rate-limits.ts";

/**
 * Per key requests per second, after auth (it needs the caller): on /v1 and on the /v2 routes
 * behind a key. Health, docs and metrics are not behind it; a request without a valid key never
 * gets here (failed authentication has its throttle of its own, per client address).
 */
export function limitRequests(limits: RateLimits): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    await limits.admitRequest(c);
    await next();
  };
}
