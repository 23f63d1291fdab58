import {
  CreateJobRequestSchema,
  CsvUploadQuerySchema,
  JobSchema,
  type CreateJobRequest,
} from "@coalesce/contracts";
import {
  deleteTenantJob,
  presentJob,
  recordIdempotentJob,
  releaseIdempotencyKey,
  type JobRecord,
  type KeyClaim,
} from "@coalesce/db";
import { unqueueChunks } from "@coalesce/queue";
import { packRows } from "@coalesce/models";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError, fromZodError, validationError } from "../../errors.ts";
import { ingestCsv } from "../../ingest/csv-upload.ts";
import { ClientGoneError, openCsvStream } from "../../ingest/upload-body.ts";
import { limitBody } from "../../middleware/body-limit.ts";
import { JSON_BODY_ERRORS, problem } from "../responses.ts";
import { createModelRouter, forgetModel, parseModelRef, type RoutedModel } from "../model-resolver.ts";
import { assertValidRows } from "../validate-rows.ts";
import { assertDeliverableUrl } from "../webhooks/check-url.ts";
import { claimCsvKey, claimJsonKey, keyTakenOver } from "./idempotency.ts";
import { needs } from "../../auth/scopes.ts";
import { auditInBackground } from "../audit/record.ts";

/** JSON jobs up to this size default to the interactive lane. */
const INTERACTIVE_MAX_ROWS = 1000;

export const createJobRoute = createRoute({
  method: "post",
  path: "/v1/jobs",
  operationId: "createJob",
  security: needs("jobs:write"),
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
    "`ignore`; `map.INPUT=colA,colB` (repeatable) names each input's columns instead. A file without a header " +
    "is sent with `header=false`: every line is a row, the columns feed the model's inputs in its input order, and " +
    "`id_column`, `ignore` and `map.INPUT` name columns by position from 0 (a first line of numbers alone is " +
    "refused as a header, 422, rather than lost). A quote inside an unquoted field (`5'10\"`) is text. A row may " +
    "have at most MAX_CSV_EXTRA_FIELDS fields more than the header (then it is a failed row) and a file at most " +
    "MAX_CSV_BLANK_LINES blank lines; past either the upload is refused. While the file streams, the job shows " +
    "`counts.total: null` and the rows received so far; the 202 shows the job as it is when the file has ended.\n\n" +
    "Poll GET /v1/jobs/{id} until it is finished, then read GET /v1/jobs/{id}/results.",
  request: {
    headers: z.object({
      // Stored in Postgres as the key: printable ASCII only, so no NUL or control character reaches it.
      "idempotency-key": z.string().min(1).max(255).regex(/^[\x21-\x7e]+$/, "expected 1-255 printable ASCII characters without spaces").optional().openapi({
        description:
          "A repeat of the same request with the same key within 24 h returns the original job (header Idempotent-Replayed: true); " +
          "the same key with another request is refused (422). For CSV uploads the request is the query and the file's CSV " +
          "content (a repeat is read through to compare); while the first upload with a key is still streaming, a repeat gets 409.",
        example: "order-2026-11-25-0042",
      }),
    }),
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
    ...JSON_BODY_ERRORS,
    202: {
      description: "Accepted and queued",
      headers: z.object({
        "Idempotent-Replayed": z.literal("true").optional().openapi({ description: "Set when this is the original job of an earlier request with the same Idempotency-Key" }),
      }),
      content: { "application/json": { schema: JobSchema } },
    },
    400: problem("The JSON body is not valid JSON (`code: invalid_json`); a malformed CSV or multipart body is a 422"),
    404: problem("No such model or model version (`code: not_found`)"),
    413: problem("The body is larger than MAX_BODY_BYTES (JSON) or MAX_UPLOAD_BYTES (CSV) (`code: payload_too_large`)"),
    415: problem("The body is neither JSON nor CSV, or its Content-Encoding is not gzip (`code: unsupported_media_type`)"),
    409: problem(
      "A request with the same Idempotency-Key is still being written, or this request's key was taken over by a retry while it ran " +
        "(its job discarded), or the upload was ended as interrupted (`code: conflict`)",
    ),
    422: problem(
      "A field, a query parameter, a row or the CSV header does not fit (`errors` names each place), a field is unknown, " +
        "past `max_errors` CSV rows failed, or the Idempotency-Key was used with another request (`code: validation_failed`)",
    ),
  },
});

