import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { ChunkJobSchema, isTransientError, type ChunkJob } from "@coalesce/contracts";
import { completeChunks, connectDatabase, countChunksOfQueueJobs, GroupCommit, migrate, startChunks } from "@coalesce/db";
import { createModelStore, probeExecutionProviders } from "@coalesce/models";
import {
  createPredictQueue,
  createRedisConnection,
  PREDICT_QUEUE,
  publishJobsFinished,
  publishWorkerStatus,
  removeWorkerStatus,
  workerTimings,
} from "@coalesce/queue";
import { webhookPolicyFromEnv } from "@coalesce/webhooks";
import { DelayedError, UnrecoverableError, Worker, type Job } from "bullmq";
import type { Logger } from "pino";
import { BatcherRegistry } from "./batch/batcher-registry.ts";
import { startExpiry } from "./expiry.ts";
import { startUploadSweep } from "./upload-sweep.ts";
import { intraOpThreads, type WorkerEnv } from "./env.ts";
import { ModelCache } from "./inference/model-cache.ts";
import { runBatch } from "./inference/run-batch.ts";
import { createWorkerMetrics, serveMetrics } from "./metrics.ts";
import { Outages } from "./outages.ts";
import { startReconciler } from "./reconcile.ts";
import { startRetention } from "./retention.ts";
import { startWebhookDispatcher, type WebhookDispatcher } from "./webhooks/dispatcher.ts";
import { failChunk, parseBatcherKey, scoreQueueJob, type ChunkStarter, type CompletionWriter, type RowOutcome, type RowWork } from "./score-chunk.ts";

/**
 * Times a chunk's queue job may be handed back by BullMQ's stalled check (its worker died, or lost
 * Redis for longer than the lock) before it is failed as one that kills its workers. A single
 * crash or outage is one stall; only a chunk that keeps taking its worker down reaches this.
 */
