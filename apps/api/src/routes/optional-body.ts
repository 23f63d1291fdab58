import type { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { AppEnv } from "../context.ts";
import { ApiError, fromZodError } from "../errors.ts";

/**
 * A JSON body that may be left out (a rotation's overlap, say): no body, or only whitespace, is
 * parsed as `{}` so the schema's defaults apply; anything else must be JSON that fits the schema.
 */
export async function readOptionalJsonBody<S extends z.ZodType>(c: Context<AppEnv>, schema: S): Promise<z.infer<S>> {
  const text = await c.req.text();
  let body: unknown = {};
  if (text.trim() !== "") {
    try {
      body = JSON.parse(text);
    } catch {
      throw new ApiError("invalid_json", "the request body is not valid JSON");
    }
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw fromZodError(parsed.error);
  return parsed.data;
}
