import { createHash, timingSafeEqual } from "node:crypto";
import { serve, type ServerType } from "@hono/node-server";
import { Hono, type Handler } from "hono";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { AppEnv } from "./context.ts";
import { ApiError, handleError, problemResponse } from "./errors.ts";
import { requestLog } from "./middleware/request-log.ts";

/**
 * Who may read the API's GET /metrics (METRICS_TOKEN, API_METRICS_PORT). It names tenants' models
 * and the traffic they get, so it is not for anyone who reaches the API's port.
 */
export type MetricsAccess = {
  /** Whether the API's own port serves /metrics; false when API_METRICS_PORT serves it (404 on the API's port). @defaultValue true */
  onApiPort: boolean;
  /** When set, /metrics needs `Authorization: Bearer <token>`, wherever it is served. @defaultValue none: open */
  token?: string | undefined;
};

const sha256 = (text: string): Buffer => createHash("sha256").update(text).digest();

/**
 * GET /metrics: the registry's text, behind `token` when there is one. Both sides are hashed first, so
 * the comparison takes the same time whatever was sent, its length included.
 */
export function metricsHandler(registry: Registry, token: string | undefined): Handler<AppEnv> {
  const expected = token === undefined ? null : sha256(token);
  return async (c) => {
    if (expected) {
      const sent = /^Bearer\s+(\S+)$/i.exec(c.req.header("authorization") ?? "")?.[1];
      if (sent === undefined || !timingSafeEqual(sha256(sent), expected)) {
        throw new ApiError("unauthorized", "/metrics needs 'Authorization: Bearer <METRICS_TOKEN>' (the metrics token, not an API key)");
      }
    }
    return c.body(await registry.metrics(), 200, { "Content-Type": registry.contentType });
  };
}

export type MetricsServer = { port: number; close(): Promise<void> };

/**
 * /metrics on a port of its own (API_METRICS_PORT), and nothing else there. Unlike a worker's, a port
 * that is taken stops the API from starting: the operator asked for metrics on it.
 */
export async function serveMetricsPort(options: { registry: Registry; host: string; port: number; token: string | undefined; logger: Logger }): Promise<MetricsServer> {
  const app = new Hono<AppEnv>();
  // Request ids and a line per scrape, as on the API's port.
  app.use("*", requestLog(options.logger));
  app.get("/metrics", metricsHandler(options.registry, options.token));
  app.notFound((c) => problemResponse(c, new ApiError("not_found", `this port serves only GET /metrics, not ${c.req.method} ${c.req.path}`)));
  app.onError(handleError);
  const server = await new Promise<ServerType>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: options.port, hostname: options.host }, () => resolve(s));
    s.once("error", reject);
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  options.logger.info({ metricsPort: port, metricsHost: options.host }, `api metrics on http://${options.host}:${port}/metrics`);
  return { port, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
