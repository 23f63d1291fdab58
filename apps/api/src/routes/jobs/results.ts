import { JobResultsSchema } from "@coalesce/contracts";
import { findJob, readResults } from "@coalesce/db";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { problem } from "../responses.ts";
import { JobIdParamsSchema, pageLimitSchema } from "./params.ts";

export const getJobResultsRoute = createRoute({
  method: "get",
  path: "/v1/jobs/{id}/results",
  tags: ["Jobs"],
  summary: "Read a job's results",
  description:
    "Scored rows in input order, one page at a time: each row has `outputs` keyed by the model's output " +
    "names, or `error` if that row failed. int64 values within +-2^53 are JSON numbers, larger ones strings. " +
    "Pass `next_cursor` back as `cursor` until it is null. While the job runs, only rows scored so far appear.",
  request: {
    params: JobIdParamsSchema,
    query: z.object({
      cursor: z.string().regex(/^\d{1,10}$/, "expected the next_cursor of a previous page").optional(),
      limit: pageLimitSchema(100, 1000),
    }),
  },
  responses: {
    200: { description: "A page of results", content: { "application/json": { schema: JobResultsSchema } } },
    404: problem("No such job"),
    422: problem("A query parameter is out of range"),
  },
});

export function registerGetJobResults(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(getJobResultsRoute, async (c) => {
    const { id } = c.req.valid("param");
    const { cursor, limit } = c.req.valid("query");
    const job = await findJob(deps.db.prisma, c.get("tenantId"), id);
    if (!job) throw new ApiError("not_found", `no job '${id}'`);
    const page = await readResults(deps.db, job.id, { cursor: cursor ? Number(cursor) : 0, limit });
    return c.json(
      JobResultsSchema.parse({
        data: page.rows,
        next_cursor: page.nextCursor === null ? null : String(page.nextCursor),
        job_status: job.status,
      }),
      200,
    );
  });
}