const MAX_STALLS = 3;

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
  // Infrastructure failures the work meets are reported here, not logged per chunk per retry.
  const outages = new Outages(logger, env.TRANSIENT_RETRY_MAX_MS);
  const timings = workerTimings(env.STALLED_TAKEOVER_MS);
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
  // The connections tell an outage (one warning, then one info line with counts); the work that
  // meets it reports to `outages`, which holds it back (see Outages).
  const db = connectDatabase(env.DATABASE_URL, { logger });
  await db.warmUp();
  const models = new ModelCache(db, createModelStore(env.MODEL_STORE_DIR), sessionSettings, logger);
  // Chunks finishing together (rows of one batch usually do) are written in one statement.
  const completions: CompletionWriter = new GroupCommit((items) => completeChunks(db, items), 256);
  // Likewise chunks taken from the queue together are read in one statement.
  const starts: ChunkStarter = new GroupCommit((chunkIds) => startChunks(db, chunkIds), 256);
  const connection = createRedisConnection(env.REDIS_URL, { logger });
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
          outages,
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
      // A model reloaded mid-run reads Postgres: its being unreachable is no fault of the rows.
      failsWholeBatch: isTransientError,
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

  // Named in the heartbeat, and on every queue job it takes (BullMQ's processedBy), so a chunk in
  // flight says which worker holds it.
  const workerId = `${hostname()}:${process.pid}:${Date.now().toString(36)}`;
  const worker = new Worker<ChunkJob, void, "score">(
    PREDICT_QUEUE,
    async (job, token) => {
      const parsed = ChunkJobSchema.safeParse(job.data);
      if (!parsed.success) throw new UnrecoverableError(`malformed chunk payload: ${parsed.error.message}`);
      // While Postgres is known to be away, a chunk just taken waits before it tries (holding its
      // slot, its lock renewed), so the worker probes at the pace of the backoff instead of moving
      // the whole queue to delayed a chunk at a time.
      if (outages.isDown("postgres")) await sleep(outages.retryDelayMs("postgres"));
      try {
        await scoreQueueJob({ db, starts, completions, models, batchers, metrics, onJobFinished, logger }, parsed.data);
      } catch (error) {
        if (!isTransientError(error)) throw error;
        // Postgres (the only service scoring talks to) is away: the chunk waits and tries again,
        // without spending an attempt, however long the outage.
        await holdBack(job, token, outages.retryDelayMs(outages.failed("postgres", error)));
        throw new DelayedError();
      }
      outages.ok("postgres");
    },
    {
      name: workerId,
      connection,
      prefix: env.QUEUE_PREFIX,
      concurrency: env.WORKER_CONCURRENCY,
      autorun: true,
      lockDuration: timings.lockDurationMs,
      lockRenewTime: timings.lockRenewMs,
      stalledInterval: timings.stalledIntervalMs,
      maxStalledCount: MAX_STALLS,
    },
  );
  /** Puts a chunk back in the queue for `delayMs`; if Redis is away too, its lock lapses and BullMQ hands it back. */
  const holdBack = async (job: Job<ChunkJob, void, "score">, token: string | undefined, delayMs: number) => {
    try {
      await job.moveToDelayed(Date.now() + delayMs, token);
    } catch (error) {
      if (isTransientError(error)) outages.failed("redis", error);
      else logger.info({ queueJobId: job.id, err: error }, "could not hold a chunk back (its queue job changed meanwhile); BullMQ or the reconciler brings it back");
    }
  };
  worker.on("failed", (job, error) => {
    if (!job) return;
    const parsed = ChunkJobSchema.safeParse(job.data);
    const final = error instanceof UnrecoverableError || error.name === "UnrecoverableError" || job.attemptsMade >= (job.opts.attempts ?? 1);
    if (isTransientError(error)) {
      // Held back rather than failed (see the processor); one that got here anyway is the
      // reconciler's to bring back. Never recorded as the rows' failure.
      outages.failed("postgres", error);
      return;
    }
    logger[final ? "error" : "warn"]({ queueJobId: job.id, attempt: job.attemptsMade, err: error }, "chunk failed");
    if (!final || !parsed.success) return;
    for (const { chunkId } of parsed.data.chunks) {
      failChunk(db, chunkId, `gave up after ${job.attemptsMade} attempts: ${error.message}`).then(
        (finishedJob) => finishedJob && onJobFinished(finishedJob),
        (err: unknown) => {
          // The queue job stays failed, and the reconciler brings it back (it fails again, and is recorded then).
          if (isTransientError(err)) outages.failed("postgres", err);
          else logger.error({ err, chunkId }, "could not record a failed chunk");
        },
      );
    }
  });
  const reportError = workerErrorReporter(outages, logger);
  worker.on("error", reportError);
  queue.on("error", reportError);
  // A chunk whose worker stopped renewing its lock (it died, or could not reach Redis for longer
  // than the lock) was handed back to the queue by a stalled check: one line per check, with counts.
  const takenOver = new Set<string>();
  let takeoverTimer: NodeJS.Timeout | undefined;
  worker.on("stalled", (queueJobId) => {
    takenOver.add(queueJobId);
    takeoverTimer ??= setTimeout(() => {
      takeoverTimer = undefined;
      const ids = [...takenOver];
      takenOver.clear();
      // Counted in Postgres: a queue job taken over may well be done and gone from Redis by now.
      void countChunksOfQueueJobs(db, ids)
        .catch(() => null)
        .then((chunks) =>
          logger.warn(
            { queueJobs: ids.length, chunks, queueJobIds: ids.slice(0, 20), stalledTakeoverMs: env.STALLED_TAKEOVER_MS },
            "took over chunks whose worker stopped renewing their locks (it died, or lost Redis); they run again here or on another worker",
          ),
        );
    }, 100);
  });
  await worker.waitUntilReady();
  const metricsServer = await serveMetrics(metrics.registry, env.METRICS_HOST, env.METRICS_PORT, logger);
  // A heartbeat in Redis lets the API report which workers are up and on which hardware.
  // It beats several times within STALLED_TAKEOVER_MS and says so, so /readyz drops a dead worker within that bound.
  const status = {
    id: workerId,
    provider: probe.provider,
    concurrency: env.WORKER_CONCURRENCY,
    startedAt: new Date().toISOString(),
    staleAfterMs: timings.staleAfterMs,
  };
  let beating = false;
  const heartbeat = async () => {
    // During an outage a beat waits for Redis to come back; the next one is not stacked behind it.
    if (beating) return;
    beating = true;
    try {
      await publishWorkerStatus(connection, env.QUEUE_PREFIX, status);
      outages.ok("redis");
    } catch (error) {
      if (isTransientError(error)) outages.failed("redis", error);
      else logger.warn({ err: error }, "heartbeat failed");
    } finally {
      beating = false;
    }
  };
  await heartbeat();
  const heartbeatTimer = setInterval(() => void heartbeat(), timings.heartbeatMs);
  // Batching limits changed through the API reach this worker's live batchers without a restart.
  const refreshBatching = () =>
    models.refreshBatching().then(
      (changed) => {
        for (const id of changed) {
          batchers.reconfigure(`${id}|`);
          logger.info({ modelVersionId: id, batching: models.peek(id)?.version.batching }, "model version batching changed");
        }
      },
      (error: unknown) => {
        if (isTransientError(error)) outages.failed("postgres", error);
        else logger.warn({ err: error }, "could not re-read batching limits; will try again");
      },
    );
  const batchingTimer = env.BATCHING_REFRESH_MS > 0 ? setInterval(() => void refreshBatching(), env.BATCHING_REFRESH_MS) : undefined;
  const stopExpiry = startExpiry(db, queue, onJobFinished, logger, outages);
  const stopUploadSweep = env.UPLOAD_SWEEP_MS > 0 ? startUploadSweep(db, queue, { intervalMs: env.UPLOAD_SWEEP_MS, staleMs: env.UPLOAD_STALE_MS }, onJobFinished, logger, outages) : async () => {};
  const stopRetention = env.RETENTION_DAYS > 0 ? startRetention(db, env.RETENTION_DAYS, logger, outages) : () => {};
  const stopReconciler =
    env.RECONCILE_INTERVAL_MS > 0
      ? startReconciler(db, queue, { intervalMs: env.RECONCILE_INTERVAL_MS, graceMs: env.RECONCILE_INTERVAL_MS }, logger, outages)
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
      stalledTakeoverMs: env.STALLED_TAKEOVER_MS,
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
      // Stops in the reverse order of starting, each part even if another's stop throws. The
      // worker first stops taking chunks and finishes those in hand (their batches still run);
      // what it cannot finish within SHUTDOWN_GRACE_MS is left locked to lapse, for BullMQ to hand
      // to another worker (a chunk counts once, whoever completes it).
      const stopped: string[] = [];
      const failed: string[] = [];
      const stop = async (part: string, run: () => unknown) => {
        try {
          await run();
          stopped.push(part);
        } catch (error) {
          failed.push(part);
          logger.error({ err: error, part }, "could not stop a part of the worker");
        }
      };
      await stop("heartbeat", async () => {
        clearInterval(heartbeatTimer);
        // Off /readyz at once, rather than once the entry goes stale.
        await removeWorkerStatus(connection, env.QUEUE_PREFIX, status.id);
      });
      await stop("periodic tasks", () => {
        clearInterval(batchingTimer);
        stopReconciler();
        stopRetention();
        stopExpiry();
        return stopUploadSweep();
      });
      await stop("chunks in hand", () => closeWorker(worker, env.SHUTDOWN_GRACE_MS, logger));
      clearTimeout(takeoverTimer);
      await stop("webhooks", () => webhooks?.stop());
      await stop("metrics", () => new Promise<void>((resolve) => (metricsServer ? metricsServer.close(() => resolve()) : resolve())));
      await stop("queue", () => queue.close());
      await stop("batchers", () => batchers.closeAll());
      await stop("models", () => models.closeAll());
      await stop("redis", () => connection.disconnect());
      await stop("postgres", () => db.close());
      logger.info({ stopped, failed }, "worker stopped");
      if (failed.length > 0) throw new Error(`could not stop: ${failed.join(", ")}`);
    },
  };
}

