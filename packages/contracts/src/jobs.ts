import { z } from "@hono/zod-openapi";
import { RowErrorSchema } from "./tensor.ts";

export const JOB_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"] as const;
export const JobStatusSchema = z.enum(JOB_STATUSES);
export type JobStatus = z.infer<typeof JobStatusSchema>;
export const TERMINAL_JOB_STATUSES: readonly JobStatus[] = ["succeeded", "failed", "cancelled"];

/** `name` for the latest version, or `name@3` for version 3. */
export const ModelRefSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,63}(@[1-9][0-9]{0,8})?$/, "expected a model name, optionally with @VERSION (e.g. iris or iris@2)")
  .openapi({ example: "iris" });

export const CreateJobRequestSchema = z
  .object({
    model: ModelRefSchema,
    inputs: z
      .array(z.record(z.string(), z.unknown()))
      .min(1, "a job needs at least one row")
      .openapi({
        description:
          "One element per row, keyed by the model's input names; each value is that row's tensor without the batch dimension.",
        example: [{ features: [5.1, 3.5, 1.4, 0.2] }, { features: [6.7, 3.1, 4.7, 1.5] }],
      }),
  })
  .openapi("CreateJobRequest");
export type CreateJobRequest = z.infer<typeof CreateJobRequestSchema>;

export const JobSchema = z
  .object({
    id: z.string().openapi({ example: "job_01jdq3x8m7k2v9c4n5p6r7s8t9" }),
    status: JobStatusSchema,
    model: z.object({ name: z.string(), version: z.number().int() }),
    counts: z.object({
      total: z.number().int(),
      succeeded: z.number().int(),
      failed: z.number().int(),
    }),
    created_at: z.iso.datetime(),
    started_at: z.iso.datetime().nullable(),
    completed_at: z.iso.datetime().nullable(),
    error: RowErrorSchema.optional(),
  })
  .openapi("Job");
export type Job = z.infer<typeof JobSchema>;

export const JobListSchema = z
  .object({ data: z.array(JobSchema), next_cursor: z.string().nullable() })
  .openapi("JobList");
export type JobList = z.infer<typeof JobListSchema>;

const OutputValueSchema: z.ZodType<unknown> = z.unknown().openapi({ example: [0.98, 0.015, 0.005] });

export const ResultRowSchema = z
  .object({
    index: z.number().int().openapi({ description: "The row's position in the job's inputs, from 0." }),
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
  })
  .openapi("JobResults");
export type JobResults = z.infer<typeof JobResultsSchema>;
