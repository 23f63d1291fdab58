import { registerQueueGauge, type PredictQueue, type RedisClient } from "@coalesce/queue";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

const ROW_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192];
// Seconds, Prometheus' base unit (these were milliseconds in metrics named *_ms: see docs/observability.md).
const SHORT_SECONDS_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5];
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];

export type ModelLabels = { model: string; version: string; provider: string };

/**
 * The worker's Prometheus metrics. Node's defaults are included, among them event-loop delay
 * (nodejs_eventloop_lag_*), which shows whether inference starves BullMQ's lock renewals.
 */
export function createWorkerMetrics(queue: PredictQueue, connection: RedisClient) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const labelNames = ["model", "version", "provider"] as const;
  // Batches and job latency are also split by lane (interactive or batch), for objectives of their own.
  const laneLabelNames = [...labelNames, "lane"] as const;
  const metrics = {
    registry,
    batchRows: new Histogram({ name: "coalesce_batch_rows", help: "Rows per onnxruntime run", labelNames: laneLabelNames, buckets: ROW_BUCKETS, registers: [registry] }),
    batchWait: new Histogram({ name: "coalesce_batch_wait_seconds", help: "How long a batch's oldest row waited for the batch to fill", labelNames: laneLabelNames, buckets: SHORT_SECONDS_BUCKETS, registers: [registry] }),
    runTime: new Histogram({ name: "coalesce_onnx_run_seconds", help: "onnxruntime time per batch", labelNames: laneLabelNames, buckets: SHORT_SECONDS_BUCKETS, registers: [registry] }),
    rows: new Counter({ name: "coalesce_rows_scored_total", help: "Rows scored, by outcome (rate() gives rows/s)", labelNames: [...labelNames, "outcome"], registers: [registry] }),
    predictRows: new Counter({ name: "coalesce_predict_rows_total", help: "Predict rows answered by this worker, by outcome", labelNames: [...labelNames, "outcome"], registers: [registry] }),
    predictWait: new Histogram({ name: "coalesce_predict_queue_wait_seconds", help: "How long a predict request waited in Redis, from its API's submit to this worker's read (hosts' clocks apart)", buckets: SHORT_SECONDS_BUCKETS, registers: [registry] }),
    predictDropped: new Counter({ name: "coalesce_predict_dropped_total", help: "Predict requests dropped unrun because their caller's timeout had passed" , registers: [registry] }),
    // The job failure ratio's input. Jobs ended otherwise (cancelled through the API, expired, uploads
    // whose API died, a chunk failed after MAX_CHUNK_STARTS) are not counted: the first three say
    // nothing about the model or the workers, and the last is logged as an error of its own.
    jobsFinished: new Counter({
      name: "coalesce_jobs_finished_total",
      help: "Jobs this worker finished by scoring their last chunk, by lane and status (succeeded, failed)",
      labelNames: ["lane", "status"],
      registers: [registry],
    }),
    jobLatency: new Histogram({ name: "coalesce_job_latency_seconds", help: "From a job's creation to its completion, for jobs this worker completed", labelNames: laneLabelNames, buckets: LATENCY_BUCKETS, registers: [registry] }),
    webhookAttempts: new Counter({ name: "coalesce_webhook_attempts_total", help: "Webhook delivery attempts, by event type and outcome (delivered, failed, gone, refused)", labelNames: ["event", "outcome"], registers: [registry] }),
    webhookLatency: new Histogram({ name: "coalesce_webhook_attempt_seconds", help: "Time per webhook delivery attempt", buckets: SHORT_SECONDS_BUCKETS, registers: [registry] }),
    provider: new Gauge({ name: "coalesce_worker_provider_info", help: "The execution provider this worker runs models on (value 1)", labelNames: ["provider"], registers: [registry] }),
    ...createModelCacheMetrics(registry),
    ...createAliasMetrics(registry),
  };
  registerQueueGauge(registry, queue, connection);
  return metrics;
}
export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>;

/**
 * What the worker sees of aliases: rows per version and role (route or shadow), the shadow
 * comparisons (agreement = agreed / labelled; mean difference = abs_diff / values), samples skipped
 * past SHADOW_ROWS_IN_FLIGHT, and the guard's rollbacks.
 */
function createAliasMetrics(registry: Registry) {
  const pair = ["model", "alias", "primary_version", "shadow_version"] as const;
  return {
    aliasRows: new Counter({
      name: "coalesce_alias_rows_total",
      help: "Rows scored for an alias, by version, role (route: answered the caller; shadow: scored beside it) and outcome",
      labelNames: ["model", "alias", "version", "role", "outcome"],
      registers: [registry],
    }),
    shadowCompared: new Counter({ name: "coalesce_shadow_compared_rows_total", help: "Rows scored by two versions of an alias and compared", labelNames: pair, registers: [registry] }),
    shadowLabelled: new Counter({ name: "coalesce_shadow_labelled_rows_total", help: "Compared rows with a label or argmax, per output", labelNames: [...pair, "output"], registers: [registry] }),
    shadowAgreed: new Counter({ name: "coalesce_shadow_agreed_rows_total", help: "Compared rows whose label or argmax agreed, per output", labelNames: [...pair, "output"], registers: [registry] }),
    shadowAbsDiff: new Counter({ name: "coalesce_shadow_abs_diff_total", help: "Sum of the absolute differences of compared float values, per output", labelNames: [...pair, "output"], registers: [registry] }),
    shadowValues: new Counter({ name: "coalesce_shadow_values_total", help: "Float values compared, per output", labelNames: [...pair, "output"], registers: [registry] }),
    shadowSkipped: new Counter({
      name: "coalesce_shadow_skipped_rows_total",
      help: "Sampled rows not scored beside their caller's because SHADOW_ROWS_IN_FLIGHT were already (kind: shadow or check)",
      labelNames: ["model", "alias", "kind"],
      registers: [registry],
    }),
    aliasRollbacks: new Counter({ name: "coalesce_alias_rollbacks_total", help: "Candidates rolled back by an alias's guard (by this worker)", labelNames: ["model", "alias"], registers: [registry] }),
  };
}

const LOAD_SECONDS_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** What the model cache reports: loads, unloads (MODEL_IDLE_UNLOAD_S, MAX_LOADED_MODELS) and how many are loaded. */
export function createModelCacheMetrics(registry: Registry) {
  return {
    modelLoads: new Counter({ name: "coalesce_model_loads_total", help: "Model versions loaded by this worker, by outcome (loaded, failed)", labelNames: ["model", "version", "outcome"], registers: [registry] }),
    modelUnloads: new Counter({
      name: "coalesce_model_unloads_total",
      help: "Model versions unloaded by this worker, by reason: idle (unused for MODEL_IDLE_UNLOAD_S) or lru (over MAX_LOADED_MODELS)",
      labelNames: ["model", "version", "reason"],
      registers: [registry],
    }),
    modelLoadSeconds: new Histogram({ name: "coalesce_model_load_seconds", help: "Time to load a model version (its record, then its sessions and threads)", buckets: LOAD_SECONDS_BUCKETS, registers: [registry] }),
    modelsLoaded: new Gauge({ name: "coalesce_models_loaded", help: "Model versions loaded in this worker now", registers: [registry] }),
  };
}
export type ModelCacheMetrics = ReturnType<typeof createModelCacheMetrics>;
