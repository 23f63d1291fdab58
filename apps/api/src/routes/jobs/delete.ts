import { deleteTenantJob } from "@coalesce/db";
import { publishJobFinished, unqueueChunks } from "@coalesce/queue";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { notFound, PARAM_ERRORS } from "../responses.ts";
import { JobIdParamsSchema } from "./params.ts";
import { needs } from "../../auth/scopes.ts";
import { audit } from "../audit/record.ts";

export const deleteJobRoute = createRoute({
  method: "delete",
  path: "/v1/jobs/{id}",
  operationId: "deleteJob",
  security: needs("jobs:write"),
  tags: ["Jobs"],
  summary: "Delete a job",
  description:
    "Deletes a job with its inputs and results now, whatever its state (an unfinished one stops). Finished " +
    "jobs are also deleted automatically RETENTION_DAYS after they finish (30 by default).",
  request: { params: JobIdParamsSchema },
  responses: {
    ...PARAM_ERRORS,
    ...notFound("job"),
    204: { description: "Deleted" },
  },
});

export function registerDeleteJob(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(deleteJobRoute, async (c) => {
    const { id } = c.req.valid("param");
    const deleted = await deleteTenantJob(deps.db, c.get("tenantId"), id);
    if (!deleted) throw new ApiError("not_found", `no job '${id}'`);
    await unqueueChunks(deps.queue, deleted.queuedChunkIds);
    await publishJobFinished(deps.redis, deps.queuePrefix, id);
    await audit(c, deps, "job.deleted", id);
    c.get("logger").info({ jobId: id }, "job deleted");
    return c.body(null, 204);
  });
}
