import {
  CreateJobRequestSchema,
  CsvUploadQuerySchema,
  JobSchema,
  type CreateJobRequest,
  type FieldError,
  type TensorRow,
} from "@coalesce/contracts";
import { resolveModelVersion, type JobRecord } from "@coalesce/db";
import { validateRow } from "@coalesce/models";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError, fromZodError, validationError } from "../../errors.ts";
import { ingestCsv } from "../../ingest/csv-upload.ts";
import { openCsvStream } from "../../ingest/upload-body.ts";
import { limitBody } from "../../middleware/body-limit.ts";
import { problem } from "../responses.ts";
import { presentJob } from "./present.ts";

/** JSON jobs up to this size default to the interactive lane. */
const INTERACTIVE_MAX_ROWS = 1000;

/** Enough to fix a file without answering megabytes of errors for a wholly wrong one. */
const MAX_REPORTED_ERRORS = 100;

export const createJobRoute = createRoute({
  method: "post",
  path: "/v1/jobs",
  tags: ["Jobs"],
  summary: "Submit a job",
  description:
    "Submit rows to score with a model, as JSON rows or as a CSV file.\n\n" +
    "**JSON** (`application/json`): every row is checked against the model's input signature before the job " +
    "is accepted; the rows are stored, then queued, and the job comes back at once (202).\n\n" +
    "**CSV** (`text/csv` as the raw body, or `multipart/form-data` with the field `file`; `Content-Encoding: gzip` " +
    "optional): pass `model` and the column options in the query. The file is streamed: rows are stored and " +
    "queued chunk by chunk as they arrive, so scoring starts before the upload ends. A header that cannot feed " +
    "the model is refused (422) before anything is stored; a row that does not parse becomes a failed row " +
    "naming its line and column, and past `max_errors` such rows the upload is refused and nothing is kept. " +
    "By default a model with one input of shape [batch, N] takes the N columns left after `id_column` and " +
    "`ignore`; `map.INPUT=colA,colB` (repeatable) names each input's columns instead.\n\n" +
    "Poll GET /v1/jobs/{id} until it is finished, then read GET /v1/jobs/{id}/results.",
  request: {
    query: CsvUploadQuerySchema.partial().extend({
      "map.INPUT": z.string().optional().openapi({ description: "CSV: the columns of input INPUT, comma-separated; repeat for each input", example: "sepal_length,sepal_width,petal_length,petal_width" }),
    }),
    body: {
      required: false,
      content: {
        "application/json": { schema: CreateJobRequestSchema },
        "text/csv": { schema: z.string().openapi({ type: "string", format: "binary" }) },
        "multipart/form-data": {
          schema: { type: "object", properties: { file: { type: "string", format: "binary" } }, required: ["file"] },
        },
      },
    },
  },
  responses: {
    202: { description: "Accepted and queued", content: { "application/json": { schema: JobSchema } } },
    400: problem("The body is not valid JSON"),
    404: problem("No such model or model version"),
    413: problem("The body is larger than MAX_BODY_BYTES (JSON) or MAX_UPLOAD_BYTES (CSV)"),
    415: problem("The body is neither JSON nor CSV"),
    422: problem("A row does not fit the model's inputs; `errors` names each place"),
  },
});

export function registerCreateJob(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.use(createJobRoute.getRoutingPath(), async (c, next) => {
    // CSV uploads stream and are held to MAX_UPLOAD_BYTES as they are read.
    if (c.req.method !== "POST" || isCsvUpload(c)) return next();
    return limitBody(deps.limits.maxBodyBytes, "the request body")(c, next);
  });
  app.openapi(createJobRoute, async (c) => {
    const format = isCsvUpload(c) ? "csv" : "json";
    const job = format === "csv" ? await acceptCsv(c, deps) : await acceptJson(c, deps);
    deps.metrics.jobs.inc({ format });
    deps.metrics.rows.inc({ format }, job.totalRows);
    return c.json(presentJob(job), 202);
  });
}

