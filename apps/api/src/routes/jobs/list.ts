import { JobListSchema } from "@coalesce/contracts";
import { listJobs, presentJob } from "@coalesce/db";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { PARAM_ERRORS } from "../responses.ts";
import { pageLimitSchema } from "./params.ts";
import { needs } from "../../auth/scopes.ts";

export const listJobsRoute = createRoute({
  method: "get",
  path: "/v1/jobs",
  operationId: "listJobs",
  security: needs("jobs:read"),
  tags: ["Jobs"],
  summary: "List jobs",
  description: "The caller's jobs, newest first. Pass `next_cursor` back as `cursor` for the next page.",
  request: {
    query: z.object({
      cursor: z
        .string()
        .regex(/^job_[0-9a-z]{26}$/, "expected the next_cursor of a previous page")
        .optional()
        .openapi({ description: "`next_cursor` of the previous page" }),
      limit: pageLimitSchema(20, 100),
    }),
  },
  responses: {
    ...PARAM_ERRORS,
    200: { description: "A page of jobs", content: { "application/json": { schema: JobListSchema } } },
  },
});

export function registerListJobs(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(listJobsRoute, async (c) => {
    const { cursor, limit } = c.req.valid("query");
    const page = await listJobs(deps.db, c.get("tenantId"), { limit, ...(cursor ? { cursor } : {}) });
    return c.json({ data: page.jobs.map(presentJob), next_cursor: page.nextCursor }, 200);
  });
}
