import { z } from "@hono/zod-openapi";
import { ResultRowSchema } from "./jobs.ts";
import { requestObject } from "./request.ts";
import { tensorRowList, type RowError, type TensorRow } from "./tensor.ts";

/**
 * Most rows one predict request may carry (PREDICT_MAX_ROWS).
 * @defaultValue 1024
 */
export const DEFAULT_PREDICT_MAX_ROWS = 1024;

/** POST /v1/models/{name}/predict: rows in exactly the form a JSON job takes them. */
export const PredictRequestSchema = requestObject({
  inputs: tensorRowList("send at least one row").openapi({
      description: "The rows to score, each keyed by the model's input names (as a JSON job's `inputs`); at most PREDICT_MAX_ROWS.",
      example: [{ features: [5.1, 3.5, 1.4, 0.2] }],
    }),
}).openapi("PredictRequest");
export type PredictRequest = z.infer<typeof PredictRequestSchema>;

export const PredictResponseSchema = z
  .object({
    model: z
      .object({
        name: z.string(),
        version: z.number().int(),
        alias: z.string().nullable().openapi({ description: "The alias that chose the version, or null for a pinned version." }),
      })
      .openapi({ description: "The model version that answered." }),
    outputs: z.array(ResultRowSchema).openapi({
      description: "One entry per input row, in order, as a job's results: `outputs`, or that row's own `error`.",
      example: [{ index: 0, outputs: { label: 0, probabilities: [0.98, 0.015, 0.005] } }],
    }),
  })
  .openapi("PredictResponse");
export type PredictResponse = z.infer<typeof PredictResponseSchema>;

/** A predict request's routing key: with an alias that splits traffic, the same key reaches the same version. */
export const ROUTING_KEY_HEADER = "Coalesce-Routing-Key";

/** Says whether a predict answer came from the result cache: `hit` when every row did, else `miss`. */
export const PREDICT_CACHE_HEADER = "Coalesce-Cache";

/** One row of a predict answer, as the worker sends it back: its outputs, or its own error. */
export type PredictRowResult = { outputs: TensorRow } | { error: RowError };
