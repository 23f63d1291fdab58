import { boolVar, intVar, LOG_LEVELS, optionalVar, parseEnv } from "@coalesce/contracts";
import { DEFAULT_DATABASE_URL, DEFAULT_UPLOAD_STALE_MS, MAX_UPLOAD_STALE_MS, MIN_UPLOAD_STALE_MS } from "@coalesce/db";
import { DEFAULT_MODEL_STORE_DIR, EXECUTION_PROVIDERS, GRAPH_OPTIMIZATION_LEVELS } from "@coalesce/models";
import { checkRedisUrl, DEFAULT_QUEUE_PREFIX, DEFAULT_REDIS_URL, DEFAULT_STALLED_TAKEOVER_MS, queuePrefixFor } from "@coalesce/queue";
import { WebhookDeliveryEnvShape } from "@coalesce/webhooks";
import { availableParallelism } from "node:os";
import { z } from "zod";

/**
 * STALLED_TAKEOVER_MS when INFERENCE_THREADS=false, and the least it may be set to then: the lock
 * (half of it, see workerTimings) is renewed every eighth, so the event loop may be blocked for
 * about 11 s (15 s less 3.75 s) by one batch before the worker's chunks are handed to another. A silent
 * raise would break the takeover bound that the setting promises; a refusal at start says so.
 * @defaultValue 30000
 */
export const SYNC_INFERENCE_TAKEOVER_MS = 30_000;

export const WorkerEnvSchema = z.object({
  DATABASE_URL: z.string().url().default(DEFAULT_DATABASE_URL),
  /** Postgres without PgBouncer in between, for migrations (a session's advisory lock); unset: DATABASE_URL. */
  DIRECT_DATABASE_URL: optionalVar(z.string().url()),
  /** redis://, rediss://, redis+sentinel://... or redis+cluster://... (see parseRedisUrl in @coalesce/queue). */
  REDIS_URL: z.string().superRefine(checkRedisUrl).default(DEFAULT_REDIS_URL),
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
  /**
   * Fair share: each batch is dealt round-robin across tenants, then across a tenant's jobs, and a
   * job's chunks are scored oldest first, so they free their queue slots one after another and
   * another tenant's chunk is taken within about a chunk of the big job's rows rather than after all
   * the rows in hand (see BatcherOptions.fairShare). false: rows shared evenly among the chunks in hand.
   */
  FAIR_SHARE: boolVar(true),
  /** Threads of one instance's runs; 0: cores / MODEL_INSTANCES (with one instance, onnxruntime's own choice: one per core). */
  INTRA_OP_THREADS: intVar(0, 0, 1024),
  /** onnxruntime's intra-op threads busy-wait between operators (faster runs, a core kept busy). */
  INTRA_OP_SPINNING: boolVar(false),
  /**
   * Each model runs on a thread of its own, so the event loop keeps fetching chunks and writing
   * results while a batch runs (onnxruntime-node's run blocks the thread it is called on).
   */
  INFERENCE_THREADS: boolVar(true),
  /**
   * Instances of each model, each a session on a thread of its own, running batches side by side
   * (Triton's instance count); each holds its own copy of the weights. Unless INTRA_OP_THREADS is
   * set, each instance gets cores / instances intra-op threads. More than one pays where batches
   * are full anyway (jobs of many rows); with single-row jobs the instances split the rows in flight
   * into smaller batches (see the README's batching benchmark).
   */
  MODEL_INSTANCES: intVar(1, 1, 64),
  /**
   * A model version that has had no rows for this many seconds is unloaded: its sessions, their
   * threads and memory go (a few MB and threads each, however small the model), and the next rows
   * for it load it again. 0: never.
   */
  MODEL_IDLE_UNLOAD_S: intVar(600, 0, 30 * 24 * 3600),
  /**
   * Most model versions loaded at once: past it the least recently used is unloaded, never one with
   * rows waiting or running (when every one has, the worker goes over the limit, says so, and
   * unloads as they finish). 0: no limit.
   */
  MAX_LOADED_MODELS: intVar(32, 0, 100_000),
  /** How often to re-enqueue chunks Postgres has as unfinished and Redis lost (or holds as failed); 0 turns it off. */
  RECONCILE_INTERVAL_MS: intVar(30_000, 0),
  /**
   * A worker that dies has its chunks running again on a live worker within this long, and drops
   * off /readyz within it too (BullMQ's lock duration and stalled check, and the heartbeat, are
   * derived from it: see workerTimings). Shorter means more Redis calls per worker, and a worker whose
   * event loop is blocked for 3/8 of it loses its chunks to another (harmless: results count once).
   * Unset: DEFAULT_STALLED_TAKEOVER_MS, or SYNC_INFERENCE_TAKEOVER_MS with INFERENCE_THREADS=false,
   * which is also the least it may be then (see loadWorkerEnv).
   */
  STALLED_TAKEOVER_MS: z.coerce.number().int().min(300).max(600_000).optional(),
  /**
   * A chunk started more than this many times without finishing, each time after its worker died
   * holding it (see startChunks), is failed rather than handed to yet another worker: its rows
   * probably crash the model. Counted in Postgres, so a Redis flush does not reset it.
   */
  /** Predict rows this worker holds at once (the rest wait in Redis for any worker); 0: it serves no predict requests. */
  PREDICT_ROWS_IN_FLIGHT: intVar(4096, 0, 1_000_000),
  /** Rows scored beside their callers' at once for aliases' shadows and guard checks; past it samples are skipped (and counted); 0: none. */
  SHADOW_ROWS_IN_FLIGHT: intVar(4096, 0, 1_000_000),
  /** How often a worker writes its alias counts to Postgres and judges the aliases' guards. */
  ALIAS_GUARD_INTERVAL_MS: intVar(2_000, 50, 3_600_000),
  MAX_CHUNK_STARTS: intVar(10, 1, 1_000),
  /** Longest wait between retries of a chunk held back by an outage of Postgres or Redis. */
  TRANSIENT_RETRY_MAX_MS: intVar(5_000, 50, 300_000),
  /** On SIGTERM, how long the chunks in hand may take to finish; after that they are left to BullMQ to hand to another worker. */
  SHUTDOWN_GRACE_MS: intVar(25_000, 0, 3_600_000),
  /** Finished jobs (inputs and results) are deleted this many days after they finish; 0 keeps them. */
  RETENTION_DAYS: intVar(30, 0, 36_500),
  /** How often to end CSV uploads whose API process died mid-file (see upload-sweep.ts); 0 turns it off. */
  UPLOAD_SWEEP_MS: intVar(10_000, 0, 3_600_000),
  /** An upload not seen alive for this long is ended as interrupted, and its Idempotency-Key freed (the API says it is alive every 2 s). */
  UPLOAD_STALE_MS: intVar(DEFAULT_UPLOAD_STALE_MS, MIN_UPLOAD_STALE_MS, MAX_UPLOAD_STALE_MS),
  MIGRATE_ON_START: boolVar(true),
  LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
  /**
   * Each batch is logged at debug; at info, one summary line per this many seconds (rows, batches,
   * mean batch size, failed rows, per model version and lane), none while idle; 0: no summaries.
   */
  LOG_SUMMARY_INTERVAL_S: intVar(60, 0, 86_400),
  ...WebhookDeliveryEnvShape,
}).superRefine((env, ctx) => {
  if (env.MODEL_INSTANCES > 1 && !env.INFERENCE_THREADS) {
    ctx.addIssue({ code: "custom", path: ["MODEL_INSTANCES"], message: "more than one instance needs INFERENCE_THREADS=true (in process, runs block the event loop one at a time)" });
  }
  if (!env.INFERENCE_THREADS && env.STALLED_TAKEOVER_MS !== undefined && env.STALLED_TAKEOVER_MS < SYNC_INFERENCE_TAKEOVER_MS) {
    ctx.addIssue({
      code: "custom",
      path: ["STALLED_TAKEOVER_MS"],
      message:
        `must be at least ${SYNC_INFERENCE_TAKEOVER_MS} with INFERENCE_THREADS=false: each batch then runs on the event loop, where no lock is ` +
        `renewed while it runs, and a batch longer than 3/8 of STALLED_TAKEOVER_MS would lose its chunks to other workers (their work done twice, each loss counted toward MAX_CHUNK_STARTS). ` +
        `Leave STALLED_TAKEOVER_MS unset (${SYNC_INFERENCE_TAKEOVER_MS} then), or set INFERENCE_THREADS=true`,
    });
  }
});

