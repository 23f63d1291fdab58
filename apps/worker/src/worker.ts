import { hostname } from "node:os";
import { ChunkJobSchema, type ChunkJob } from "@coalesce/contracts";
import { completeChunks, connectDatabase, GroupCommit, migrate, startChunks } from "@coalesce/db";
import { createModelStore, probeExecutionProviders } from "@coalesce/models";
import {
  createPredictQueue,
  createRedisConnection,
  PREDICT_QUEUE,
  publishJobsFinished,
  publishWorkerStatus,
  removeWorkerStatus,
} from "@coalesce/queue";
import { webhookPolicyFromEnv } from "@coalesce/webhooks";
import { UnrecoverableError, Worker } from "bullmq";
import type { Logger } from "pino";
import { BatcherRegistry } from "./batch/batcher-registry.ts";
import { startExpiry } from "./expiry.ts";
import { intraOpThreads, type WorkerEnv } from "./env.ts";
import { ModelCache } from "./inference/model-cache.ts";
import { runBatch } from "./inference/run-batch.ts";
import { createWorkerMetrics, serveMetrics } from "./metrics.ts";
import { startReconciler } from "./reconcile.ts";
import { startRetention } from "./retention.ts";
import { startWebhookDispatcher, type WebhookDispatcher } from "./webhooks/dispatcher.ts";
import { failChunk, parseBatcherKey, scoreQueueJob, type ChunkStarter, type CompletionWriter, type RowOutcome, type RowWork } from "./score-chunk.ts";

export type RunningWorker = {
  /** The execution provider this worker runs on. */
  provider: string;
  /** Where /metrics is served, or null when it could not be. */
  metricsPort: number | null;
  close(): Promise<void>;
};

/**
 * Starts a worker process's pieces: BullMQ consumer -> per-model dynamic batcher -> onnxruntime ->
 * Postgres. `close()` stops taking chunks, lets the ones in hand finish (their batches run), then
 * releases the models and connections.
 */
