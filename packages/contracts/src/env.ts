import { z } from "@hono/zod-openapi";

/** Thrown at start-up when the environment is wrong; its message names each bad variable. */
export class ConfigError extends Error {}

/** Parses process.env once, failing with every bad variable named (`PORT: expected a number`). */
export function parseEnv<T extends z.ZodType>(schema: T, env: NodeJS.ProcessEnv = process.env): z.infer<T> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => `  ${issue.path.join(".")}: ${issue.message}`);
  throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
}

/** An integer variable with a default, e.g. `intVar(3000, 1, 65535)`. */
export function intVar(defaultValue: number, min: number, max = Number.MAX_SAFE_INTEGER) {
  return z.coerce.number().int().min(min).max(max).default(defaultValue);
}

/** A variable that may be left out; set but empty (`VAR=`, or compose's `${VAR:-}`) counts as left out. */
export function optionalVar<T extends z.ZodType>(schema: T) {
  return z.preprocess((value) => (typeof value === "string" && value.trim() === "" ? undefined : value), schema.optional());
}

/** A boolean variable: true/false/1/0/yes/no. */
export function boolVar(defaultValue: boolean) {
  return z
    .enum(["true", "false", "1", "0", "yes", "no"], { message: "expected true or false" })
    .default(defaultValue ? "true" : "false")
    .transform((value) => value === "true" || value === "1" || value === "yes");
}

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
