import { ChunkJobSchema, type ChunkJob, type TensorRow } from "@coalesce/contracts";
import { connectDatabase, migrate } from "@coalesce/db";
import { createModelStore } from "@coalesce/models";
import { createPredictQueue, createRedisConnection, PREDICT_QUEUE } from "@coalesce/queue";
import { UnrecoverableError, Worker } from "bullmq";
import type { Logger } from "pino";
import { BatcherRegistry } from "./batch/batcher-registry.ts";
import type { WorkerEnv } from "./env.ts";
import { ModelCache } from "./inference/model-cache.ts";
import { startReconciler } from "./reconcile.ts";
import { runBatch } from "./inference/run-batch.ts";
import { failChunk, scoreChunk, type RowWork } from "./score-chunk.ts";

export type RunningWorker = { close(): Promise<void> };

/**
 * Starts a worker process's pieces: BullMQ consumer -> per-model dynamic batcher -> onnxruntime ->
 * Postgres. `close()` stops taking chunks, lets the ones in hand finish (their batches run), then
 * releases the models and connections.
 */
export async function startWorker(env: WorkerEnv, logger: Logger): Promise<RunningWorker> {
  if (env.MIGRATE_ON_START) await migrate({ databaseUrl: env.DATABASE_URL, log: (message) => logger.info(message) });
  const db = connectDatabase(env.DATABASE_URL);
  await db.warmUp();
  const models = new ModelCache(
    db,
    createModelStore(env.MODEL_STORE_DIR),
    { intraOpNumThreads: env.INTRA_OP_THREADS },
    logger,
  );
  const batchers = new BatcherRegistry<RowWork, TensorRow>((key) => {
    const modelVersionId = key.slice(0, key.indexOf("|"));
    return {
      maxRows: env.MAX_BATCH_ROWS,
      maxDelayMs: env.MAX_BATCH_DELAY_MS,
      run: async (items) => {
        const model = await models.get(modelVersionId);
        const rows = items.map((item) => item.row);
        // A model with a fixed batch of 1 runs row by row.
        if (model.maxBatchRows >= rows.length) return runBatch(model, rows);
        const out: TensorRow[] = [];
        for (const row of rows) out.push(...(await runBatch(model, [row])));
        return out;
      },
      onBatch: (stats) => logger.info({ modelVersionId, ...stats, provider: "cpu" }, "batch"),
    };
  });

  const connection = createRedisConnection(env.REDIS_URL);
  const worker = new Worker<ChunkJob, void, "score">(
    PREDICT_QUEUE,
    async (job) => {
      const parsed = ChunkJobSchema.safeParse(job.data);
      if (!parsed.success) throw new UnrecoverableError(`malformed chunk payload: ${parsed.error.message}`);
      await scoreChunk({ db, models, batchers, logger: logger.child({ jobId: parsed.data.jobId }) }, parsed.data);
    },
    { connection, prefix: env.QUEUE_PREFIX, concurrency: env.WORKER_CONCURRENCY, autorun: true },
  );
  worker.on("failed", (job, error) => {
    if (!job) return;
    const final = error instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
    logger[final ? "error" : "warn"]({ chunkId: job.id, attempt: job.attemptsMade, err: error }, "chunk failed");
    if (final) {
      failChunk(db, job.data.chunkId, `gave up after ${job.attemptsMade} attempts: ${error.message}`).catch((err: unknown) =>
        logger.error({ err, chunkId: job.id }, "could not record a failed chunk"),
      );
    }
  });
  worker.on("error", (error) => logger.error({ err: error }, "worker error"));
  await worker.waitUntilReady();
  const queue = createPredictQueue({ connection, prefix: env.QUEUE_PREFIX });
  const stopReconciler =
    env.RECONCILE_INTERVAL_MS > 0
      ? startReconciler(db, queue, { intervalMs: env.RECONCILE_INTERVAL_MS, graceMs: env.RECONCILE_INTERVAL_MS }, logger)
      : () => {};
  logger.info(
    { queuePrefix: env.QUEUE_PREFIX, concurrency: env.WORKER_CONCURRENCY, maxBatchRows: env.MAX_BATCH_ROWS, maxBatchDelayMs: env.MAX_BATCH_DELAY_MS, provider: "cpu" },
    "worker ready",
  );

  return {
    async close() {
      stopReconciler();
      await worker.close();
      await queue.close();
      await batchers.closeAll();
      await models.closeAll();
      connection.disconnect();
      await db.close();
    },
  };
}
