import { OpenAPIHono } from "@hono/zod-openapi";
import { every } from "hono/combine";
import type { ApiDeps, AppEnv } from "./context.ts";
import { ApiError, fromZodError, handleError, problemResponse } from "./errors.ts";
import { measureRequests } from "./metrics.ts";
import { ScopeTable } from "./auth/scopes.ts";
import { requireApiKey } from "./middleware/auth.ts";
import { allowOrigins } from "./middleware/cors.ts";
import { metricsHandler } from "./metrics-endpoint.ts";
import { requestLog } from "./middleware/request-log.ts";
import { limitRequests } from "./middleware/rate-limit.ts";
import { registerDocs } from "./routes/docs.ts";
import { registerHealthRoutes } from "./routes/health.ts";
import { registerJobRoutes } from "./routes/jobs/index.ts";
import { registerAliasRoutes } from "./routes/aliases/index.ts";
import { registerModelRoutes } from "./routes/models/index.ts";
import { registerPredict } from "./routes/predict/predict.ts";
import { registerV2Routes } from "./routes/v2/index.ts";
import { registerWebhookRoutes } from "./routes/webhooks/index.ts";
import { registerApiKeyRoutes } from "./routes/api-keys/index.ts";
import { registerTenantRoutes } from "./routes/tenant/index.ts";
import { registerListAudit } from "./routes/audit/list.ts";
import { isQueueAdminPath, registerQueueAdmin } from "./admin/queue-admin.ts";

/**
 * The whole HTTP API: request id and log line, then auth for /v1, then the routes. Every error,
 * including zod validation failures, leaves as application/problem+json, except under /v2, where
 * the Open Inference Protocol's routes answer `{"error": "..."}`.
 */
export function createApp(deps: ApiDeps): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw fromZodError(result.error);
    },
  });
  app.use("*", requestLog(deps.logger));
  app.use("*", measureRequests(deps.metrics));
  // Before auth: a browser's preflight carries no key. Off unless CORS_ORIGINS names origins.
  if (deps.corsOrigins?.length) app.use("*", allowOrigins(deps.corsOrigins));
  // Filled once every route is registered (below): each route's scope, from its own OpenAPI security.
  const scopes = new ScopeTable();
  const auth = requireApiKey(deps.db, scopes, { ...deps.auth, basicFor: isQueueAdminPath });
  // Per key requests per second, once the caller is known (here and on the /v2 routes behind a key).
  const authed = deps.rateLimits ? every(auth, limitRequests(deps.rateLimits)) : auth;
  app.use("/v1/*", authed);
  registerHealthRoutes(app, deps);
  registerModelRoutes(app, deps);
  registerAliasRoutes(app, deps);
  registerPredict(app, deps);
  registerV2Routes(app, deps, authed);
  registerJobRoutes(app, deps);
  registerWebhookRoutes(app, deps);
  registerApiKeyRoutes(app, deps);
  registerTenantRoutes(app, deps);
  registerListAudit(app, deps);
  registerDocs(app);
  // Not in the OpenAPI document (bull-board's own routes): behind its own admin check and sign-in.
  registerQueueAdmin(app, deps, auth, deps.queueAdmin ?? "read");
  scopes.load(app.openAPIRegistry);
  // Not behind the API keys: a scraper has a token of its own (METRICS_TOKEN), or a port of its own
  // (API_METRICS_PORT, and then this port answers 404 for it).
  const metricsAccess = deps.metricsAccess ?? { onApiPort: true };
  if (metricsAccess.onApiPort) app.get("/metrics", metricsHandler(deps.metrics.registry, metricsAccess.token));
  app.notFound((c) => problemResponse(c, new ApiError("not_found", `no route for ${c.req.method} ${c.req.path}`)));
  app.onError(handleError);
  return app;
}
