import { ProblemSchema } from "@coalesce/contracts";
import { z } from "@hono/zod-openapi";

const PROBLEM_CONTENT = { "application/problem+json": { schema: ProblemSchema } };

/** An OpenAPI response entry for an error answered as problem+json. */
export function problem(description: string) {
  return { description, content: PROBLEM_CONTENT };
}

/** What a 429 carries: when to retry, and the limit passed (draft-ietf-httpapi-ratelimit-headers). */
export const RATE_LIMIT_HEADERS = z.object({
  "Retry-After": z.string().openapi({ description: "Seconds to wait before retrying", example: "1" }),
  "RateLimit-Policy": z.string().openapi({ description: "The limits that apply: name, quota (q), unit (qu) and window in seconds (w)", example: '"requests";q=1000;w=1' }),
  RateLimit: z.string().openapi({ description: "What is left under each limit (r) and for how many seconds more (t)", example: '"requests";r=0;t=1' }),
});

/**
 * The answers any /v1 route can give besides its own: no valid key (401), and a dependency down (503):
 * every /v1 route looks the key up in Postgres before anything else.
 */
export const V1_ERRORS = {
  401: {
    description: "No API key, or not a valid one (`code: unauthorized`)",
    headers: z.object({ "WWW-Authenticate": z.string().openapi({ description: "The scheme to authenticate with", example: 'Bearer realm="coalesce"' }) }),
    content: PROBLEM_CONTENT,
  },
  403: {
    description: "The key or token lacks the scope this route needs (`code: forbidden`); the message names it",
    content: PROBLEM_CONTENT,
  },
  429: {
    description:
      "A limit was passed (`code: rate_limited`), and nothing was done: the key's requests per second (RATE_LIMIT_REQUESTS_PER_SECOND, " +
      "reads have ten times as many), or, on submissions, the tenant's rows per minute (RATE_LIMIT_ROWS_PER_MINUTE) or its quota of queued " +
      "rows (QUOTA_QUEUED_ROWS). The message names the limit and how to raise it. Retry after Retry-After seconds.",
    headers: RATE_LIMIT_HEADERS,
    content: PROBLEM_CONTENT,
  },
  503: {
    description: "Postgres or Redis cannot be reached (`code: service_unavailable`); nothing was done. Retry after Retry-After seconds.",
    headers: z.object({ "Retry-After": z.string().openapi({ description: "Seconds to wait before retrying", example: "5" }) }),
    content: PROBLEM_CONTENT,
  },
};

/** A path or query parameter that fails its schema (an id that cannot exist, a value out of range). */
export const PARAM_ERRORS = {
  ...V1_ERRORS,
  422: problem("A path or query parameter is malformed or out of range; `errors` names it (`code: validation_failed`)"),
};

/**
 * A route that takes a JSON body: not JSON (400), over MAX_BODY_BYTES (413), another media type (415),
 * or a body that fails its schema, including a field it does not know (422).
 */
export const JSON_BODY_ERRORS = {
  ...PARAM_ERRORS,
  400: problem("The body is not valid JSON (`code: invalid_json`)"),
  413: problem("The body is larger than MAX_BODY_BYTES (`code: payload_too_large`)"),
  415: problem("The body is not application/json (`code: unsupported_media_type`)"),
  422: problem("The body or a parameter fails its schema, or has a field this endpoint does not know; `errors` names each (`code: validation_failed`)"),
};

/** A resource named in the path that the caller does not have. */
export function notFound(what: string) {
  return { 404: problem(`No such ${what} (\`code: not_found\`)`) };
}
