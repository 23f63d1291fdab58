import { CreateJobRequestSchema, JobSchema, type FieldError } from "@coalesce/contracts";
import { createJob, resolveModelVersion } from "@coalesce/db";
import { validateRow } from "@coalesce/models";
import { enqueueChunks } from "@coalesce/queue";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError, validationError } from "../../errors.ts";
import { limitBody } from "../../middleware/body-limit.ts";
import { problem } from "../responses.ts";
import { presentJob } from "./present.ts";

/** Enough to fix a file without answering megabytes of errors for a wholly wrong one. */
const MAX_REPORTED_ERRORS = 100;

export const createJobRoute = createRoute({
  method: "post",
  path: "/v1/jobs",
  tags: ["Jobs"],
  summary: "Submit a job",
  description:
    "Submit rows to score with a model. Every row is checked against the model's input signature before " +
    "the job is accepted; the rows are stored, then queued, and the job id comes back at once (202). " +
    "Poll GET /v1/jobs/{id} until it is finished, then read GET /v1/jobs/{id}/results.",
  request: {
    body: { required: true, content: { "application/json": { schema: CreateJobRequestSchema } } },
  },
  responses: {
    202: { description: "Accepted and queued", content: { "application/json": { schema: JobSchema } } },
    400: problem("The body is not valid JSON"),
    404: problem("No such model or model version"),
    413: problem("The body is larger than MAX_BODY_BYTES"),
    415: problem("The body is not application/json"),
    422: problem("A row does not fit the model's inputs; `errors` names each place"),
  },
});

export function registerCreateJob(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.use(createJobRoute.getRoutingPath(), async (c, next) => {
    if (c.req.method !== "POST") return next();
    return limitBody(deps.limits.maxBodyBytes, "the request body")(c, next);
  });
  app.openapi(createJobRoute, async (c) => {
    const body = c.req.valid("json");
    const tenantId = c.get("tenantId");
    const [name = "", versionText] = body.model.split("@");
    const modelVersion = await resolveModelVersion(deps.db.prisma, tenantId, name, versionText ? Number(versionText) : undefined);
    if (!modelVersion) {
      throw new ApiError(
        "not_found",
        versionText ? `model '${name}' has no version ${versionText}` : `no model named '${name}'; register it first`,
      );
    }
    if (body.inputs.length > deps.limits.maxJobRows) {
      throw validationError([
        { field: "inputs", message: `a JSON job takes at most ${deps.limits.maxJobRows} rows, got ${body.inputs.length}` },
      ]);
    }
    const errors: FieldError[] = [];
    let errorCount = 0;
    body.inputs.forEach((row, index) => {
      const issues = validateRow(row, modelVersion.inputs, `inputs[${index}]`);
      errorCount += issues.length;
      for (const issue of issues) {
        if (errors.length < MAX_REPORTED_ERRORS) errors.push({ field: issue.path, message: issue.message });
      }
    });
    if (errorCount > 0) throw validationError(errors, errorCount);

    const { job, chunkIds } = await createJob(deps.db.prisma, {
      tenantId,
      modelVersionId: modelVersion.id,
      // validateRow checked every row against the signature above.
      rows: body.inputs as Parameters<typeof createJob>[1]["rows"],
      chunkRows: deps.limits.chunkRows,
    });
    const log = c.get("logger").child({ jobId: job.id });
    try {
      await enqueueChunks(
        deps.queue,
        chunkIds.map((chunkId) => ({ chunkId, jobId: job.id, modelVersionId: modelVersion.id })),
      );
    } catch (error) {
      // The job and its rows are committed; the worker's reconciler queues chunks that Redis lost.
      log.warn({ err: error }, "enqueue failed; the job stays queued and will be picked up by the reconciler");
    }
    log.info({ rows: job.totalRows, chunks: chunkIds.length, model: job.model }, "job accepted");
    return c.json(presentJob(job), 202);
  });
}
