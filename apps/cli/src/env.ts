import { parseEnv } from "@coalesce/contracts";
import { z } from "zod";

export const DEFAULT_URL = "http://127.0.0.1:3000";

const CliEnvSchema = z.object({
  COALESCE_URL: z.string().trim().min(1).default(DEFAULT_URL),
  COALESCE_API_KEY: z.string().trim().default(""),
});
export type CliEnv = z.infer<typeof CliEnvSchema>;

/** The CLI's configuration from the environment; `--url` and `--api-key` override it per command. */
export function parseCliEnv(env: NodeJS.ProcessEnv = process.env): CliEnv {
  return parseEnv(CliEnvSchema, env);
}
