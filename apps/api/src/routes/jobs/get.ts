import { JobSchema, TERMINAL_JOB_STATUSES } from "@coalesce/contracts";
import { findJob, presentJob, type JobRecord } from "@coalesce/db";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { notFound, PARAM_ERRORS, problem } from "../responses.ts";
import { JobIdParamsSchema } from "./params.ts";
import { needs } from "../../auth/scopes.ts";

const MAX_WAIT_SECONDS = 60;

export const getJobRoute = createRoute({
  method: "get",
  path: "/v1/jobs/{id}",
  operationId: "getJob",
  security: needs("jobs:read"),
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
    ...PARAM_ERRORS,
    ...notFound("job"),
    200: { description: "The job", content: { "application/json": { schema: JobSchema } } },
    422: problem("The id is malformed, or `wait` is out of range; `errors` names it (`code: validation_failed`)"),
  },
});

const finished = (job: JobRecord) => TERMINAL_JOB_STATUSES.includes(job.status);

/**
 * How often a long-poll looks at Postgres itself: often while Redis is away (no end is announced
 * then), now and then otherwise, in case an announcement was lost (published while Redis was down).
 */
const LOOK_EVERY_MS = { listening: 10_000, deaf: 1_000 };

export function registerGetJob(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(getJobRoute, async (c) => {
    const { id } = c.req.valid("param");
    const { wait = 0 } = c.req.valid("query");
    const tenantId = c.get("tenantId");
    let job = await findJob(deps.db, tenantId, id);
    if (!job) throw new ApiError("not_found", `no job '${id}'`);
    const deadline = Date.now() + wait * 1000;
    let gone = false;
    const leave = () => {
      gone = true;
    };
    c.req.raw.signal?.addEventListener("abort", leave);
    try {
      while (!finished(job) && !gone) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        // Listen first, then look again, so an end between the last read and now is not missed.
        const slice = Math.min(left, deps.jobEvents.listening ? LOOK_EVERY_MS.listening : LOOK_EVERY_MS.deaf);
        const waiting = await deps.jobEvents.waitFor(id, slice);
        const stop = () => waiting.cancel();
        c.req.raw.signal?.addEventListener("abort", stop);
        try {
          job = (await findJob(deps.db, tenantId, id)) ?? job;
          if (finished(job)) break;
          await waiting.wait;
        } finally {
          c.req.raw.signal?.removeEventListener("abort", stop);
          waiting.cancel();
        }
        // At the deadline the answer is the job as it is now, not as it was a slice ago.
        if (Date.now() >= deadline) job = (await findJob(deps.db, tenantId, id)) ?? job;
      }
    } finally {
      c.req.raw.signal?.removeEventListener("abort", leave);
    }
    return c.json(presentJob(job), 200);
  });
}
