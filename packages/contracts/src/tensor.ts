import { z } from "@hono/zod-openapi";

/**
 * Element types a model input may have. Outputs may have any ONNX type; these are the ones rows can
 * carry. In JSON: numbers for the float and integer types (float16 rounded to the nearest half, int64
 * beyond 2^53 as a decimal string), true/false for bool, strings for string.
 */
export const INPUT_TENSOR_TYPES = ["float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16", "bool", "string"] as const;
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

/**
 * Longest element of a string input, in UTF-8 bytes: text features (a review, a URL, a category)
 * fit with room to spare, and a row of many elements cannot make a batch tensor of gigabytes.
 */
export const MAX_STRING_ELEMENT_BYTES = 64 * 1024;

/** Deeper than any tensor a model takes (ONNX Runtime's own kernels stop well before), so a row deeper is not one. */
export const MAX_TENSOR_NESTING = 32;

const isScalar = (value: unknown) => typeof value === "number" || typeof value === "boolean" || typeof value === "string";
const describeKind = (value: unknown) => (value === null ? "null" : typeof value);
const NOT_A_TENSOR_VALUE = "expected a number, boolean, string or an array of them, got";

/**
 * Walks a value without recursion (a stack of arrays and the index reached in each), so a hostile body
 * of 10,000 nested arrays costs a loop, not the call stack, and a well-formed row allocates nothing per
 * element. Returns what is wrong at which path below the value, or null for a well-formed tensor value.
 */
function tensorValueIssue(value: unknown): { path: number[]; message: string } | null {
  if (isScalar(value)) return null;
  if (!Array.isArray(value)) return { path: [], message: `${NOT_A_TENSOR_VALUE} ${describeKind(value)}` };
  const stack: { array: unknown[]; index: number }[] = [{ array: value, index: 0 }];
  const pathHere = () => stack.map((frame) => frame.index - 1);
  for (let top = stack[0]; top; top = stack[stack.length - 1]) {
    if (top.index >= top.array.length) {
      stack.pop();
      continue;
    }
    const item = top.array[top.index++];
    if (isScalar(item)) continue;
    if (!Array.isArray(item)) return { path: pathHere(), message: `${NOT_A_TENSOR_VALUE} ${describeKind(item)}` };
    if (stack.length >= MAX_TENSOR_NESTING) return { path: pathHere(), message: `arrays nested deeper than ${MAX_TENSOR_NESTING} levels` };
    stack.push({ array: item, index: 0 });
  }
  return null;
}

/**
 * One row's value of one tensor, typed in the document as the recursive union it is. Checked by a
 * loop rather than a recursive zod schema, which would overflow the stack on absurd nesting; its
 * shape against the model is then checked by validateRow.
 */
export const TensorValueSchema = z
  .unknown()
  .superRefine((value, ctx) => {
    const issue = tensorValueIssue(value);
    if (issue) ctx.addIssue({ code: "custom", path: issue.path, message: issue.message });
  })
  .openapi("TensorValue", {
    description:
      "A tensor row without its batch dimension: a number, boolean or string, or nested arrays of them. Numbers feed the float and integer inputs " +
      "(range-checked for the input's type; float16 is rounded to the nearest half), strings feed string inputs (at most 64 KiB of UTF-8 each) " +
      "and int64 values beyond 2^53 (as decimal strings).",
    anyOf: [
      { type: "number" },
      { type: "boolean" },
      { type: "string" },
      { type: "array", items: { $ref: "#/components/schemas/TensorValue" } },
    ],
    example: [5.1, 3.5, 1.4, 0.2],
  }) as unknown as z.ZodType<TensorValue>;

/** One row's values keyed by input name, as a JSON job submits it. */
export const TensorRowSchema = z.record(z.string(), TensorValueSchema).openapi("TensorRow", {
  description: "One row: each input's value keyed by the input's name.",
  example: { features: [5.1, 3.5, 1.4, 0.2] },
});

/** One row's values keyed by input (or output) name. */
export type TensorRow = Record<string, TensorValue>;

/** Most rows a list of rows reports as malformed: a body of a million wrong rows is answered with these. */
export const MAX_ROW_LIST_ISSUES = 100;

/** What is wrong with a row that is not an object of tensor values, at which path below it; null when it is one. */
function tensorRowIssue(row: unknown): { path: (string | number)[]; message: string } | null {
  if (typeof row !== "object" || row === null || Array.isArray(row)) return { path: [], message: `expected an object keyed by input name, got ${Array.isArray(row) ? "array" : describeKind(row)}` };
  for (const [name, value] of Object.entries(row)) {
    const issue = tensorValueIssue(value);
    if (issue) return { path: [name, ...issue.path], message: issue.message };
  }
  return null;
}

/**
 * A request's rows (a JSON job's or a predict request's `inputs`): at least one, each an object of
 * tensor values (TensorRow). Checked by one loop that stops after MAX_ROW_LIST_ISSUES bad rows rather
 * than by an array of TensorRowSchema, whose issue per bad row overflowed zod's stack when merging
 * a million of them (a 500 instead of a 422). Each row's fit to the model is checked by validateRow.
 */
export function tensorRowList(emptyMessage: string): z.ZodType<TensorRow[]> {
  return z
    .array(z.unknown())
    .min(1, emptyMessage)
    .superRefine((rows, ctx) => {
      let reported = 0;
      for (let index = 0; index < rows.length && reported < MAX_ROW_LIST_ISSUES; index++) {
        const issue = tensorRowIssue(rows[index]);
        if (!issue) continue;
        ctx.addIssue({ code: "custom", path: [index, ...issue.path], message: issue.message });
        reported++;
      }
    })
    .openapi({ type: "array", items: { $ref: "#/components/schemas/TensorRow" } }) as unknown as z.ZodType<TensorRow[]>;
}

/** Why a single row failed; stored with the row and returned with its results. */
export const RowErrorSchema = z
  .object({
    code: z.string().openapi({ example: "invalid_row" }),
    message: z.string().openapi({ example: "features: expected 4 values, got 3" }),
  })
  .openapi("RowError");
export type RowError = z.infer<typeof RowErrorSchema>;
