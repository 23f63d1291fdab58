import { ERROR_CODES, ProblemSchema, type ErrorCode, type FieldError, type Job } from "@coalesce/contracts";

/** Every error this client throws on purpose extends this one. */
export class CoalesceError extends Error {
  override name = "CoalesceError";
}

/** The API answered with an error status. The fields come from its `application/problem+json` body. */
export class CoalesceApiError extends CoalesceError {
  override name = "CoalesceApiError";
  readonly status: number;
  /** The API's stable code; null when the body was not a problem document (a proxy's error page, say). */
  readonly code: ErrorCode | null;
  /** What went wrong, for people: `inputs[1].features: expected 4 values, got 3`. */
  readonly detail: string;
  /** Quote it when reporting a problem; null when the answer did not carry one. */
  readonly requestId: string | null;
  /** Each place a 422 found wrong; empty for other errors. */
  readonly errors: FieldError[];
  /**
   * How long the server asks to wait before trying again (its `Retry-After`, in seconds), as a 503
   * `service_unavailable` or a 429 `rate_limited` carries it; null when the answer did not say.
   * This client never waits out a 503 by itself (the caller knows how long it can afford to); a 429
   * it waits out within ClientOptions.rateLimitRetry, and throws it here when that is spent.
   */
  readonly retryAfterSeconds: number | null;

  constructor(fields: {
    status: number;
    code: ErrorCode | null;
    detail: string;
    requestId: string | null;
    errors: FieldError[];
    retryAfterSeconds?: number | null;
  }) {
    super(`${fields.status}${fields.code ? ` ${fields.code}` : ""}: ${fields.detail}`);
    this.status = fields.status;
    this.code = fields.code;
    this.detail = fields.detail;
    this.requestId = fields.requestId;
    this.errors = fields.errors;
    this.retryAfterSeconds = fields.retryAfterSeconds ?? null;
  }
}

/** No answer came back: nothing listens at the URL, the name does not resolve, the connection broke. */
export class CoalesceConnectionError extends CoalesceError {
  override name = "CoalesceConnectionError";
  /** The base URL the client was given. */
  readonly url: string;
  /** The system error code when there is one (`ECONNREFUSED`, `ENOTFOUND`, ...). */
  readonly code: string | null;

  constructor(url: string, cause: unknown) {
    const reason = describeCause(cause);
    super(`cannot reach Coalesce at ${url}: ${reason.message}`, { cause });
    this.url = url;
    this.code = reason.code;
  }
}

/** The server answered, but not as the contract says: another API version, or something else on that port. */
export class CoalesceResponseError extends CoalesceError {
  override name = "CoalesceResponseError";
}

/** `waitForJob` gave up before the job finished; `job` is the last state seen. */
export class CoalesceTimeoutError extends CoalesceError {
  override name = "CoalesceTimeoutError";
  readonly job: Job;

  constructor(job: Job, timeoutMs: number) {
    super(`job ${job.id} is still ${job.status} after ${timeoutMs} ms`);
    this.job = job;
  }
}

/** Builds the error for a non-2xx answer from its body, which is read here. */
export async function readApiError(response: Response): Promise<CoalesceApiError> {
  const text = await response.text().catch(() => "");
  const headerRequestId = response.headers.get("x-request-id");
  const retryAfterSeconds = parseRetryAfter(response.headers.get("retry-after"));
  let body: unknown = undefined;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: an error page from something in between
  }
  const problem = ProblemSchema.safeParse(body);
  if (problem.success) {
    return new CoalesceApiError({
      status: response.status,
      code: problem.data.code,
      detail: problem.data.detail,
      requestId: problem.data.request_id,
      errors: problem.data.errors ?? [],
      retryAfterSeconds,
    });
  }
  // Read what is there, so a newer server's code or a partial problem document still says something useful.
  const loose = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
  const code = typeof loose.code === "string" && (ERROR_CODES as readonly string[]).includes(loose.code) ? (loose.code as ErrorCode) : null;
  const detail =
    typeof loose.detail === "string"
      ? loose.detail
      : text.trim().slice(0, 200) || response.statusText || `HTTP ${response.status}`;
  return new CoalesceApiError({
    status: response.status,
    code,
    detail,
    requestId: typeof loose.request_id === "string" ? loose.request_id : headerRequestId,
    errors: [],
    retryAfterSeconds,
  });
}

/** RFC 9110 `Retry-After`: delta-seconds (what Coalesce sends) or an HTTP date (what a proxy may send). */
function parseRetryAfter(value: string | null): number | null {
  if (value === null) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** fetch rejects with `TypeError: fetch failed`; the reason is in its cause, sometimes one level further down. */
function describeCause(error: unknown): { message: string; code: string | null } {
  let current: unknown = error;
  let innermost: Error | null = null;
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    innermost = current;
    const code = (current as NodeJS.ErrnoException).code;
    if (typeof code === "string") return { message: current.message || code, code };
    const first = current instanceof AggregateError ? (current.errors[0] as unknown) : undefined;
    current = current.cause ?? first;
  }
  return { message: innermost?.message || String(error), code: null };
}
