import { z } from "@hono/zod-openapi";

/** Longest id any resource has (`dlv_` and 32 hex digits is the longest made today), with room to spare. */
const MAX_ID_LENGTH = 64;

/**
 * A resource id in a path: its prefix, then lower-case letters and digits, as every id this API makes
 * is. An id that could not exist (another resource's, a NUL byte Postgres would refuse, unicode, a
 * megabyte) is answered 422 naming the parameter before any query runs. The one place every `{id}`
 * route takes its id from.
 */
export function prefixedIdSchema(prefix: string, what: string, example: string) {
  return z
    .string()
    .max(MAX_ID_LENGTH, `expected ${what} id (${prefix}_...), at most ${MAX_ID_LENGTH} characters`)
    .regex(new RegExp(`^${prefix}_[0-9a-z]+$`), `expected ${what} id: ${prefix}_ followed by lower-case letters and digits`)
    .openapi({ example });
}
