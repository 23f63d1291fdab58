import { z } from "@hono/zod-openapi";
import { pgText, requestObject } from "./request.ts";
import { RowErrorSchema, tensorRowList } from "./tensor.ts";

export const JOB_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled", "expired"] as const;
export const JobStatusSchema = z.enum(JOB_STATUSES);
export type JobStatus = z.infer<typeof JobStatusSchema>;
export const TERMINAL_JOB_STATUSES: readonly JobStatus[] = ["succeeded", "failed", "cancelled", "expired"];

/** Longest `expires_after` a job may ask for: 30 days. */
export const MAX_EXPIRES_AFTER_SECONDS = 30 * 24 * 3600;
const ExpiresAfterSchema = z.coerce
  .number()
  .int()
  .min(1)
  .max(MAX_EXPIRES_AFTER_SECONDS)
  .openapi({
    description: "Seconds from submission: a job not finished by then ends `expired`, keeping the rows scored so far.",
    example: 3600,
  });

const WebhookUrlSchema = pgText(z.string().max(2048))
  .openapi({
    description:
      "Receives this job's final event (job.succeeded, job.failed, job.cancelled or job.expired) as a Standard Webhooks " +
      "delivery signed with the tenant's default secret (GET /v1/webhooks/default-secret).",
    example: "https://example.com/hooks/coalesce",
  });

/**
 * Scheduling lanes: interactive chunks always go before batch chunks, so a single-row request is not
 * stuck behind a million-row upload; within a lane, concurrent jobs take turns chunk by chunk.
 */
export const JOB_PRIORITIES = ["interactive", "batch"] as const;
export const JobPrioritySchema = z.enum(JOB_PRIORITIES).openapi({
  description: "`interactive` goes ahead of `batch`. Default: interactive for JSON jobs of up to 1,000 rows, batch otherwise (CSV uploads too).",
});
export type JobPriority = z.infer<typeof JobPrioritySchema>;

/**
 * `name` (its `production` alias when it has one, else its latest version), `name@3` for version 3,
 * or `name@canary` for an alias.
 */
export const ModelRefSchema = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9._-]{0,63}(@([1-9][0-9]{0,8}|[a-z][a-z0-9-]{0,62}))?$/,
    "expected a model name, optionally with @VERSION or @ALIAS (e.g. iris, iris@2 or iris@canary)",
  )
  .openapi({ example: "iris" });

/** Makes an alias's split choose the same version for the same key (one user sticks to one version). */
export const RoutingKeySchema = z.string().min(1).max(256).openapi({
  description: "With an alias that splits traffic: the same key is always routed to the same version (while the weights stay).",
  example: "user-8271",
});

export const CreateJobRequestSchema = requestObject({
  model: ModelRefSchema,
  inputs: tensorRowList("a job needs at least one row").openapi({
      description:
        "One element per row, keyed by the model's input names; each value is that row's tensor without the batch dimension.",
      example: [{ features: [5.1, 3.5, 1.4, 0.2] }, { features: [6.7, 3.1, 4.7, 1.5] }],
    }),
  priority: JobPrioritySchema.optional(),
  expires_after: ExpiresAfterSchema.optional(),
  webhook_url: WebhookUrlSchema.optional(),
  routing_key: RoutingKeySchema.optional(),
}).openapi("CreateJobRequest");
export type CreateJobRequest = z.infer<typeof CreateJobRequestSchema>;

export const JobSchema = z
  .object({
    id: z.string().openapi({ example: "job_01jdq3x8m7k2v9c4n5p6r7s8t9" }),
    status: JobStatusSchema,
    priority: JobPrioritySchema,
    model: z.object({
      name: z.string(),
      version: z.number().int(),
      alias: z.string().nullable().openapi({ description: "The alias the job came through (which chose the version), or null for a pinned version." }),
    }),
    counts: z
      .object({
        total: z.number().int().nullable().openapi({
          description: "Rows in the job; null while a CSV upload is still streaming in (the total is known when the file ends).",
          example: 100000,
        }),
        received: z.number().int().openapi({
          description: "Rows stored so far: while a CSV upload streams, the rows read from the file up to now; otherwise the total.",
          example: 100000,
        }),
        succeeded: z.number().int(),
        failed: z.number().int(),
      })
      .openapi({ description: "Rows of the job: scored (succeeded), failed, and in all." }),
    progress: z.number().min(0).max(1).openapi({
      description: "Fraction of rows done (scored or failed); while a CSV upload streams, of the rows received so far (and below 1).",
      example: 0.42,
    }),
    eta_seconds: z
      .number()
      .nullable()
      .openapi({
        description: "Estimated seconds to completion at the rate seen so far; null until there is a rate, and while a CSV upload streams (the total is not known yet).",
        example: 12.5,
      }),
    id_column: z
      .string()
      .nullable()
      .openapi({ description: "For CSV uploads: the column whose values identify each row in the results." }),
    execution: z
      .object({
        provider: z.string().nullable().openapi({ description: "The onnxruntime execution provider that scored the rows.", example: "cpu" }),
        batch_rows: z
          .object({ min: z.number().int(), mean: z.number(), max: z.number().int() })
          .nullable()
          .openapi({
            description:
              "The sizes of the onnxruntime runs the job's rows were part of (rows of other jobs included: that is the coalescing); mean over rows.",
            example: { min: 12, mean: 241.5, max: 256 },
          }),
      })
      .openapi({ description: "How the job ran: on which hardware, and in what batches." }),
    created_at: z.iso.datetime(),
    started_at: z.iso.datetime().nullable(),
    completed_at: z.iso.datetime().nullable(),
    expires_at: z.iso.datetime().nullable().openapi({ description: "When the job expires if it has not finished (expires_after)." }),
    webhook_url: z.string().nullable().openapi({ description: "Where the job's final event is sent, if the job named one." }),
    error: RowErrorSchema.optional(),
  })
  .openapi("Job");
