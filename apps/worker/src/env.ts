import { boolVar, intVar, LOG_LEVELS, parseEnv } from "@coalesce/contracts";
import { DEFAULT_DATABASE_URL } from "@coalesce/db";
import { DEFAULT_MODEL_STORE_DIR } from "@coalesce/models";
import { DEFAULT_QUEUE_PREFIX, DEFAULT_REDIS_URL } from "@coalesce/queue";
import { z } from "zod";

export const WorkerEnvSchema = z.object({
  DATABASE_URL: z.string().url().default(DEFAULT_DATABASE_URL),
  REDIS_URL: z.string().url().default(DEFAULT_REDIS_URL),
  QUEUE_PREFIX: z.string().min(1).default(DEFAULT_QUEUE_PREFIX),
  MODEL_STORE_DIR: z.string().min(1).default(DEFAULT_MODEL_STORE_DIR),
  MAX_BATCH_ROWS: intVar(256, 1, 1_000_000),
  MAX_BATCH_DELAY_MS: intVar(5, 0, 60_000),
  /** Chunks in flight per worker process: a batch can only coalesce rows of chunks being processed. */
  WORKER_CONCURRENCY: intVar(64, 1, 10_000),
  /** 0 lets onnxruntime choose (one thread per core). */
  INTRA_OP_THREADS: intVar(0, 0, 1024),
  /** How often to re-enqueue chunks Postgres has and Redis lost; 0 turns it off. */
  RECONCILE_INTERVAL_MS: intVar(30_000, 0),
  MIGRATE_ON_START: boolVar(true),
  LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
});
export type WorkerEnv = z.infer<typeof WorkerEnvSchema>;

export function loadWorkerEnv(env: NodeJS.ProcessEnv = process.env): WorkerEnv {
  return parseEnv(WorkerEnvSchema, env);
}