export function registerCreateJob(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.use(createJobRoute.getRoutingPath(), async (c, next) => {
    // CSV uploads stream and are held to MAX_UPLOAD_BYTES as they are read.
    if (c.req.method !== "POST" || isCsvUpload(c)) return next();
    return limitBody(deps.limits.maxBodyBytes, "the request body")(c, next);
  });
  const resolveModel = createRefResolver(deps);
  app.openapi(createJobRoute, async (c) => {
    const format = isCsvUpload(c) ? "csv" : "json";
    const { job, replayed } = format === "csv" ? await acceptCsv(c, deps, resolveModel) : await acceptJson(c, deps, resolveModel);
    if (replayed) {
      c.header("Idempotent-Replayed", "true");
    } else {
      deps.metrics.jobs.inc({ format });
      deps.metrics.rows.inc({ format }, job.totalRows);
      auditInBackground(c, deps, "job.created", job.id, { format, model: job.modelVersionId, rows: job.totalRows });
    }
    return c.json(presentJob(job), 202);
  });
}

/**
 * JSON rows: every row checked against the model's signature, then stored and queued together. With
 * an Idempotency-Key, a repeat of the same request within 24 h returns the original job instead.
 */
async function acceptJson(c: Context<AppEnv>, deps: ApiDeps, resolveModel: ModelResolver): Promise<{ job: JobRecord; replayed: boolean }> {
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
  const { model: modelVersion, alias } = await resolveModel(tenantId, body.model, body.routing_key);
  if (body.inputs.length > deps.limits.maxJobRows) {
    throw validationError([
      { field: "inputs", message: `a JSON job takes at most ${deps.limits.maxJobRows} rows, got ${body.inputs.length}` },
    ]);
  }
  const priority = body.priority ?? (body.inputs.length <= INTERACTIVE_MAX_ROWS ? "interactive" : "batch");
  assertValidRows(body.inputs, modelVersion.inputs);
  const webhookUrl = body.webhook_url === undefined ? undefined : await assertDeliverableUrl(body.webhook_url, deps.webhookPolicy, "webhook_url");

  const idempotencyKey = c.req.header("idempotency-key");
  let claim: KeyClaim | null = null;
  if (idempotencyKey !== undefined) {
    const earlier = await claimJsonKey(deps, tenantId, idempotencyKey, body);
    if (earlier.kind === "replay") return { job: earlier.job, replayed: true };
    claim = earlier.claim;
  }
  let created;
  try {
    // Here, past every check of the rows and a replay: a refusal (429) frees the key like any failure.
    await deps.rateLimits?.admitJob(c, body.inputs.length);
    created = await deps.jobWriter.add({
      tenantId,
      modelVersionId: modelVersion.id,
      rows: body.inputs,
      chunkRows: deps.limits.chunkRows,
      packRows: (rows) => packRows(rows, modelVersion.inputs),
      priority,
      expiresAfterSeconds: body.expires_after,
      webhookUrl,
      alias: alias ?? undefined,
    });
  } catch (error) {
    if (claim) await releaseIdempotencyKey(deps.db, claim).catch(() => {});
    throw error;
  }
  if ("gone" in created) {
    // Deleted between this request resolving the version (remembered for a second) and its insert.
    if (claim) await releaseIdempotencyKey(deps.db, claim).catch(() => {});
    forgetModel(deps, tenantId, modelVersion.modelName);
    throw new ApiError("not_found", `model '${modelVersion.modelName}' has no version ${modelVersion.version} (it was just deleted)`);
  }
  // The job is committed before the key names it (the job is written by the GroupCommit together
  // with others): an API that dies between the two leaves the claim to be freed by the upload sweep
  // after UPLOAD_STALE_MS, and a retry after that makes a second job.
  if (claim && !(await recordIdempotentJob(deps.db, claim, created.job.id))) {
    // This request went unseen so long that a retry took the key over: the retry's job is the key's.
    const gone = await deleteTenantJob(deps.db, tenantId, created.job.id);
    if (gone) await unqueueChunks(deps.queue, gone.queuedChunkIds);
    throw keyTakenOver();
  }
  c.get("logger").info({ jobId: created.job.id, rows: created.job.totalRows, chunks: created.chunks.length, model: created.job.model }, "job accepted");
  return { job: created.job, replayed: false };
}

