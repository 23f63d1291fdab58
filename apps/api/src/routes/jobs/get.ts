import { JobSchema } from "@coalesce/contracts";
import { findJob } from "@coalesce/db";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { problem } from "../responses.ts";
import { JobIdParamsSchema } from "./params.ts";
import { presentJob } from "./present.ts";

export const getJobRoute = createRoute({
  method: "get",
  path: "/v1/jobs/{id}",
  tags: ["Jobs"],
  summary: "Get a job",
  description: "The job's status and row counts. A job is finished when its status is succeeded, failed or cancelled.",
  request: { params: JobIdParamsSchema },
  responses: {
    200: { description: "The job", content: { "application/json": { schema: JobSchema } } },
    404: problem("No such job"),
  },
});

export function registerGetJob(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(getJobRoute, async (c) => {
    const { id } = c.req.valid("param");
    const job = await findJob(deps.db, c.get("tenantId"), id);
    if (!job) throw new ApiError("not_found", `no job '${id}'`);
    return c.json(presentJob(job), 200);
  });
}
