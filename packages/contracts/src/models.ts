import { z } from "@hono/zod-openapi";
import { pgText, requestObject } from "./request.ts";
import { TensorSpecSchema } from "./tensor.ts";

export const MODEL_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export const ModelNameSchema = z
  .string()
  .regex(MODEL_NAME_PATTERN, "a model name is 1-64 characters: lower-case letters, digits, '.', '_' or '-', starting with a letter or digit")
  .openapi({ example: "iris" });

/** Largest batch a version may ask for, in rows. */
export const MAX_BATCH_ROWS_LIMIT = 65_536;

const BatchRowsSchema = z.number().int().min(1).max(MAX_BATCH_ROWS_LIMIT).openapi({
  description: "Most rows in one onnxruntime run of this version (as MAX_BATCH_ROWS). 1 turns coalescing off.",
  example: 64,
});
const BatchDelaySchema = z.number().int().min(0).max(60_000).openapi({
  description: "Longest a row waits for its batch to fill, in ms (as MAX_BATCH_DELAY_MS).",
  example: 5,
});
const BatchBytesSchema = z.number().int().min(1).openapi({
  description: "Largest input tensor bytes per run (as MAX_BATCH_BYTES): fewer rows per batch for big rows.",
  example: 67_108_864,
});

/** A version's batching limits as stored: null where the worker's default (its env) applies. */
export const BatchingSchema = z
  .object({
    max_batch_rows: BatchRowsSchema.nullable(),
    max_batch_delay_ms: BatchDelaySchema.nullable(),
    max_batch_bytes: BatchBytesSchema.nullable(),
  })
  .openapi("Batching", {
    description: "How the workers batch this version's rows. null: the worker's default (MAX_BATCH_ROWS, MAX_BATCH_DELAY_MS, MAX_BATCH_BYTES).",
  });
export type Batching = z.infer<typeof BatchingSchema>;

/** A version's labels: short key/value strings for people and tools (`{"framework": "sklearn"}`). */
export const LabelsSchema = z
  .record(
    z.string().regex(/^[a-z0-9][a-z0-9._/-]{0,62}$/, "a label key is 1-63 characters: lower-case letters, digits, '.', '_', '/' or '-'"),
    pgText(z.string().max(256)),
  )
  .refine((labels) => Object.keys(labels).length <= 64, "at most 64 labels")
  .openapi({ example: { framework: "sklearn", dataset: "iris-2026-11" } });

/** PATCH /v1/models/{name}/versions/{version}: keys left out stay; a batching limit set to null restores the worker's default. */
export const UpdateModelVersionRequestSchema = requestObject({
  batching: requestObject(BatchingSchema.partial().shape).optional(),
  description: pgText(z.string().max(2000)).nullable().optional().openapi({ description: "What this version is; null clears it." }),
  labels: LabelsSchema.optional().openapi({ description: "Replaces the version's labels." }),
})
  .refine((body) => body.batching !== undefined || body.description !== undefined || body.labels !== undefined, {
    message: "give batching, description or labels",
  })
  .openapi("UpdateModelVersionRequest");
export type UpdateModelVersionRequest = z.infer<typeof UpdateModelVersionRequestSchema>;

/** Batching limits given when a version is registered (query parameters, since the body is the file). */
export const CreateModelVersionQuerySchema = z.object({
  max_batch_rows: z.coerce.number().pipe(BatchRowsSchema).optional(),
  max_batch_delay_ms: z.coerce.number().pipe(BatchDelaySchema).optional(),
  max_batch_bytes: z.coerce.number().pipe(BatchBytesSchema).optional(),
});

export const ModelVersionSchema = z
  .object({
    name: z.string().openapi({ example: "iris" }),
    version: z.number().int().openapi({ example: 1 }),
    sha256: z.string().openapi({ example: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }),
    size_bytes: z.number().int(),
    inputs: z.array(TensorSpecSchema),
    outputs: z.array(TensorSpecSchema),
    batching: BatchingSchema,
    description: z.string().nullable(),
    labels: z.record(z.string(), z.string()),
    aliases: z.array(z.string()).openapi({ description: "Aliases that route traffic to this version.", example: ["production"] }),
    shadow_of: z.array(z.string()).openapi({ description: "Aliases whose rows this version also scores as their shadow." }),
    created_at: z.iso.datetime(),
  })
  .openapi("ModelVersion");
export type ModelVersion = z.infer<typeof ModelVersionSchema>;

export const ModelSchema = z
  .object({
    name: z.string().openapi({ example: "iris" }),
    latest_version: z.number().int(),
    created_at: z.iso.datetime(),
    versions: z.array(ModelVersionSchema),
  })
  .openapi("Model");
export type Model = z.infer<typeof ModelSchema>;

export const ModelListSchema = z.object({ data: z.array(ModelSchema) }).openapi("ModelList");
export type ModelList = z.infer<typeof ModelListSchema>;