/**
 * BullMQ's Worker.close waits for the chunks in hand; past `graceMs` they are given up on (the
 * process is about to exit): their locks lapse, and the stalled check hands them to another worker.
 * A second close(true) would only wait on the first, so the rest of shutdown simply goes on.
 */
async function closeWorker(worker: Worker<ChunkJob, void, "score">, graceMs: number, logger: Logger): Promise<void> {
  const closing = worker.close().then(() => "closed" as const);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), graceMs)));
  const outcome = await Promise.race([closing, late]).finally(() => clearTimeout(timer));
  if (outcome === "closed") return;
  closing.catch(() => {});
  logger.warn({ graceMs }, "chunks in hand did not finish in time; leaving them for another worker");
}

/** Reports errors raised by BullMQ's Worker and Queue, outside any one chunk's processing. */
function workerErrorReporter(outages: Outages, logger: Logger): (error: Error) => void {
  let reportedVanished = false;
  return (error) => {
    if (isTransientError(error)) {
      outages.failed("redis", error);
      return;
    }
    // The queue job of a chunk vanished from Redis (a flush) or its lock lapsed meanwhile (another
    // worker took it over) as this worker finished it: Postgres counts the chunk once either way,
    // and the reconciler brings back one that is unfinished there, so this is news, not an error.
    const vanished =
      /^(?:Missing (?:key|lock) for job (\S+)\.|Lock mismatch for job (\S+)\. Cmd) (?:moveToFinished|moveToDelayed)|^could not renew lock for job (\S+)/.exec(error.message);
    if (vanished) {
      const fields = { queueJobId: vanished[1] ?? vanished[2] ?? vanished[3], err: error.message };
      if (reportedVanished) logger.debug(fields, "a chunk's queue job vanished from Redis or changed hands");
      else logger.info(fields, "a chunk's queue job vanished from Redis or changed hands under this worker; Postgres keeps its outcome (further ones are logged at debug)");
      reportedVanished = true;
      return;
    }
    logger.error({ err: error }, "worker error");
  };
}
