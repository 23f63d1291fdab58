import { boolVar, intVar, LOG_LEVELS, parseEnv } from "@coalesce/contracts";
import { DEFAULT_DATABASE_URL } from "@coalesce/db";
import { DEFAULT_MODEL_STORE_DIR } from "@coalesce/models";
import { DEFAULT_QUEUE_PREFIX, DEFAULT_REDIS_URL } from "@coalesce/queue";
import { WebhookPolicyEnvShape } from "@coalesce/webhooks";
import { z } from "zod";

const MiB = 1024 * 1024;

export const ApiEnvSchema = z.object({
  PORT: intVar(3000, 0, 65535),
  HOST: z.string().default("127.0.0.1"),
  DATABASE_URL: z.string().url().default(DEFAULT_DATABASE_URL),
  REDIS_URL: z.string().url().default(DEFAULT_REDIS_URL),
  QUEUE_PREFIX: z.string().min(1).default(DEFAULT_QUEUE_PREFIX),
  MODEL_STORE_DIR: z.string().min(1).default(DEFAULT_MODEL_STORE_DIR),
  CHUNK_ROWS: intVar(1024, 1, 100_000),
  MAX_JOB_ROWS: intVar(100_000, 1),
  MAX_BODY_BYTES: intVar(64 * MiB, 1024),
  MAX_MODEL_BYTES: intVar(512 * MiB, 1024),
  MAX_UPLOAD_BYTES: intVar(4096 * MiB, 1024),
  BOOTSTRAP_API_KEY: z.string().min(16, "use at least 16 characters").optional(),
  MIGRATE_ON_START: boolVar(true),
  LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
  ...WebhookPolicyEnvShape,
});
export type ApiEnv = z.infer<typeof ApiEnvSchema>;

export function loadApiEnv(env: NodeJS.ProcessEnv = process.env): ApiEnv {
  return parseEnv(ApiEnvSchema, env);
}
