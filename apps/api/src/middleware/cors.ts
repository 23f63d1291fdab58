import { JOB_STATUS_HEADER, PREDICT_CACHE_HEADER, RESULTS_COMPLETE_HEADER, ROUTING_KEY_HEADER } from "@coalesce/contracts";
import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import type { AppEnv } from "../context.ts";

/** Request headers a page may send beyond the CORS-safelisted ones: the key, and those the routes read. */
const ALLOW_HEADERS = ["Authorization", "Content-Type", "Cache-Control", "Idempotency-Key", "X-Request-Id", ROUTING_KEY_HEADER, "Inference-Header-Content-Length"];

/** Response headers a page may read: without this list a browser hides all but a handful. */
const EXPOSE_HEADERS = [
  "X-Request-Id",
  "Retry-After",
  "RateLimit",
  "RateLimit-Policy",
  "WWW-Authenticate",
  "Idempotent-Replayed",
  "Content-Disposition",
  PREDICT_CACHE_HEADER,
  JOB_STATUS_HEADER,
  RESULTS_COMPLETE_HEADER,
];

/**
 * CORS for the origins in CORS_ORIGINS (`*`: any). Mounted before auth, so a preflight, which never
 * carries a key, is answered here. Never `Access-Control-Allow-Credentials`: the API sets no cookies
 * and a key travels in the Authorization header, which a page can send only if it holds the key, so
 * even `*` lets no page act with a visitor's ambient credentials.
 */
export function allowOrigins(origins: readonly string[]): MiddlewareHandler<AppEnv> {
  return cors({
    origin: origins.includes("*") ? "*" : [...origins],
    allowMethods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
    allowHeaders: ALLOW_HEADERS,
    exposeHeaders: EXPOSE_HEADERS,
    // Browsers cap this (Chromium at 2 hours); 10 minutes keeps a changed allow-list from lingering.
    maxAge: 600,
  });
}