function isCsvUpload(c: Context): boolean {
  const type = (c.req.header("content-type") ?? "").toLowerCase();
  return type.startsWith("text/csv") || type.startsWith("multipart/form-data");
}

/** Finds the model version a job names (`name`, `name@3` or `name@alias`), routed by the alias's split. */
type ModelResolver = (tenantId: string, ref: string, routingKey: string | undefined) => Promise<RoutedModel>;

function createRefResolver(deps: ApiDeps): ModelResolver {
  const route = createModelRouter(deps);
  return (tenantId, ref, routingKey) => route(tenantId, parseModelRef(ref), routingKey);
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

async function acceptCsv(c: Context<AppEnv>, deps: ApiDeps, resolveModel: ModelResolver): Promise<{ job: JobRecord; replayed: boolean }> {
  const query = CsvUploadQuerySchema.safeParse(c.req.query());
  if (!query.success) throw fromZodError(query.error);
  const tenantId = c.get("tenantId");
  const { model: modelVersion, alias } = await resolveModel(tenantId, query.data.model, query.data.routing_key);
  const webhookUrl = query.data.webhook_url === undefined ? undefined : await assertDeliverableUrl(query.data.webhook_url, deps.webhookPolicy, "webhook_url");
  const url = new URL(c.req.url);
  // Before a byte of the file is read: a tenant over its limits is refused at once (429).
  await deps.rateLimits?.admitUpload(c);
  try {
    let csv = await openCsvStream(c.req.raw, deps.limits.maxUploadBytes, { incoming: c.env?.incoming, outgoing: c.env?.outgoing });
    const idempotencyKey = c.req.header("idempotency-key");
    const claim =
      idempotencyKey === undefined
        ? null
        : await claimCsvKey(deps, tenantId, idempotencyKey, url.searchParams, csv).catch((error: unknown) => {
            // Refused (409, 422): stop reading the file.
            csv.destroy();
            throw error;
          });
    if (claim?.kind === "replay") return { job: claim.job, replayed: true };
    if (claim) csv = claim.csv;
    let job: JobRecord;
    try {
      job = await ingestCsv(deps, {
        tenantId,
        modelVersion,
        alias,
        mapping: {
          idColumn: query.data.id_column,
          ignore: splitList(query.data.ignore),
          map: readColumnMap(url),
        },
        header: query.data.header,
        maxErrors: query.data.max_errors,
        // The size of an upload is not known up front; a file is batch work unless the caller says otherwise.
        priority: query.data.priority ?? "batch",
        expiresAfterSeconds: query.data.expires_after,
        webhookUrl,
        csv,
        limits: deps.limits.csv,
        idempotencyKey: claim ? { claim: claim.claim, requestHash: claim.requestHash } : undefined,
        log: c.get("logger"),
      });
    } catch (error) {
      await claim?.release().catch(() => {});
      throw error;
    }
    return { job, replayed: false };
  } catch (error) {
    if (!(error instanceof ClientGoneError)) throw error;
    // Not a failure of ours: nothing of the upload was kept, and nobody is left to read an answer.
    c.get("logger").warn({ model: query.data.model }, "client went away during a CSV upload; nothing of it was kept");
    throw new ApiError("validation_failed", "the upload stopped before the file ended: the client closed the connection");
  }
}
