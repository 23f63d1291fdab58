import type { OpenAPIHono } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { v2ErrorBodies } from "./errors.ts";
import { registerV2Infer } from "./infer.ts";
import { registerV2ModelMetadata } from "./model-metadata.ts";
import { registerV2ModelReady } from "./model-ready.ts";
import { registerV2Server } from "./server.ts";

/**
 * The Open Inference Protocol (KServe V2) REST API: server metadata and health without a key, the
 * models' metadata, readiness and inference behind one, every error as `{"error": "..."}`. Call
 * before any other /v2 route exists, so the error rewriting wraps them all (the 404 for an
 * unknown /v2 path included).
 */
export function registerV2Routes(app: OpenAPIHono<AppEnv>, deps: ApiDeps, auth: MiddlewareHandler<AppEnv>): void {
  app.use("/v2/*", v2ErrorBodies());
  app.use("/v2/models/*", auth);
  registerV2Server(app, deps);
  registerV2ModelMetadata(app, deps);
  registerV2ModelReady(app, deps);
  registerV2Infer(app, deps);
}
