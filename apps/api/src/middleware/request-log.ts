import { randomUUID } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import type { Logger } from "pino";
import type { AppEnv } from "../context.ts";

/** Gives each request an id (or keeps a sane X-Request-Id) and logs one summary line when it ends. */
export function requestLog(logger: Logger): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const incoming = c.req.header("x-request-id");
    const requestId = incoming && /^[\w.-]{1,128}$/.test(incoming) ? incoming : `req_${randomUUID().replaceAll("-", "")}`;
    const started = performance.now();
    c.set("requestId", requestId);
    c.set("logger", logger.child({ requestId }));
    // Set before the response exists: a header added to a finished response makes hono copy it.
    c.header("X-Request-Id", requestId);
    await next();
    const status = c.res.status;
    // A 503 is the API working as meant while a dependency is away (said once by the connection).
    c.get("logger")[status === 503 ? "warn" : status >= 500 ? "error" : "info"](
      { method: c.req.method, path: c.req.path, status, ms: Math.round(performance.now() - started) },
      "request",
    );
  };
}