export type WorkerEnv = Omit<z.infer<typeof WorkerEnvSchema>, "STALLED_TAKEOVER_MS"> & { STALLED_TAKEOVER_MS: number };

export function loadWorkerEnv(env: NodeJS.ProcessEnv = process.env): WorkerEnv {
  const parsed = parseEnv(WorkerEnvSchema, env);
  // The default depends on INFERENCE_THREADS, so it is filled in here rather than in the schema.
  // On a Redis Cluster every key needs the prefix's hash tag; the API derives the same prefix.
  return { ...parsed, QUEUE_PREFIX: queuePrefixFor(parsed.REDIS_URL, parsed.QUEUE_PREFIX), STALLED_TAKEOVER_MS: parsed.STALLED_TAKEOVER_MS ?? (parsed.INFERENCE_THREADS ? DEFAULT_STALLED_TAKEOVER_MS : SYNC_INFERENCE_TAKEOVER_MS) };
}

/**
 * Intra-op threads per model instance: INTRA_OP_THREADS, else the cores shared out among the
 * instances (so N instances do not each start a thread per core), else 0 for onnxruntime's own
 * choice when one instance has the cores to itself.
 */
export function intraOpThreads(env: Pick<WorkerEnv, "INTRA_OP_THREADS" | "MODEL_INSTANCES">, cores = availableParallelism()): number {
  if (env.INTRA_OP_THREADS > 0 || env.MODEL_INSTANCES === 1) return env.INTRA_OP_THREADS;
  return Math.max(1, Math.floor(cores / env.MODEL_INSTANCES));
}
