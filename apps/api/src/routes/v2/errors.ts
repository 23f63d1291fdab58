import type { Problem } from "@coalesce/contracts";
import { z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../../context.ts";
import { RATE_LIMIT_HEADERS } from "../responses.ts";
import { V2ErrorSchema } from "./schemas.ts";

/**
 * The protocol answers every error as `{"error": "<message>"}` (typically 400), never as
 * problem+json. Routes under /v2 throw the API's own errors like any other route, and the app's
 * onError (or notFound) writes them as problem+json; this middleware, after next(), rewrites
 * such an answer into the protocol's form, keeping its status and headers (WWW-Authenticate,
 * Retry-After, X-Request-Id). A 422 (a body or parameter that fails its schema) becomes 400, the
 * protocol's status for a request it cannot take.
 */
export function v2ErrorBodies(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    await next();
    if (!c.res.headers.get("content-type")?.startsWith("application/problem+json")) return;
    const problem = (await c.res.json()) as Problem;
    const status = problem.status === 422 ? 400 : problem.status;
    // A 500 says only to quote the request id, which the problem body carried and this one does not.
    const message = problem.code === "internal_error" ? `${problem.detail} (request_id ${problem.request_id})` : problem.detail;
    const headers = new Headers(c.res.headers);
    headers.set("Content-Type", "application/json");
    headers.delete("Content-Length");
    // Unset first: assigning over a finished response would merge the old one's headers back in.
    c.res = undefined;
    c.res = new Response(JSON.stringify({ error: message }), { status, headers });
  };
}

const V2_ERROR_CONTENT = { "application/json": { schema: V2ErrorSchema } };

/** An OpenAPI response entry for an error answered in the protocol's form. */
export function v2Error(description: string) {
  return { description, content: V2_ERROR_CONTENT };
}

const RETRY_AFTER = z.object({ "Retry-After": z.string().openapi({ description: "Seconds to wait before retrying", example: "5" }) });

export function v2Unavailable(description: string) {
  return { description, headers: RETRY_AFTER, content: V2_ERROR_CONTENT };
}

/** What every /v2/models route can answer besides its own: a bad name or version, no valid key, Postgres or Redis away. */
export const V2_MODEL_ERRORS = {
  400: v2Error("The model name or version in the path is malformed"),
  401: {
    description: "No API key, or not a valid one",
    headers: z.object({ "WWW-Authenticate": z.string().openapi({ description: "The scheme to authenticate with", example: 'Bearer realm="coalesce"' }) }),
    content: V2_ERROR_CONTENT,
  },
  403: v2Error("The key or token lacks the scope this route needs (models:read; jobs:write to infer)"),
  404: v2Error("The tenant has no such model, or no such version of it"),
  429: {
    description: "The key passed its requests per second, or (infer) the tenant its rows per minute; retry after Retry-After seconds",
    headers: RATE_LIMIT_HEADERS,
    content: V2_ERROR_CONTENT,
  },
  503: v2Unavailable("Postgres or Redis cannot be reached; retry after Retry-After seconds"),
};
