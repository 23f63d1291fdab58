import {
  JOB_STATUS_HEADER,
  JobResultsSchema,
  JobStatusSchema,
  RESULTS_COMPLETE_HEADER,
  RESULTS_MEDIA_TYPES,
  TERMINAL_JOB_STATUSES,
} from "@coalesce/contracts";
import { chunkRows, findJob, getModelVersion, readResults, scanResultChunks, type JobRecord } from "@coalesce/db";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { csvHeaderLine, csvLayout, csvLines, ndjsonLines } from "../../results/format.ts";
import { notFound, PARAM_ERRORS } from "../responses.ts";
import { JobIdParamsSchema, pageLimitSchema } from "./params.ts";
import { needs } from "../../auth/scopes.ts";

export const getJobResultsRoute = createRoute({
  method: "get",
  path: "/v1/jobs/{id}/results",
  operationId: "getJobResults",
  security: needs("jobs:read"),
  tags: ["Jobs"],
  summary: "Read a job's results",
  description:
    "Scored rows in input order. Each row has `outputs` keyed by the model's output names, or `error` if that " +
    "row failed; rows of a CSV upload with an id column carry their `id`. int64 values within +-2^53 are JSON " +
    "numbers, larger ones strings.\n\n" +
    "As JSON (the default) one page at a time: pass `next_cursor` back as `cursor` until it is null. With " +
    "`Accept: text/csv` (columns: the id column or `index`, the outputs flattened as `probabilities_0, ..., label`, " +
    "then `error`) or `Accept: application/x-ndjson` (one row per line) the whole job streams in one response " +
    "(or use `?format=csv|ndjson`).\n\n" +
    "While the job runs, only the rows scored so far appear: `job_status` / `complete` in JSON, the " +
    "`Coalesce-Job-Status` and `Coalesce-Results-Complete` headers for downloads.",
  request: {
    params: JobIdParamsSchema,
    query: z.object({
      cursor: z.string().regex(/^\d{1,10}$/, "expected the next_cursor of a previous page").optional(),
      limit: pageLimitSchema(100, 1000),
      format: z.enum(["json", "csv", "ndjson"]).optional().openapi({ description: "Overrides the Accept header." }),
    }),
  },
  responses: {
    200: {
      description: "Results",
      headers: z.object({
        "Coalesce-Job-Status": JobStatusSchema.optional().openapi({ description: "Downloads (CSV, NDJSON): the job's status when the download started" }),
        "Coalesce-Results-Complete": z.enum(["true", "false"]).optional().openapi({ description: "Downloads: whether these are all of the job's results" }),
      }),
      content: {
        "application/json": { schema: JobResultsSchema },
        "text/csv": { schema: z.string() },
        "application/x-ndjson": { schema: z.string() },
      },
    },
    ...PARAM_ERRORS,
    ...notFound("job"),
  },
});

type Format = "json" | "csv" | "ndjson";

function chooseFormat(accept: string | undefined, explicit: Format | undefined): Format {
  if (explicit) return explicit;
  const wanted = (accept ?? "").toLowerCase();
  if (wanted.includes(RESULTS_MEDIA_TYPES.csv)) return "csv";
  if (wanted.includes(RESULTS_MEDIA_TYPES.ndjson)) return "ndjson";
  return "json";
}

export function registerGetJobResults(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(getJobResultsRoute, async (c) => {
    const { id } = c.req.valid("param");
    const { cursor, limit, format } = c.req.valid("query");
    const job = await findJob(deps.db, c.get("tenantId"), id);
    if (!job) throw new ApiError("not_found", `no job '${id}'`);
    const complete = TERMINAL_JOB_STATUSES.includes(job.status);
    const chosen = chooseFormat(c.req.header("accept"), format);
    if (chosen !== "json") {
      return new Response(await streamResults(deps, job, chosen), {
        status: 200,
        headers: {
          "Content-Type": `${RESULTS_MEDIA_TYPES[chosen]}; charset=utf-8`,
          "Content-Disposition": `attachment; filename="${job.id}.${chosen === "csv" ? "csv" : "ndjson"}"`,
          [JOB_STATUS_HEADER]: job.status,
          [RESULTS_COMPLETE_HEADER]: String(complete),
          "X-Request-Id": c.get("requestId"),
        },
      });
    }
    const page = await readResults(deps.db, job.id, { cursor: cursor ? Number(cursor) : 0, limit });
    return c.json(
      JobResultsSchema.parse({
        data: page.rows,
        next_cursor: page.nextCursor === null ? null : String(page.nextCursor),
        job_status: job.status,
        complete,
      }),
      200,
    );
  });
}

/**
 * The whole job as CSV or NDJSON, a few chunks at a time as the client reads (pull-based, so a
 * slow client holds back the database reads and memory stays constant).
 */
async function streamResults(deps: ApiDeps, job: JobRecord, format: "csv" | "ndjson"): Promise<ReadableStream<Uint8Array>> {
  const chunks = scanResultChunks(deps.db, job.id);
  const encoder = new TextEncoder();
  let header: string | null = null;
  let layout: ReturnType<typeof csvLayout> | null = null;
  if (format === "csv") {
    const version = await getModelVersion(deps.db.prisma, job.modelVersionId);
    const outputs = version?.outputs ?? [];
    // Open output dimensions take their width from the first scored row, so peek at it.
    const first = await chunks.next();
    const firstChunk = first.done ? undefined : first.value;
    const sample = firstChunk ? [...chunkRows(firstChunk)].find((row) => "outputs" in row) : undefined;
    layout = csvLayout(outputs, job.idColumn ?? "index", sample);
    header = csvHeaderLine(layout);
    if (firstChunk) header += csvLines(chunkRows(firstChunk), layout, job.idColumn !== null);
  }
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (header !== null) {
        controller.enqueue(encoder.encode(header));
        header = null;
        return;
      }
      const next = await chunks.next();
      if (next.done) {
        controller.close();
        return;
      }
      const rows = chunkRows(next.value);
      controller.enqueue(encoder.encode(layout ? csvLines(rows, layout, job.idColumn !== null) : ndjsonLines(rows)));
    },
    async cancel() {
      await chunks.return(undefined);
    },
  });
}
