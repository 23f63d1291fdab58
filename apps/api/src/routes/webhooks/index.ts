import type { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { registerDeliveryRoutes } from "./deliveries.ts";
import { registerWebhookEndpointRoutes } from "./endpoints.ts";
import { registerWebhookSecretRoutes } from "./secrets.ts";

export function registerWebhookRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  // default-secret before {id}, so it is not taken for an endpoint id.
  registerWebhookSecretRoutes(app, deps);
  registerWebhookEndpointRoutes(app, deps);
  registerDeliveryRoutes(app, deps);
}
