import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { AppEnv } from "../context.ts";
import { ApiError } from "../errors.ts";

/** Refuses a body past `maxBytes` while it streams in, before it is buffered whole. */
export function limitBody(maxBytes: number, what: string): MiddlewareHandler<AppEnv> {
  return bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw new ApiError("payload_too_large", `${what} is larger than the limit of ${maxBytes} bytes`);
    },
  });
}
