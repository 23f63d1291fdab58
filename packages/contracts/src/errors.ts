import { z } from "@hono/zod-openapi";

/** The closed set of error codes the API answers with. Clients may switch on them. */
export const ERROR_CODES = [
  "unauthorized",
  "forbidden",
  "not_found",
  "conflict",
  "validation_failed",
  "invalid_json",
  "unsupported_media_type",
  "payload_too_large",
  "invalid_model",
  "service_unavailable",
  "timeout",
  "rate_limited",
  "internal_error",
] as const;
export const ErrorCodeSchema = z.enum(ERROR_CODES);
export type ErrorCode = z.infer<typeof ErrorCodeSchema>;

/** Exhaustive: adding a code without a status fails the type check. */
export const ERROR_STATUS = {
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  validation_failed: 422,
  invalid_json: 400,
  unsupported_media_type: 415,
  payload_too_large: 413,
  invalid_model: 422,
  service_unavailable: 503,
  timeout: 504,
  rate_limited: 429,
  internal_error: 500,
} as const satisfies Record<ErrorCode, number>;

export const FieldErrorSchema = z
  .object({
    field: z.string().openapi({ example: "inputs[17].features" }),
    message: z.string().openapi({ example: "expected 4 values, got 3" }),
  })
  .openapi("FieldError");
export type FieldError = z.infer<typeof FieldErrorSchema>;

/** RFC 9457 problem details, with Coalesce's stable `code` and the `request_id` to quote to support. */
export const ProblemSchema = z
  .object({
    type: z.string().openapi({ example: "https://coalesce.dev/problems/validation_failed" }),
    title: z.string().openapi({ example: "Validation failed" }),
    status: z.number().int(),
    detail: z.string().openapi({ example: "inputs[17].features: expected 4 values, got 3" }),
    code: ErrorCodeSchema,
    request_id: z.string(),
    errors: z.array(FieldErrorSchema).optional(),
  })
  .openapi("Problem");
export type Problem = z.infer<typeof ProblemSchema>;
