import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import packageJson from "../../../package.json" with { type: "json" };
import type { ApiDeps, AppEnv } from "../../context.ts";
import { RETRY_AFTER_SECONDS } from "../../errors.ts";
import { check } from "../health.ts";
import { V2ServerMetadataSchema } from "./schemas.ts";

const TAGS = ["Open Inference Protocol"];

export const v2ServerMetadataRoute = createRoute({
  method: "get",
  path: "/v2",
  operationId: "serverMetadata",
  security: [],
  tags: TAGS,
  summary: "Server metadata",
  description: "The server's name and version; no protocol extensions are supported (not the binary tensor extension either).",
  responses: {
    200: { description: "The server", content: { "application/json": { schema: V2ServerMetadataSchema, example: { name: "coalesce", version: "0.1.0", extensions: [] } } } },
  },
});

export const v2ServerLiveRoute = createRoute({
  method: "get",
  path: "/v2/health/live",
  operationId: "serverLive",
  security: [],
  tags: TAGS,
  summary: "Server live",
  description: "200 while the process serves requests (a Kubernetes livenessProbe); it does not touch Postgres or Redis.",
  responses: { 200: { description: "Alive", content: { "application/json": { schema: z.object({ live: z.literal(true) }).openapi("V2ServerLive") } } } },
});

const ServerReadySchema = z.object({ ready: z.boolean() }).openapi("V2ServerReady");

export const v2ServerReadyRoute = createRoute({
  method: "get",
  path: "/v2/health/ready",
  operationId: "serverReady",
  security: [],
  tags: TAGS,
  summary: "Server ready",
  description:
    "200 `{\"ready\": true}` when Postgres and Redis answer and a worker serving predictions is running (a Kubernetes readinessProbe); " +
    "otherwise 503 `{\"ready\": false}` with Retry-After.",
  responses: {
    200: { description: "Ready to answer inference requests", content: { "application/json": { schema: ServerReadySchema, example: { ready: true } } } },
    503: {
      description: "Postgres or Redis does not answer, or no worker serves predictions",
      headers: z.object({ "Retry-After": z.string().openapi({ description: "Seconds to wait before asking again", example: "5" }) }),
      content: { "application/json": { schema: ServerReadySchema, example: { ready: false } } },
    },
  },
});

export function registerV2Server(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  const metadata = (c: Context<AppEnv>) => c.json({ name: "coalesce" as const, version: packageJson.version, extensions: [] }, 200);
  app.openapi(v2ServerMetadataRoute, metadata);
  // The protocol's own document spells the path with a trailing slash.
  app.get("/v2/", metadata);
  app.openapi(v2ServerLiveRoute, (c) => c.json({ live: true as const }, 200));
  app.openapi(v2ServerReadyRoute, async (c) => {
    const failures = await Promise.all([
      check("postgres", () => deps.db.pool.query("SELECT 1")),
      check("redis", () => deps.redis.ping()),
      check("a worker", async () => {
        if (!(await deps.predict.ready())) throw new Error("no worker serves predictions");
      }),
    ]);
    if (failures.every((failure) => failure === null)) return c.json({ ready: true }, 200);
    // 503, not Triton's 400: nothing is wrong with the probe's request, the server cannot serve yet
    // (KServe answers a model that is not ready with 503 too). Kubernetes counts any status of 400
    // or more as a failed probe, so either takes the pod out of the Service's endpoints.
    return c.json({ ready: false }, 503, { "Retry-After": String(RETRY_AFTER_SECONDS) });
  });
}
