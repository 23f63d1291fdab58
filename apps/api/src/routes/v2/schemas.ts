// The Open Inference Protocol's REST bodies (specification/protocol/inference_rest.md of
// kserve/open-inference-protocol), field for field. They live beside the routes rather than in
// @coalesce/contracts because only these routes speak the protocol; its clients are KServe's and
// Triton's own, not our SDK.
import { requestObject } from "@coalesce/contracts";
import { z } from "@hono/zod-openapi";

/** `{"error": "..."}`: every /v2 error, in place of problem+json. */
export const V2ErrorSchema = z
  .object({ error: z.string().openapi({ example: "input 'features' has datatype FP64, but the model takes FP32" }) })
  .openapi("V2Error");

/** The protocol's `$parameters`: names to strings, numbers or booleans. None is defined by the protocol, and this server reads none. */
export const V2ParametersSchema = z
  .record(z.string(), z.union([z.string(), z.number(), z.boolean()]))
  .openapi("V2Parameters", { description: "Key/value pairs; accepted and ignored (the binary tensor extension's are refused)." });

/** What `data` holds, as a type; a request's elements are only checked by rowsFromV2Inputs. */
export type V2TensorData = (number | string | boolean | null | V2TensorData)[];

/**
 * Tensor data: a JSON array, flat (row-major) or nested as the shape. Checked only for being an
 * array here: its elements are checked against the model input by rowsFromV2Inputs, in one walk
 * with a bounded depth, rather than element by element through zod.
 */
export const V2TensorDataSchema = z.custom<V2TensorData>((value) => Array.isArray(value), { message: "expected an array" }).openapi("V2TensorData", {
  description:
    "The tensor's elements in row-major order: flat, or nested exactly as `shape`. Numbers (INT64/UINT64 beyond ±2^53 as exact integers; in a request also as decimal strings), booleans for BOOL, strings for BYTES; a NaN output is null.",
  type: "array",
  items: { anyOf: [{ type: "number" }, { type: "boolean" }, { type: "string" }, { type: "null" }, { $ref: "#/components/schemas/V2TensorData" }] },
  example: [5.1, 3.5, 1.4, 0.2],
});

const ShapeSchema = z.array(z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)).openapi({ example: [1, 4] });

export const V2InferRequestInputSchema = requestObject({
  name: z.string().openapi({ example: "features" }),
  shape: ShapeSchema,
  datatype: z.string().openapi({ example: "FP32" }),
  parameters: V2ParametersSchema.optional(),
  data: V2TensorDataSchema,
}).openapi("V2InferRequestInput");

export const V2InferRequestOutputSchema = requestObject({
  name: z.string().openapi({ example: "probabilities" }),
  parameters: V2ParametersSchema.optional(),
}).openapi("V2InferRequestOutput");

export const V2InferRequestSchema = requestObject({
  id: z.string().optional().openapi({ description: "Echoed in the answer", example: "42" }),
  parameters: V2ParametersSchema.optional(),
  inputs: z.array(V2InferRequestInputSchema).openapi({
    description: "One tensor per model input; the first dimension of each is the batch, and all must agree on it.",
    example: [{ name: "features", shape: [1, 4], datatype: "FP32", data: [5.1, 3.5, 1.4, 0.2] }],
  }),
  outputs: z
    .array(V2InferRequestOutputSchema)
    .optional()
    .openapi({ description: "The outputs to return, in this order; all of the model's when left out." }),
}).openapi("V2InferRequest");
export type V2InferRequest = z.infer<typeof V2InferRequestSchema>;

export const V2InferResponseOutputSchema = z
  .object({
    name: z.string(),
    shape: z.array(z.number().int()),
    datatype: z.string(),
    data: V2TensorDataSchema,
  })
  .openapi("V2InferResponseOutput");

export const V2InferResponseSchema = z
  .object({
    model_name: z.string(),
    model_version: z.string(),
    id: z.string().optional().openapi({ description: "The request's `id`, when it had one" }),
    outputs: z.array(V2InferResponseOutputSchema),
  })
  .openapi("V2InferResponse");

export const V2TensorMetadataSchema = z
  .object({
    name: z.string(),
    datatype: z.string().openapi({ example: "FP32" }),
    shape: z.array(z.number().int()).openapi({ description: "-1 for the batch dimension and for every dimension of any size", example: [-1, 4] }),
  })
  .openapi("V2TensorMetadata");

export const V2ModelMetadataSchema = z
  .object({
    name: z.string(),
    versions: z.array(z.string()).openapi({ description: "Every version of the model, oldest first", example: ["1", "2"] }),
    platform: z.literal("onnxruntime_onnx"),
    inputs: z.array(V2TensorMetadataSchema),
    outputs: z.array(V2TensorMetadataSchema),
  })
  .openapi("V2ModelMetadata");

export const V2ModelReadySchema = z.object({ name: z.string(), ready: z.boolean() }).openapi("V2ModelReady");

export const V2ServerMetadataSchema = z
  .object({ name: z.literal("coalesce"), version: z.string(), extensions: z.array(z.string()) })
  .openapi("V2ServerMetadata");
