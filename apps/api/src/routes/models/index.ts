import type { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { registerCreateModelVersion } from "./create-version.ts";
import { registerDeleteModelVersion } from "./delete-version.ts";
import { registerGetModel } from "./get.ts";
import { registerListModels } from "./list.ts";
import { registerUpdateModelVersion } from "./update-version.ts";

export function registerModelRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  registerCreateModelVersion(app, deps);
  registerListModels(app, deps);
  registerGetModel(app, deps);
  registerUpdateModelVersion(app, deps);
  registerDeleteModelVersion(app, deps);
}
