import { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "./context.ts";
import { ApiError, fromZodError, handleError, problemResponse } from "./errors.ts";
import { measureRequests } from "./metrics.ts";
import { ScopeTable } from "./auth/scopes.ts";
import { requireApiKey } from "./middleware/auth.ts";
import { requestLog } from "./middleware/request-log.ts";
import { registerDocs } from "./routes/docs.ts";
import { registerHealthRoutes } from "./routes/health.ts";
import { registerJobRoutes } from "./routes/jobs/index.ts";
import { registerAliasRoutes } from "./routes/aliases/index.ts";
import { registerModelRoutes } from "./routes/models/index.ts";
import { registerPredict } from "./routes/predict/predict.ts";
import { registerV2Routes } from "./routes/v2/index.ts";
import { registerWebhookRoutes } from "./routes/webhooks/index.ts";

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
  // Filled once every route is registered (below): each route's scope, from its own OpenAPI security.
  const scopes = new ScopeTable();
  const auth = requireApiKey(deps.db, scopes);
  app.use("/v1/*", auth);
  registerHealthRoutes(app, deps);
  registerModelRoutes(app, deps);
  registerAliasRoutes(app, deps);
  registerPredict(app, deps);
  registerV2Routes(app, deps, auth);
  registerJobRoutes(app, deps);
  registerWebhookRoutes(app, deps);
  registerDocs(app);
  scopes.load(app.openAPIRegistry);
  app.get("/metrics", async (c) =>
    c.body(await deps.metrics.registry.metrics(), 200, { "Content-Type": deps.metrics.registry.contentType }),
  );
  app.notFound((c) => problemResponse(c, new ApiError("not_found", `no route for ${c.req.method} ${c.req.path}`)));
  app.onError(handleError);
  return app;
}
