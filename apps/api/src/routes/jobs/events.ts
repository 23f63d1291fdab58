import { isTransientError, TERMINAL_JOB_STATUSES } from "@coalesce/contracts";
import { findJob, presentJob } from "@coalesce/db";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { streamSSE } from "hono/streaming";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { notFound, PARAM_ERRORS } from "../responses.ts";
import { JobIdParamsSchema } from "./params.ts";
import { needs } from "../../auth/scopes.ts";

/** How often a running job's progress is re-read; its end is pushed at once through Redis. */
const PROGRESS_EVERY_MS = 1_000;
/**
 * A comment line after this long without an event (a job queued behind others says nothing for a
 * while): proxies and load balancers drop a connection idle past their read timeout (nginx's
 * default is 60 s), and the comment also tells a client that the stream is alive.
 */
export const SSE_HEARTBEAT_MS = 15_000;

export const jobEventsRoute = createRoute({
  method: "get",
  path: "/v1/jobs/{id}/events",
  operationId: "streamJobEvents",
  security: needs("jobs:read"),
  tags: ["Jobs"],
  summary: "Follow a job (Server-Sent Events)",
  description:
    "A `text/event-stream` of the job: a `progress` event (the job, as GET /v1/jobs/{id} shows it) now and " +
    "whenever its counts change, then one `end` event with its final state, after which the stream closes. " +
    "A comment line (`: keep-alive`) is sent after 15 s without an event. When the API shuts down, the stream ends " +
    "without an `end` event: reconnect (an EventSource does so by itself) and another replica goes on.",
  request: { params: JobIdParamsSchema },
  responses: {
    200: {
      description: "The event stream",
      content: { "text/event-stream": { schema: z.string().openapi({ example: 'event: progress\ndata: {"id":"job_...","status":"running",...}\n\n' }) } },
    },
    ...PARAM_ERRORS,
    ...notFound("job"),
  },
});

export function registerJobEvents(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(jobEventsRoute, async (c) => {
    const { id } = c.req.valid("param");
    const tenantId = c.get("tenantId");
    const first = await findJob(deps.db, tenantId, id);
    if (!first) throw new ApiError("not_found", `no job '${id}'`);
    return streamSSE(c, async (stream) => {
      let closed = false;
      stream.onAbort(() => {
        closed = true;
      });
      let job = first;
      let last = "";
      let wroteAt = Date.now();
      for (;;) {
        const shown = JSON.stringify(presentJob(job));
        if (TERMINAL_JOB_STATUSES.includes(job.status)) {
          await stream.writeSSE({ event: "end", data: shown });
          return;
        }
        const counts = `${job.status}:${job.succeededRows}:${job.failedRows}:${job.totalRows}`;
        if (counts !== last) {
          await stream.writeSSE({ event: "progress", data: shown });
          last = counts;
          wroteAt = Date.now();
        } else if (Date.now() - wroteAt >= SSE_HEARTBEAT_MS) {
          await stream.write(": keep-alive\n\n");
          wroteAt = Date.now();
        }
        const waiting = await deps.jobEvents.waitFor(id, PROGRESS_EVERY_MS);
        await waiting.wait;
        waiting.cancel();
        if (closed || deps.closing?.aborted) return;
        let next;
        try {
          next = await findJob(deps.db, tenantId, id);
        } catch (error) {
          // Postgres away for a moment: the stream stays open and the next tick looks again (the
          // outage is logged once by the pool, not here on every tick).
          if (isTransientError(error)) continue;
          throw error;
        }
        if (!next) return; // deleted meanwhile
        job = next;
      }
    }, async (error) => {
      // The response has begun, so this cannot become a problem+json any more: logged, stream closed.
      c.get("logger").error({ err: error, jobId: id }, "job event stream failed");
    }) as unknown as Response;
  });
}
