import { ERROR_STATUS, transientDependency, type Dependency, type ErrorCode, type FieldError, type Problem } from "@coalesce/contracts";
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { z } from "zod";

const TITLES: Record<ErrorCode, string> = {
  unauthorized: "Unauthorized",
  forbidden: "Forbidden",
  not_found: "Not found",
  conflict: "Conflict",
  validation_failed: "Validation failed",
  invalid_json: "Malformed JSON",
  unsupported_media_type: "Unsupported media type",
  payload_too_large: "Payload too large",
  invalid_model: "Invalid model",
  service_unavailable: "Service unavailable",
  timeout: "Timed out",
  rate_limited: "Too many requests",
  internal_error: "Internal error",
};

/** The API's one error type: a code from the closed set, a message for people, and field errors. */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly errors: FieldError[] | undefined;
  constructor(code: ErrorCode, message: string, errors?: FieldError[]) {
    super(message);
    this.code = code;
    this.errors = errors;
  }
  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

/** Validation failure naming each place: `inputs[17].features: expected 4 values, got 3`. */
export function validationError(errors: FieldError[], total = errors.length): ApiError {
  const shown = errors.slice(0, 3).map((e) => (e.field ? `${e.field}: ${e.message}` : e.message));
  const more = total > shown.length ? ` (and ${total - shown.length} more)` : "";
  return new ApiError("validation_failed", `${shown.join("; ")}${more}`, errors);
}

/** `["inputs", 17, "features"]` -> `inputs[17].features` */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

export function fromZodError(error: z.ZodError): ApiError {
  // An unknown key is named as the field itself (`webhook_ur1`), one entry per key, not as the object holding it.
  const issues = error.issues.flatMap((issue): { path: PropertyKey[]; message: string }[] =>
    issue.code === "unrecognized_keys" ? issue.keys.map((key) => ({ path: [...issue.path, key], message: issue.message })) : [issue],
  );
  const errors = issues.slice(0, 100).map((issue) => ({ field: formatPath(issue.path) || "body", message: issue.message }));
  return validationError(errors, issues.length);
}

/** Seconds a client is asked to wait (Retry-After) before retrying a 503. */
export const RETRY_AFTER_SECONDS = 5;

const UNREACHABLE: Record<Dependency, string> = {
  postgres: "the database is unreachable",
  redis: "the queue (Redis) is unreachable",
  network: "a service the API depends on is unreachable",
};

/** A request that met Postgres or Redis being away: 503, so the client retries rather than gives up. */
export function unavailableError(dependency: Dependency): ApiError {
  return new ApiError("service_unavailable", `${UNREACHABLE[dependency]} right now; retry in ${RETRY_AFTER_SECONDS} s`);
}

function toApiError(error: unknown): ApiError | null {
  if (error instanceof ApiError) return error;
  // Classified here, where every route's errors arrive, so no route needs to know about outages.
  const dependency = transientDependency(error);
  if (dependency) return unavailableError(dependency);
  if (error instanceof HTTPException) {
    if (error.status === 400) return new ApiError("invalid_json", "the request body is not valid JSON");
    if (error.status === 415) {
      return new ApiError("unsupported_media_type", "this endpoint takes Content-Type: application/json");
    }
    if (error.status === 413) return new ApiError("payload_too_large", error.message);
    if (error.status === 401) return new ApiError("unauthorized", error.message);
  }
  return null;
}

export function problemResponse(c: Context, error: ApiError): Response {
  const body: Problem = {
    type: `https://coalesce.dev/problems/${error.code}`,
    title: TITLES[error.code],
    status: error.status,
    detail: error.message,
    code: error.code,
    request_id: c.get("requestId") ?? "unknown",
    ...(error.errors ? { errors: error.errors } : {}),
  };
  const headers: Record<string, string> = { "Content-Type": "application/problem+json" };
  // RFC 9110: a 401 names the scheme the client should use.
  if (error.code === "unauthorized") headers["WWW-Authenticate"] = 'Bearer realm="coalesce"';
  // RFC 9110: when to try again, in seconds.
  if (error.code === "service_unavailable") headers["Retry-After"] = String(RETRY_AFTER_SECONDS);
  return c.body(JSON.stringify(body), error.status as 400, headers);
}

/**
 * Every error leaves as problem+json; an unexpected one is logged with its stack and answered 500
 * without it. An outage is not logged per request beyond the request's own line: the connection
 * says once that Postgres or Redis went away (see DependencyStatus).
 */
export function handleError(error: unknown, c: Context): Response {
  const known = toApiError(error);
  if (known) return problemResponse(c, known);
  c.get("logger")?.error({ err: error }, "unhandled error");
  return problemResponse(c, new ApiError("internal_error", "something went wrong on our side; quote the request_id if it persists"));
}
