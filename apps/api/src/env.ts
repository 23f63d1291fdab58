import { boolVar, DEFAULT_PREDICT_MAX_ROWS, intVar, LOG_LEVELS, parseEnv } from "@coalesce/contracts";
import { DEFAULT_DATABASE_URL, DEFAULT_UPLOAD_STALE_MS, MAX_UPLOAD_STALE_MS, MIN_UPLOAD_STALE_MS } from "@coalesce/db";
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
  // While Postgres is away a request answers 503 within this long rather than waiting for it.
  DATABASE_CONNECT_TIMEOUT_MS: intVar(2_000, 100),
  // The longest any one statement of the API may take (client and server side); 0 for no limit.
  DATABASE_QUERY_TIMEOUT_MS: intVar(30_000, 0),
  QUEUE_PREFIX: z.string().min(1).default(DEFAULT_QUEUE_PREFIX),
  MODEL_STORE_DIR: z.string().min(1).default(DEFAULT_MODEL_STORE_DIR),
  CHUNK_ROWS: intVar(1024, 1, 100_000),
  MAX_JOB_ROWS: intVar(100_000, 1),
  MAX_BODY_BYTES: intVar(64 * MiB, 1024),
  MAX_MODEL_BYTES: intVar(512 * MiB, 1024),
  MAX_UPLOAD_BYTES: intVar(4096 * MiB, 1024),
  /** CSV uploads: fields a row may have beyond the header's (a failed row); past it the upload is refused. */
  MAX_CSV_EXTRA_FIELDS: intVar(1000, 0, 1_000_000),
  /** CSV uploads: blank lines one file may hold before it is refused. */
  MAX_CSV_BLANK_LINES: intVar(10_000, 0),
  /**
   * An upload not seen alive this long (its API says so every 2 s) is taken for dead: a retry may
   * take its Idempotency-Key. The same setting as the worker's, which ends such an upload.
   */
  UPLOAD_STALE_MS: intVar(DEFAULT_UPLOAD_STALE_MS, MIN_UPLOAD_STALE_MS, MAX_UPLOAD_STALE_MS),
  /** Predict: most rows one request may carry. */
  PREDICT_MAX_ROWS: intVar(DEFAULT_PREDICT_MAX_ROWS, 1, 100_000),
  /** Predict: longest a request waits for its answer before a 504. */
  PREDICT_TIMEOUT_MS: intVar(10_000, 100, 300_000),
  /** Predict: most rows waiting for an answer over every API; past it a request is refused (503) at once. */
  PREDICT_MAX_BACKLOG_ROWS: intVar(16_384, 1),
  /** Predict: seconds an answered row stays in the result cache; 0 turns the cache off. */
  PREDICT_CACHE_TTL_S: intVar(300, 0, 30 * 24 * 3600),
  /** Predict: a row whose answer is larger than this (bytes of JSON) is not cached. */
  PREDICT_CACHE_MAX_ENTRY_BYTES: intVar(64 * 1024, 0),
  /** Predict: the Redis that holds the result cache, if not REDIS_URL (one with maxmemory and allkeys-lru). */
  PREDICT_CACHE_REDIS_URL: z.string().url().optional(),
  BOOTSTRAP_API_KEY: z.string().min(16, "use at least 16 characters").optional(),
  MIGRATE_ON_START: boolVar(true),
  LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
  ...WebhookPolicyEnvShape,
});
export type ApiEnv = z.infer<typeof ApiEnvSchema>;

export function loadApiEnv(env: NodeJS.ProcessEnv = process.env): ApiEnv {
  return parseEnv(ApiEnvSchema, env);
}
