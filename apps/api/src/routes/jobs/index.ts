import type { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { registerCancelJob } from "./cancel.ts";
import { registerCreateJob } from "./create.ts";
import { registerDeleteJob } from "./delete.ts";
import { registerJobEvents } from "./events.ts";
import { registerGetJob } from "./get.ts";
import { registerListJobs } from "./list.ts";
import { registerGetJobResults } from "./results.ts";

export function registerJobRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  registerCreateJob(app, deps);
  registerListJobs(app, deps);
  registerGetJob(app, deps);
  registerGetJobResults(app, deps);
  registerCancelJob(app, deps);
  registerDeleteJob(app, deps);
  registerJobEvents(app, deps);
}
