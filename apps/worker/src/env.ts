import { boolVar, intVar, LOG_LEVELS, parseEnv } from "@coalesce/contracts";
import { DEFAULT_DATABASE_URL } from "@coalesce/db";
import { DEFAULT_MODEL_STORE_DIR, EXECUTION_PROVIDERS, GRAPH_OPTIMIZATION_LEVELS } from "@coalesce/models";
import { DEFAULT_QUEUE_PREFIX, DEFAULT_REDIS_URL } from "@coalesce/queue";
import { WebhookDeliveryEnvShape } from "@coalesce/webhooks";
import { z } from "zod";

export const WorkerEnvSchema = z.object({
  DATABASE_URL: z.string().url().default(DEFAULT_DATABASE_URL),
  REDIS_URL: z.string().url().default(DEFAULT_REDIS_URL),
  QUEUE_PREFIX: z.string().min(1).default(DEFAULT_QUEUE_PREFIX),
  MODEL_STORE_DIR: z.string().min(1).default(DEFAULT_MODEL_STORE_DIR),
  MAX_BATCH_ROWS: intVar(256, 1, 1_000_000),
  MAX_BATCH_DELAY_MS: intVar(5, 0, 60_000),
  /** Hold a partial batch for MAX_BATCH_DELAY_MS only while rows keep arriving (see DynamicBatcher). */
  ADAPTIVE_BATCHING: boolVar(true),
  /** Largest batch input, in bytes: image-sized rows get smaller batches instead of exhausting memory. */
  MAX_BATCH_BYTES: intVar(64 * 1024 * 1024, 1),
  /** How often a worker re-reads the batching limits of the model versions it holds (changed by PATCH); 0: never. */
  BATCHING_REFRESH_MS: intVar(5_000, 0, 3_600_000),
  /** Ordered preference, comma-separated: the first that can start is used (cpu always can). */
  EXECUTION_PROVIDERS: z
    .string()
    .default("cpu")
    .transform((value) => value.split(",").map((p) => p.trim().toLowerCase()).filter(Boolean))
    .pipe(
      z
        .array(z.enum(EXECUTION_PROVIDERS, { message: `expected a comma-separated list of ${EXECUTION_PROVIDERS.join(", ")}` }))
        .min(1, "name at least one execution provider"),
    ),
  GRAPH_OPTIMIZATION_LEVEL: z.enum(GRAPH_OPTIMIZATION_LEVELS).default("all"),
  /** Prometheus /metrics for this worker; 0 picks a free port. */
  METRICS_PORT: intVar(9464, 0, 65535),
  METRICS_HOST: z.string().default("127.0.0.1"),
  /** Chunks in flight per worker process: a batch can only coalesce rows of chunks being processed. */
  WORKER_CONCURRENCY: intVar(64, 1, 10_000),
  /** 0 lets onnxruntime choose (one thread per core). */
  INTRA_OP_THREADS: intVar(0, 0, 1024),
  /** onnxruntime's intra-op threads busy-wait between operators (faster runs, a core kept busy). */
  INTRA_OP_SPINNING: boolVar(false),
  /**
   * Each model runs on a thread of its own, so the event loop keeps fetching chunks and writing
   * results while a batch runs (onnxruntime-node's run blocks the thread it is called on).
   */
  INFERENCE_THREADS: boolVar(true),
  /** How often to re-enqueue chunks Postgres has and Redis lost; 0 turns it off. */
  RECONCILE_INTERVAL_MS: intVar(30_000, 0),
  /** Finished jobs (inputs and results) are deleted this many days after they finish; 0 keeps them. */
  RETENTION_DAYS: intVar(30, 0, 36_500),
  MIGRATE_ON_START: boolVar(true),
  LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
  ...WebhookDeliveryEnvShape,
});
export type WorkerEnv = z.infer<typeof WorkerEnvSchema>;

export function loadWorkerEnv(env: NodeJS.ProcessEnv = process.env): WorkerEnv {
  return parseEnv(WorkerEnvSchema, env);
}
