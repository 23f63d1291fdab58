import { allows } from "@coalesce/contracts";
import { PREDICT_QUEUE } from "@coalesce/queue";
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { HonoAdapter } from "@bull-board/hono";
import { serveStatic } from "@hono/node-server/serve-static";
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { isPlatformTenant, platformTenantName } from "../auth/platform.ts";
import type { ApiDeps, AppEnv } from "../context.ts";
import { ApiError, problemResponse } from "../errors.ts";
import { limitRequests } from "../middleware/rate-limit.ts";
import { audit } from "../routes/audit/record.ts";
import type { QueueAdminMode } from "./queue-admin-mode.ts";

export { QUEUE_ADMIN_MODES, type QueueAdminMode } from "./queue-admin-mode.ts";

export const QUEUE_ADMIN_PATH = "/admin/queues";

/**
 * The board's page links Google Fonts; nothing else of it leaves the API. Dropped, so the page
 * loads whole where the API has no internet, and names no third party a browser would tell about
 * the admin's visit (the system fonts stand in).
 */
const REMOTE_FONTS = /<link\b[^>]*\bhref="https:\/\/fonts\.googleapis\.com\/[^"]*"[^>]*>/g;

/**
 * Whatever a future version of the page links, the browser loads nothing from elsewhere, and no
 * other site frames it (its buttons change queues). Inline styles are the board's own (React's
 * style attributes and the loading spinner).
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/**
 * bull-board at /admin/queues: the project's BullMQ queues (one, `predict`, holding every chunk of
 * every job; predict requests and webhooks do not go through BullMQ) under the API's QUEUE_PREFIX.
 *
 * Who may open it: an admin key of the platform tenant (PLATFORM_TENANT) only, since the queue is
 * every tenant's at once; a tenant's own admin key would see, and in write mode clean or retry, other
 * tenants' work. How a person signs in: a browser cannot add a Bearer header to a page it opens,
 * but it prompts for HTTP Basic on a 401 that asks for it and then sends the answer with every
 * request under the path (the page, its scripts, its API calls). So the key is the Basic password
 * (any user name), checked by the same key store, cache and failed-attempt throttle as a Bearer key
 * (which curl may send instead): no second secret in the environment, nothing to rotate beside the
 * keys, revocation applies within a second. The cost: the key crosses the wire on every request,
 * as a Bearer key does, so serve it over HTTPS only (the compose nginx and the Ingress do). A
 * cookie after one key check would save Postgres a lookup per poll (the key cache makes that cheap
 * already) but would need a session secret and CSRF tokens of its own.
 *
 * Basic credentials are sent by the browser unasked, so a changing request (write mode) from
 * another site's page is refused (see refuseCrossSite); every one that passes is in the audit log.
 * Read-only unless QUEUE_ADMIN=write, refused here with a problem+json 403 before bull-board's own
 * read-only mode (a 405) would refuse it. Rate limited per key like /v1.
 */
/** Whether a path is the queue admin's (where the API's key middleware also takes HTTP Basic). */
export function isQueueAdminPath(path: string): boolean {
  return path === QUEUE_ADMIN_PATH || path.startsWith(`${QUEUE_ADMIN_PATH}/`);
}

/** `auth`: the API's own key middleware (created with `basicFor: isQueueAdminPath`), so sign-in failures count once. */
export function registerQueueAdmin(app: OpenAPIHono<AppEnv>, deps: ApiDeps, auth: MiddlewareHandler<AppEnv>, mode: QueueAdminMode): void {
  if (mode === "off") return;
  const writable = mode === "write";
  const board = new HonoAdapter(serveStatic).setBasePath(QUEUE_ADMIN_PATH);
  createBullBoard({
    queues: [
      new BullMQAdapter(deps.queue, {
        readOnlyMode: !writable,
        allowRetries: writable,
        description: `Every job's chunks, in Redis under ${deps.queuePrefix}:${PREDICT_QUEUE}:*`,
      }),
    ],
    serverAdapter: board,
    options: { uiConfig: { boardTitle: "Coalesce queues", hideDocsLink: true } },
  });
  // A browser asked for /admin/queues/ (the board's own links have no trailing slash).
  app.get(`${QUEUE_ADMIN_PATH}/`, (c) => c.redirect(QUEUE_ADMIN_PATH, 301));
  // The ScopeTable knows only the OpenAPI routes: for these paths it names no scope, so the
  // middleware authenticates without refusing anyone, and the admin check is requirePlatformAdmin's.
  app.use(`${QUEUE_ADMIN_PATH}/*`, auth);
  if (deps.rateLimits) app.use(`${QUEUE_ADMIN_PATH}/*`, limitRequests(deps.rateLimits));
  app.use(`${QUEUE_ADMIN_PATH}/*`, requirePlatformAdmin(deps));
  app.use(`${QUEUE_ADMIN_PATH}/*`, writable ? auditChanges(deps) : refuseChanges());
  app.use(`${QUEUE_ADMIN_PATH}/*`, securePage());
  app.route(QUEUE_ADMIN_PATH, board.registerPlugin());
}

