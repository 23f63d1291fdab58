import { JobSchema, TERMINAL_JOB_STATUSES } from "@coalesce/contracts";
import { findJob, presentJob, type JobRecord } from "@coalesce/db";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { problem } from "../responses.ts";
import { JobIdParamsSchema } from "./params.ts";

const MAX_WAIT_SECONDS = 60;

export const getJobRoute = createRoute({
  method: "get",
  path: "/v1/jobs/{id}",
  tags: ["Jobs"],
  summary: "Get a job",
  description:
    "The job's status, row counts and progress. A job is finished when its status is succeeded, failed or " +
    "cancelled. With `wait=SECONDS` (up to 60) the request is held until the job finishes or the time is " +
    "up (long-poll), answering as soon as it ends rather than on the next poll.",
  request: {
    params: JobIdParamsSchema,
    query: z.object({
      wait: z.coerce.number().min(0).max(MAX_WAIT_SECONDS).optional().openapi({
        description: `Seconds to wait for the job to finish, 0-${MAX_WAIT_SECONDS}.`,
        example: 30,
      }),
    }),
  },
  responses: {
    200: { description: "The job", content: { "application/json": { schema: JobSchema } } },
    404: problem("No such job"),
    422: problem("`wait` is out of range"),
  },
});

const finished = (job: JobRecord) => TERMINAL_JOB_STATUSES.includes(job.status);

export function registerGetJob(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(getJobRoute, async (c) => {
    const { id } = c.req.valid("param");
    const { wait = 0 } = c.req.valid("query");
    const tenantId = c.get("tenantId");
    let job = await findJob(deps.db, tenantId, id);
    if (!job) throw new ApiError("not_found", `no job '${id}'`);
    if (wait > 0 && !finished(job)) {
      // Listen first, then look again, so an end between the first read and now is not missed.
      const waiting = await deps.jobEvents.waitFor(id, wait * 1000);
      const stop = () => waiting.cancel();
      c.req.raw.signal?.addEventListener("abort", stop);
      try {
        job = (await findJob(deps.db, tenantId, id)) ?? job;
        if (!finished(job)) {
          await waiting.wait;
          job = (await findJob(deps.db, tenantId, id)) ?? job;
        }
      } finally {
        c.req.raw.signal?.removeEventListener("abort", stop);
        waiting.cancel();
      }
    }
    return c.json(presentJob(job), 200);
  });
}