export type Job = z.infer<typeof JobSchema>;

export const JobListSchema = z
  .object({ data: z.array(JobSchema), next_cursor: z.string().nullable() })
  .openapi("JobList");
export type JobList = z.infer<typeof JobListSchema>;

// Typed in the document, not re-checked: results are what the model produced, and a NaN is stored as null.
const OutputValueSchema: z.ZodType<unknown> = z.unknown().openapi({
  anyOf: [{ $ref: "#/components/schemas/TensorValue" }, { type: "null" }],
  example: [0.98, 0.015, 0.005],
});

export const ResultRowSchema = z
  .object({
    index: z.number().int().openapi({ description: "The row's position in the job's inputs, from 0." }),
    id: z.string().optional().openapi({ description: "The row's value in the job's id_column (CSV uploads that name one)." }),
    outputs: z
      .record(z.string(), OutputValueSchema)
      .optional()
      .openapi({ example: { probabilities: [0.98, 0.015, 0.005], label: 0 } }),
    error: RowErrorSchema.optional(),
  })
  .openapi("ResultRow");
export type ResultRow = z.infer<typeof ResultRowSchema>;

export const JobResultsSchema = z
  .object({
    data: z.array(ResultRowSchema),
    next_cursor: z.string().nullable(),
    job_status: JobStatusSchema.openapi({
      description: "While the job is not finished, only the rows scored so far are listed.",
    }),
    complete: z.boolean().openapi({ description: "True when the job is finished and these are all of its results." }),
  })
  .openapi("JobResults");
export type JobResults = z.infer<typeof JobResultsSchema>;

/** Media types GET /v1/jobs/{id}/results answers in, chosen by the Accept header. */
export const RESULTS_MEDIA_TYPES = { json: "application/json", csv: "text/csv", ndjson: "application/x-ndjson" } as const;

/** Response headers on results downloads: whether the job is finished, so a partial file is never mistaken for a whole one. */
export const JOB_STATUS_HEADER = "Coalesce-Job-Status";
export const RESULTS_COMPLETE_HEADER = "Coalesce-Results-Complete";

/**
 * Query parameters of a CSV upload (POST /v1/jobs with a text/csv or multipart body). Column
 * mappings come as repeatable `map.INPUT=colA,colB` parameters beside these.
 */
export const CsvUploadQuerySchema = z
  .object({
    model: ModelRefSchema,
    header: z
      .enum(["true", "false"])
      .default("true")
      .transform((value) => value === "true")
      .openapi({
        type: "boolean",
        description:
          "Whether the file's first line names its columns (default true). With `header=false` every line is a row and columns " +
          "are named by their position from 0: the columns feed the model's inputs in the model's input order, and `id_column`, " +
          "`ignore` and `map.INPUT` name columns by position (`id_column=0&ignore=5`).",
        example: "true",
      }),
    // Stored with the job (Postgres text), so a NUL is refused here rather than by the database.
    id_column: pgText(z.string().min(1).max(256)).optional().openapi({
      description: "A column carried through to the results as each row's `id`, so predictions can be joined back (with header=false: its position from 0).",
      example: "row_id",
    }),
    ignore: z.string().max(10_000).optional().openapi({
      description: "Comma-separated columns that are not model inputs (e.g. a label column).",
      example: "target",
    }),
    priority: JobPrioritySchema.optional(),
    expires_after: ExpiresAfterSchema.optional(),
    webhook_url: WebhookUrlSchema.optional(),
    routing_key: RoutingKeySchema.optional(),
    max_errors: z.coerce.number().int().min(0).max(1_000_000).default(1000).openapi({
      description: "Rows that fail to parse become failed rows; past this many the upload is rejected (422) and nothing is kept.",
    }),
  })
  .openapi("CsvUploadQuery");
export type CsvUploadQuery = z.infer<typeof CsvUploadQuerySchema>;