export async function startWorker(env: WorkerEnv, logger: Logger): Promise<RunningWorker> {
  if (env.MIGRATE_ON_START) await migrate({ databaseUrl: env.DATABASE_URL, log: (message) => logger.info(message) });
  const sessionSettings = {
    intraOpNumThreads: intraOpThreads(env),
    spinning: env.INTRA_OP_SPINNING,
    inferenceThreads: env.INFERENCE_THREADS,
    instances: env.MODEL_INSTANCES,
    graphOptimizationLevel: env.GRAPH_OPTIMIZATION_LEVEL,
    executionProviders: env.EXECUTION_PROVIDERS,
  };
  // Which provider this process really runs on, before any model: said at start, and in /metrics.
  const probe = await probeExecutionProviders(env.EXECUTION_PROVIDERS, sessionSettings);
  for (const skip of probe.skipped) logger.warn({ skipped: skip.provider, reason: skip.reason }, "execution provider unavailable; falling back");
  const db = connectDatabase(env.DATABASE_URL);
  await db.warmUp();
  const models = new ModelCache(db, createModelStore(env.MODEL_STORE_DIR), sessionSettings, logger);
  // Chunks finishing together (rows of one batch usually do) are written in one statement.
  const completions: CompletionWriter = new GroupCommit((items) => completeChunks(db, items), 256);
  // Likewise chunks taken from the queue together are read in one statement.
  const starts: ChunkStarter = new GroupCommit((chunkIds) => startChunks(db, chunkIds), 256);
  const connection = createRedisConnection(env.REDIS_URL);
  const queue = createPredictQueue({ connection, prefix: env.QUEUE_PREFIX });
  const metrics = createWorkerMetrics(queue);
  metrics.provider.set({ provider: probe.provider }, 1);

  // Sends the webhook outbox (events written by Postgres triggers as jobs change).
  const webhooks: WebhookDispatcher | null =
    env.WEBHOOK_CONCURRENCY > 0
      ? startWebhookDispatcher(
          db,
          {
            policy: webhookPolicyFromEnv(env),
            schedule: env.WEBHOOK_RETRY_SCHEDULE,
            timeoutMs: env.WEBHOOK_TIMEOUT_MS,
            pollMs: env.WEBHOOK_POLL_MS,
            concurrency: env.WEBHOOK_CONCURRENCY,
          },
          metrics,
          logger,
        )
      : null;

  // Jobs finishing together (a batch's worth) are announced in one message, and wake the webhook
  // dispatcher once (their events were written with them).
  const announcements = new GroupCommit(async (jobIds: string[]) => {
    webhooks?.wake();
    await publishJobsFinished(connection, env.QUEUE_PREFIX, jobIds).catch((error: unknown) =>
      logger.warn({ err: error, jobs: jobIds.length }, "could not announce finished jobs; long-polls answer at their next check"),
    );
    return jobIds.map(() => undefined);
  }, 1024);
  const onJobFinished = (jobId: string) => void announcements.add(jobId);

  const batchers = new BatcherRegistry<RowWork, RowOutcome>((key) => {
    const { modelVersionId, rowBytes } = parseBatcherKey(key);
    // The version's own limits where it has them (the model is loaded before its batchers exist).
    const batching = models.peek(modelVersionId)?.version.batching;
    const maxRows = batching?.maxBatchRows ?? env.MAX_BATCH_ROWS;
    const maxBytes = batching?.maxBatchBytes ?? env.MAX_BATCH_BYTES;
    return {
      // Image-sized rows get fewer rows per batch, so one batch never outgrows the byte limit.
      maxRows: Math.max(1, Math.min(maxRows, Math.floor(maxBytes / Math.max(rowBytes, 1)))),
      maxDelayMs: batching?.maxBatchDelayMs ?? env.MAX_BATCH_DELAY_MS,
      adaptive: env.ADAPTIVE_BATCHING,
      maxInFlight: models.peek(modelVersionId)?.instances ?? 1,
      run: async (rows) => {
        const model = await models.get(modelVersionId);
        if (model.maxBatchRows >= rows.length) {
          return (await runBatch(model, rows)).map((outputs) => ({ outputs, runRows: rows.length }));
        }
        // A model whose batch dimension is fixed to 1 runs row by row.
        const out: RowOutcome[] = [];
        for (const row of rows) out.push(...(await runBatch(model, [row])).map((outputs) => ({ outputs, runRows: 1 })));
        return out;
      },
      onBatch: (stats) => {
        const model = models.peek(modelVersionId);
        const labels = { model: model?.version.modelName ?? modelVersionId, version: String(model?.version.version ?? ""), provider: model?.provider ?? "", lane: stats.lane };
        metrics.batchRows.observe(labels, stats.rows);
        metrics.batchWait.observe(labels, stats.waitMs);
        metrics.runTime.observe(labels, stats.runMs);
        logger.info({ ...labels, ...stats }, "batch");
      },
    };
  });

  const worker = new Worker<ChunkJob, void, "score">(
    PREDICT_QUEUE,
    async (job) => {
      const parsed = ChunkJobSchema.safeParse(job.data);
      if (!parsed.success) throw new UnrecoverableError(`malformed chunk payload: ${parsed.error.message}`);
      await scoreQueueJob({ db, starts, completions, models, batchers, metrics, onJobFinished, logger }, parsed.data);
    },
    { connection, prefix: env.QUEUE_PREFIX, concurrency: env.WORKER_CONCURRENCY, autorun: true },
  );
  worker.on("failed", (job, error) => {
    if (!job) return;
    const final = error instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
    logger[final ? "error" : "warn"]({ queueJobId: job.id, attempt: job.attemptsMade, err: error }, "chunk failed");
    const parsed = ChunkJobSchema.safeParse(job.data);
    if (final && parsed.success) {
      for (const { chunkId } of parsed.data.chunks) {
        failChunk(db, chunkId, `gave up after ${job.attemptsMade} attempts: ${error.message}`).then(
          (finishedJob) => finishedJob && onJobFinished(finishedJob),
          (err: unknown) => logger.error({ err, chunkId }, "could not record a failed chunk"),
        );
      }
    }
  });
  worker.on("error", (error) => logger.error({ err: error }, "worker error"));
  await worker.waitUntilReady();
  const metricsServer = await serveMetrics(metrics.registry, env.METRICS_HOST, env.METRICS_PORT, logger);
  // A heartbeat in Redis lets the API report which workers are up and on which hardware.
  const status = { id: `${hostname()}:${process.pid}:${Date.now().toString(36)}`, provider: probe.provider, concurrency: env.WORKER_CONCURRENCY, startedAt: new Date().toISOString() };
  const heartbeat = () => publishWorkerStatus(connection, env.QUEUE_PREFIX, status).catch((error: unknown) => logger.warn({ err: error }, "heartbeat failed"));
  await heartbeat();
  const heartbeatTimer = setInterval(() => void heartbeat(), 10_000);
  // Batching limits changed through the API reach this worker's live batchers without a restart.
  const refreshBatching = () =>
    models.refreshBatching().then(
      (changed) => {
        for (const id of changed) {
          batchers.reconfigure(`${id}|`);
          logger.info({ modelVersionId: id, batching: models.peek(id)?.version.batching }, "model version batching changed");
        }
      },
      (error: unknown) => logger.warn({ err: error }, "could not re-read batching limits; will try again"),
    );
  const batchingTimer = env.BATCHING_REFRESH_MS > 0 ? setInterval(() => void refreshBatching(), env.BATCHING_REFRESH_MS) : undefined;
  const stopExpiry = startExpiry(db, queue, onJobFinished, logger);
  const stopRetention = env.RETENTION_DAYS > 0 ? startRetention(db, env.RETENTION_DAYS, logger) : () => {};
  const stopReconciler =
    env.RECONCILE_INTERVAL_MS > 0
      ? startReconciler(db, queue, { intervalMs: env.RECONCILE_INTERVAL_MS, graceMs: env.RECONCILE_INTERVAL_MS }, logger)
      : () => {};
  logger.info(
    {
      queuePrefix: env.QUEUE_PREFIX,
      concurrency: env.WORKER_CONCURRENCY,
      maxBatchRows: env.MAX_BATCH_ROWS,
      maxBatchDelayMs: env.MAX_BATCH_DELAY_MS,
      maxBatchBytes: env.MAX_BATCH_BYTES,
      modelInstances: env.MODEL_INSTANCES,
      intraOpThreads: sessionSettings.intraOpNumThreads || "onnxruntime's default",
      provider: probe.provider,
      executionProviders: env.EXECUTION_PROVIDERS,
    },
    "worker ready",
  );

  return {
    provider: probe.provider,
    metricsPort: (() => {
      const address = metricsServer?.address();
      return typeof address === "object" && address ? address.port : null;
    })(),
    async close() {
      clearInterval(heartbeatTimer);
      clearInterval(batchingTimer);
      await removeWorkerStatus(connection, env.QUEUE_PREFIX, status.id).catch(() => {});
      stopReconciler();
      stopRetention();
      stopExpiry();
      await webhooks?.stop();
      await new Promise<void>((resolve) => (metricsServer ? metricsServer.close(() => resolve()) : resolve()));
      await worker.close();
      await queue.close();
      await batchers.closeAll();
      await models.closeAll();
      connection.disconnect();
      await db.close();
    },
  };
}
