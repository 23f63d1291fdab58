import { z } from "@hono/zod-openapi";
import { TensorSpecSchema } from "./tensor.ts";

export const MODEL_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export const ModelNameSchema = z
  .string()
  .regex(MODEL_NAME_PATTERN, "a model name is 1-64 characters: lower-case letters, digits, '.', '_' or '-', starting with a letter or digit")
  .openapi({ example: "iris" });

export const ModelVersionSchema = z
  .object({
    name: z.string().openapi({ example: "iris" }),
    version: z.number().int().openapi({ example: 1 }),
    sha256: z.string().openapi({ example: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }),
    size_bytes: z.number().int(),
    inputs: z.array(TensorSpecSchema),
    outputs: z.array(TensorSpecSchema),
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
