import { z } from "@hono/zod-openapi";

/** Element types a model input may have. Outputs may have any ONNX type; these are the ones rows can carry. */
export const INPUT_TENSOR_TYPES = ["float32", "float64", "int32", "int64", "bool"] as const;
export const InputTensorTypeSchema = z.enum(INPUT_TENSOR_TYPES);
export type InputTensorType = z.infer<typeof InputTensorTypeSchema>;

/**
 * One input or output of a model, as onnxruntime reports it. The first dimension is the batch
 * dimension; a string dimension is symbolic (any size), a number is fixed.
 */
export const TensorSpecSchema = z
  .object({
    name: z.string(),
    type: z.string().openapi({ example: "float32" }),
    shape: z.array(z.union([z.number().int(), z.string()])).openapi({ example: ["batch", 4] }),
  })
  .openapi("TensorSpec");
export type TensorSpec = z.infer<typeof TensorSpecSchema>;

export const ModelSignatureSchema = z.object({
  inputs: z.array(TensorSpecSchema),
  outputs: z.array(TensorSpecSchema),
});
export type ModelSignature = z.infer<typeof ModelSignatureSchema>;

/** A JSON value for one row of one tensor: a scalar or nested arrays of scalars. */
export type TensorValue = number | string | boolean | TensorValue[];

/** One row's values keyed by input (or output) name. */
export type TensorRow = Record<string, TensorValue>;

/** Why a single row failed; stored with the row and returned with its results. */
export const RowErrorSchema = z
  .object({
    code: z.string().openapi({ example: "invalid_row" }),
    message: z.string().openapi({ example: "features: expected 4 values, got 3" }),
  })
  .openapi("RowError");
export type RowError = z.infer<typeof RowErrorSchema>;