/** 403 unless the caller holds `admin` in the platform's tenant. */
function requirePlatformAdmin(deps: ApiDeps): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const principal = c.get("principal");
    if (!allows(principal.scopes, "admin")) {
      return problemResponse(c, new ApiError("forbidden", `this ${principal.keyId ? "key" : "token"} lacks the scope 'admin' that ${QUEUE_ADMIN_PATH} needs; sign in with an admin key of the platform tenant`));
    }
    if (!(await isPlatformTenant(deps, principal.tenantId))) {
      return problemResponse(
        c,
        new ApiError("forbidden", `${QUEUE_ADMIN_PATH} shows every tenant's queued work: only an admin key of the platform tenant ('${platformTenantName(deps)}', PLATFORM_TENANT) may open it`),
      );
    }
    await next();
  };
}

function isSafe(method: string): boolean {
  return method === "GET" || method === "HEAD";
}

/** QUEUE_ADMIN=read: the board shows, and refuses every change (retry, clean, pause, add, ...). */
function refuseChanges(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (isSafe(c.req.method)) return next();
    return problemResponse(c, new ApiError("forbidden", `the queue admin is read-only (QUEUE_ADMIN=read): ${c.req.method} ${c.req.path} would change the queue; set QUEUE_ADMIN=write to allow it`));
  };
}

/** QUEUE_ADMIN=write: a change from the board's own page goes through, and is written to the audit log. */
function auditChanges(deps: ApiDeps): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (isSafe(c.req.method)) return next();
    const refusal = refuseCrossSite(c);
    if (refusal) return refusal;
    await next();
    if (c.res.status >= 400) return;
    // e.g. `predict/clean/failed`, `predict/01J.../retry`: the queue, the job and what was done.
    const action = c.req.path.slice(`${QUEUE_ADMIN_PATH}/api/queues/`.length) || c.req.path;
    c.get("logger").info({ method: c.req.method, action, actor: c.get("keyId") }, "queue admin changed the queue");
    await audit(c, deps, "queue_admin.changed", action, { method: c.req.method, path: c.req.path });
  };
}

/**
 * A browser sends Basic credentials it holds with any request to the API, from any site's page
 * (a form posted to /admin/queues/api/queues/predict/obliterate, say). Browsers say where a request
 * comes from (Sec-Fetch-Site; Origin on every POST, PUT, DELETE): a change from another origin is
 * refused. A client that is not a browser sends neither, and its credential is its own doing.
 */
function refuseCrossSite(c: Context<AppEnv>): Response | null {
  const site = c.req.header("sec-fetch-site");
  const origin = c.req.header("origin");
  const host = c.req.header("x-forwarded-host") ?? c.req.header("host");
  const sameSite = site !== undefined ? site === "same-origin" || site === "none" : origin === undefined || (host !== undefined && originHost(origin) === host.toLowerCase());
  if (sameSite) return null;
  return problemResponse(c, new ApiError("forbidden", `a change to the queues must come from the queue admin's own page (this one came from ${origin ?? site ?? "another site"})`));
}

function originHost(origin: string): string | null {
  try {
    return new URL(origin).host.toLowerCase();
  } catch {
    return null;
  }
}

/** Headers for an admin page, and its HTML without the remote fonts (see REMOTE_FONTS). */
function securePage(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    await next();
    const type = c.res.headers.get("content-type") ?? "";
    if (type.startsWith("text/html")) {
      const html = (await c.res.text()).replace(REMOTE_FONTS, "");
      const headers = new Headers(c.res.headers);
      headers.delete("content-length");
      c.res = new Response(html, { status: c.res.status, headers });
    }
    c.res.headers.set("Content-Security-Policy", CONTENT_SECURITY_POLICY);
    c.res.headers.set("X-Frame-Options", "DENY");
    c.res.headers.set("X-Content-Type-Options", "nosniff");
    c.res.headers.set("Referrer-Policy", "no-referrer");
    // The queue's contents (job ids, errors) are not for a shared cache; the fingerprinted assets may be kept.
    if (!c.req.path.startsWith(`${QUEUE_ADMIN_PATH}/static/`)) c.res.headers.set("Cache-Control", "no-store");
  };
}