/** JSON rows: every row checked against the model's signature, then stored and queued together. */
async function acceptJson(c: Context<AppEnv>, deps: ApiDeps): Promise<JobRecord> {
  const contentType = c.req.header("content-type") ?? "";
  if (!contentType && !c.req.raw.body) {
    // No body at all: say what a JSON job needs rather than which media types exist.
    const empty = CreateJobRequestSchema.safeParse({});
    if (!empty.success) throw fromZodError(empty.error);
  }
  if (!/^application\/json/i.test(contentType)) {
    throw new ApiError("unsupported_media_type", "send JSON rows as application/json, or a CSV file as text/csv or multipart/form-data");
  }
  // Validated by the route's JSON body schema; its type is lost because the body may also be CSV.
  const body = c.req.valid("json" as never) as CreateJobRequest;
  const tenantId = c.get("tenantId");
  const modelVersion = await resolveModelRef(deps, tenantId, body.model);
  if (body.inputs.length > deps.limits.maxJobRows) {
    throw validationError([
      { field: "inputs", message: `a JSON job takes at most ${deps.limits.maxJobRows} rows, got ${body.inputs.length}` },
    ]);
  }
  const priority = body.priority ?? (body.inputs.length <= INTERACTIVE_MAX_ROWS ? "interactive" : "batch");
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

  const { job, chunkIds } = await deps.jobWriter.add({
    tenantId,
    modelVersionId: modelVersion.id,
    // validateRow checked every row against the signature above.
    rows: body.inputs as TensorRow[],
    chunkRows: deps.limits.chunkRows,
    priority,
  });
  c.get("logger").info({ jobId: job.id, rows: job.totalRows, chunks: chunkIds.length, model: job.model }, "job accepted");
  return job;
}

function isCsvUpload(c: Context): boolean {
  const type = (c.req.header("content-type") ?? "").toLowerCase();
  return type.startsWith("text/csv") || type.startsWith("multipart/form-data");
}

async function resolveModelRef(deps: ApiDeps, tenantId: string, ref: string) {
  const [name = "", versionText] = ref.split("@");
  const modelVersion = await resolveModelVersion(deps.db, tenantId, name, versionText ? Number(versionText) : undefined);
  if (!modelVersion) {
    throw new ApiError(
      "not_found",
      versionText ? `model '${name}' has no version ${versionText}` : `no model named '${name}'; register it first`,
    );
  }
  return modelVersion;
}

/** `map.features=a,b&map.mask=c` -> { features: ["a", "b"], mask: ["c"] } */
function readColumnMap(url: URL): Record<string, string[]> {
  const map: Record<string, string[]> = {};
  for (const [key, value] of url.searchParams) {
    if (!key.startsWith("map.")) continue;
    map[key.slice(4)] = splitList(value);
  }
  return map;
}

function splitList(value: string | undefined): string[] {
  return (value ?? "").split(",").map((name) => name.trim()).filter((name) => name.length > 0);
}

async function acceptCsv(c: Context<AppEnv>, deps: ApiDeps) {
  const query = CsvUploadQuerySchema.safeParse(c.req.query());
  if (!query.success) throw fromZodError(query.error);
  const tenantId = c.get("tenantId");
  const modelVersion = await resolveModelRef(deps, tenantId, query.data.model);
  const csv = await openCsvStream(c.req.raw, deps.limits.maxUploadBytes, c.env?.incoming);
  return ingestCsv(deps, {
    tenantId,
    modelVersion,
    mapping: {
      idColumn: query.data.id_column,
      ignore: splitList(query.data.ignore),
      map: readColumnMap(new URL(c.req.url)),
    },
    maxErrors: query.data.max_errors,
    // The size of an upload is not known up front; a file is batch work unless the caller says otherwise.
    priority: query.data.priority ?? "batch",
    csv,
    log: c.get("logger"),
  });
}
