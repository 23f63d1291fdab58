import type { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { registerCreateApiKey } from "./create.ts";
import { registerListApiKeys } from "./list.ts";
import { registerRevokeApiKey } from "./revoke.ts";
import { registerRotateApiKey } from "./rotate.ts";

/** Key management (admin): create, list, revoke, rotate. */
export function registerApiKeyRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  registerCreateApiKey(app, deps);
  registerListApiKeys(app, deps);
  registerRevokeApiKey(app, deps);
  registerRotateApiKey(app, deps);
}
