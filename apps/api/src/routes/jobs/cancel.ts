import { JobSchema } from "@coalesce/contracts";
import { cancelJob, presentJob } from "@coalesce/db";
import { publishJobFinished, unqueueChunks } from "@coalesce/queue";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { notFound, PARAM_ERRORS, problem } from "../responses.ts";
import { JobIdParamsSchema } from "./params.ts";
import { needs } from "../../auth/scopes.ts";
import { audit } from "../audit/record.ts";

export const cancelJobRoute = createRoute({
  method: "post",
  path: "/v1/jobs/{id}/cancel",
  operationId: "cancelJob",
  security: needs("jobs:write"),
  tags: ["Jobs"],
  summary: "Cancel a job",
  description:
    "Stops an unfinished job: it ends `cancelled` at once and its waiting chunks leave the queue. Rows " +
    "already scored keep their results, readable as usual, and the counts say exactly how many; rows being " +
    "scored at that moment are dropped. Webhook endpoints subscribed to job.cancelled are told.",
  request: { params: JobIdParamsSchema },
  responses: {
    ...PARAM_ERRORS,
    ...notFound("job"),
    200: { description: "The cancelled job", content: { "application/json": { schema: JobSchema } } },
    409: problem("The job had already finished (`code: conflict`)"),
  },
});

export function registerCancelJob(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(cancelJobRoute, async (c) => {
    const { id } = c.req.valid("param");
    const outcome = await cancelJob(deps.db, c.get("tenantId"), id);
    if (!outcome) throw new ApiError("not_found", `no job '${id}'`);
    if (!outcome.cancelled) throw new ApiError("conflict", `job '${id}' has already finished (${outcome.job.status})`);
    await publishJobFinished(deps.redis, deps.queuePrefix, id);
    const unqueued = await unqueueChunks(deps.queue, outcome.queuedChunkIds);
    await audit(c, deps, "job.cancelled", id);
    c.get("logger").info({ jobId: id, unqueued }, "job cancelled");
    return c.json(presentJob(outcome.job), 200);
  });
}
