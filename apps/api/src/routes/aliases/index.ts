import type { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { registerAliasComparison } from "./comparison.ts";
import { registerDeleteAlias } from "./delete.ts";
import { registerGetAlias } from "./get.ts";
import { registerAliasHistory } from "./history.ts";
import { registerListAliases } from "./list.ts";
import { registerPutAlias } from "./put.ts";
import { registerRollbackAlias } from "./rollback.ts";

export function registerAliasRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  registerListAliases(app, deps);
  registerPutAlias(app, deps);
  registerGetAlias(app, deps);
  registerDeleteAlias(app, deps);
  registerAliasHistory(app, deps);
  registerRollbackAlias(app, deps);
  registerAliasComparison(app, deps);
}
