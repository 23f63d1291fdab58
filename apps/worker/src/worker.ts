import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { ChunkJobSchema, isTransientError, type ChunkJob } from "@coalesce/contracts";
import { completeChunks, connectDatabase, GroupCommit, migrate, startChunks } from "@coalesce/db";
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
import { AliasFigures } from "./aliases/figures.ts";
import { startAliasGuard } from "./aliases/guard.ts";
import { AliasPlans } from "./aliases/plans.ts";
import { AliasWatch } from "./aliases/watch.ts";
import { BatchLog } from "./batch/batch-log.ts";
import { BatcherRegistry } from "./batch/batcher-registry.ts";
import { startExpiry } from "./expiry.ts";
import { startUploadSweep } from "./upload-sweep.ts";
import { intraOpThreads, type WorkerEnv } from "./env.ts";
import { ModelCache } from "./inference/model-cache.ts";
import { runBatch } from "./inference/run-batch.ts";
import { createWorkerMetrics } from "./metrics.ts";
import { serveMetrics } from "./metrics-server.ts";
import { Outages } from "./outages.ts";
import { startPredictServer, type PredictServer } from "./predict/serve-predicts.ts";
import { startReconciler } from "./reconcile.ts";
import { startRetention } from "./retention.ts";
import { within } from "./within.ts";
import { startWebhookDispatcher, type WebhookDispatcher } from "./webhooks/dispatcher.ts";
import { parseBatcherKey, type RowOutcome, type RowWork } from "./batch/rows.ts";
import { failChunk, scoreQueueJob, type ChunkStarter, type CompletionWriter } from "./score-chunk.ts";

/**
 * BullMQ's maxStalledCount: never reached. BullMQ counts a stall each time its stalled check hands a
 * queue job back (its worker died, was stopped past SHUTDOWN_GRACE_MS, or lost Redis for longer than
 * the lock), never resets the count over the job's life, and fails the job past the limit: that
 * would fail good rows for an infrastructure reason. A chunk that keeps killing its workers is ended
 * by MAX_CHUNK_STARTS instead, counted in Postgres (see scoreChunk).
 */
const MAX_STALLS = Number.MAX_SAFE_INTEGER;

/**
 * The failure BullMQ gives a queue job past maxStalledCount. It still arrives from a worker whose
 * stalled check runs with a lower limit (a version from before MAX_STALLS was raised, during a
 * rolling deploy); it is handled as a re-queue, never as the chunk's failure.
 */
const BULLMQ_STALL_LIMIT = "job stalled more than allowable limit";

/**
 * How long shutdown waits to take this worker off /readyz: the connection waits for Redis however
 * long it is away, and every later part of shutdown would wait behind it. An entry left behind goes
 * stale within STALLED_TAKEOVER_MS, as a dead worker's does.
 */
const REMOVE_STATUS_TIMEOUT_MS = 1_000;

/** Longest shutdown waits for the predict requests in hand (their callers time out after PREDICT_TIMEOUT_MS anyway). */
const PREDICT_GRACE_MS = 10_000;

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
  if (env.MIGRATE_ON_START) await migrate({ databaseUrl: env.DIRECT_DATABASE_URL ?? env.DATABASE_URL, log: (message) => logger.info(message) });
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
  // Chunks finishing together (rows of one batch usually do) are written in one statement.
  const completions: CompletionWriter = new GroupCommit((items) => completeChunks(db, items), 256);
  // Likewise chunks taken from the queue together are read in one statement.
  const starts: ChunkStarter = new GroupCommit(
    (items) => startChunks(db, items.map((item) => item.chunkId), { restarted: items.filter((item) => item.restarted).map((item) => item.chunkId) }),
    256,
  );
  const connection = createRedisConnection(env.REDIS_URL, { logger });
  const queue = createPredictQueue({ connection, prefix: env.QUEUE_PREFIX });
  const metrics = createWorkerMetrics(queue, connection);
  metrics.provider.set({ provider: probe.provider }, 1);
  const models = new ModelCache(db, createModelStore(env.MODEL_STORE_DIR), sessionSettings, logger, {
    idleUnloadMs: env.MODEL_IDLE_UNLOAD_S * 1000,
    maxLoaded: env.MAX_LOADED_MODELS,
    metrics,
    // A version loaded again gets batchers configured from it afresh.
    onUnload: (modelVersionId) => void batchers.closeMatching(`${modelVersionId}|`),
  });

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

  // Each batch at debug, and one info line per LOG_SUMMARY_INTERVAL_S that sums them up.
  const batchLog = new BatchLog(logger, env.LOG_SUMMARY_INTERVAL_S * 1000);
  batchLog.start();
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
      // Rows someone waits for (predict requests, small jobs) never wait longer than the worker's own
      // delay, whatever a version's batching asks for its bulk rows.
      interactiveMaxDelayMs: env.MAX_BATCH_DELAY_MS,
      adaptive: env.ADAPTIVE_BATCHING,
      maxInFlight: models.peek(modelVersionId)?.instances ?? 1,
      fairShare: env.FAIR_SHARE,
      // A model reloaded mid-run reads Postgres: its being unreachable is no fault of the rows.
      failsWholeBatch: isTransientError,
      // Rows waiting or running keep their model version loaded (see ModelCache.acquire).
      lease: () => models.acquire(modelVersionId),
      run: async (rows) => {
        const model = await models.get(modelVersionId);
        if (model.maxBatchRows >= rows.length) {
          const started = performance.now();
          const outputs = await runBatch(model, rows);
          const runMs = performance.now() - started;
          return outputs.map((row) => ({ outputs: row, runRows: rows.length, runMs }));
        }
        // A model whose batch dimension is fixed to 1 runs row by row.
        const out: RowOutcome[] = [];
        for (const row of rows) {
          const started = performance.now();
          const outputs = await runBatch(model, [row]);
          const runMs = performance.now() - started;
          out.push(...outputs.map((outputs) => ({ outputs, runRows: 1, runMs })));
        }
        return out;
      },
      onBatch: (stats) => {
        const model = models.peek(modelVersionId);
        const labels = { model: model?.version.modelName ?? modelVersionId, version: String(model?.version.version ?? ""), provider: model?.provider ?? "", lane: stats.lane };
        metrics.batchRows.observe(labels, stats.rows);
        // The stats are in milliseconds (as logged); the histograms in seconds.
        metrics.batchWait.observe(labels, stats.waitMs / 1000);
        metrics.runTime.observe(labels, stats.runMs / 1000);
        batchLog.record(labels, stats);
      },
    };
  });

  // Rows that came through an alias: counted per version, a sample shadowed, candidates judged.
  const aliasFigures = new AliasFigures(db, metrics);
  // SHADOW_ROWS_IN_FLIGHT=0 skips every sample, but the rows are still counted for the guard.
  const watch = new AliasWatch({ plans: new AliasPlans(db), figures: aliasFigures, batchers, models, metrics, maxRowsInFlight: env.SHADOW_ROWS_IN_FLIGHT, logger });
  const stopAliasGuard = startAliasGuard({ db, figures: aliasFigures, intervalMs: env.ALIAS_GUARD_INTERVAL_MS, metrics, outages, logger });

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
      // A queue job that a stalled check has handed back was held by a worker that died (or lost
      // Redis for longer than the lock): its chunks' starts are counted from then on (in Postgres,
      // which outlives a Redis flush), and MAX_CHUNK_STARTS ends one that keeps killing its workers.
      const restarted = job.stalledCounter > 0;
      try {
        await scoreQueueJob({ db, starts, completions, models, batchers, metrics, onJobFinished, maxChunkStarts: env.MAX_CHUNK_STARTS, watch, logger }, parsed.data, restarted);
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
  /**
   * Puts a chunk back in the queue for `delayMs`. If Redis is away too, the move waits for it (this
   * connection holds commands until it reconnects), and the chunk keeps its slot meanwhile. Once
   * Redis is back, either the lock is still this worker's and the chunk is delayed, or the outage
   * outlasted the lock, a stalled check handed the chunk to another worker, and the move is refused
   * (logged below, harmless: a chunk counts once, whoever completes it).
   */
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
    // (A transient error never gets here: the processor holds such a chunk back with DelayedError.)
    if (error.message === BULLMQ_STALL_LIMIT) {
      // Failed by BullMQ for stalls (see BULLMQ_STALL_LIMIT): workers lost, not the chunk's failure.
      // The queue job stays failed, and the reconciler enqueues its unfinished chunks afresh.
      logger.warn({ queueJobId: job.id, stalls: job.stalledCounter }, "BullMQ failed a chunk's queue job for stalls; not recorded as the chunk's failure, the reconciler enqueues it again");
      return;
    }
    const final = error instanceof UnrecoverableError || error.name === "UnrecoverableError" || job.attemptsMade >= (job.opts.attempts ?? 1);
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
      // Queue jobs, not chunks: a queue job carries one chunk or several small ones, and counting
      // them would take a look-up per queue job (Redis may have removed it by now) or a scan of
      // job_chunks by queue_job_id, which has no index. Those that come back are counted in
      // Postgres as they start (restarts, see startChunks).
      logger.warn(
        { queueJobs: ids.length, queueJobIds: ids.slice(0, 20), stalledTakeoverMs: env.STALLED_TAKEOVER_MS },
        "took over chunks whose worker stopped renewing their locks (it died, or lost Redis); they run again here or on another worker",
      );
    }, 100);
  });
  await worker.waitUntilReady();
  // Set as shutdown begins: /readyz says so at once, while the chunks in hand still finish.
  let draining = false;
  const metricsServer = await serveMetrics({
    registry: metrics.registry,
    host: env.METRICS_HOST,
    port: env.METRICS_PORT,
    logger,
    health: {
      consumer: () => (draining ? "draining" : worker.isRunning() ? "ok" : "stopped"),
      dependencies: {
        // Not sent while disconnected: this connection would hold the PING until Redis is back.
        redis: () => (connection.status === "ready" ? connection.ping() : Promise.reject(new Error(`not connected (${connection.status})`))),
        postgres: () => db.pool.query("SELECT 1"),
      },
      // Past this block of the event loop the chunks' locks lapse (see workerTimings).
      stallMs: timings.lockDurationMs - timings.lockRenewMs,
    },
  });
  // A heartbeat in Redis lets the API report which workers are up and on which hardware.
  // It beats several times within STALLED_TAKEOVER_MS and says so, so /readyz drops a dead worker within that bound.
  const status = {
    id: workerId,
    provider: probe.provider,
    concurrency: env.WORKER_CONCURRENCY,
    startedAt: new Date().toISOString(),
    staleAfterMs: timings.staleAfterMs,
    predict: env.PREDICT_ROWS_IN_FLIGHT > 0,
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
  // Predict requests, once the heartbeat says this worker is alive (others claim a silent one's requests).
  const predicts: PredictServer | null =
    env.PREDICT_ROWS_IN_FLIGHT > 0
      ? await startPredictServer({
          redis: connection,
          prefix: env.QUEUE_PREFIX,
          consumer: workerId,
          models,
          batchers,
          rowsInFlight: env.PREDICT_ROWS_IN_FLIGHT,
          claimIntervalMs: timings.stalledIntervalMs,
          metrics,
          outages,
          logger,
          watch,
        })
      : null;
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
      lockDurationMs: timings.lockDurationMs,
      maxChunkStarts: env.MAX_CHUNK_STARTS,
      predictRowsInFlight: env.PREDICT_ROWS_IN_FLIGHT,
      maxLoadedModels: env.MAX_LOADED_MODELS,
      modelIdleUnloadS: env.MODEL_IDLE_UNLOAD_S,
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
      draining = true;
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
      // Predict requests first: their callers are waiting, and this worker's heartbeat keeps other
      // workers from claiming what it still holds.
      await stop("predict requests", () => predicts?.close(Math.min(env.SHUTDOWN_GRACE_MS, PREDICT_GRACE_MS)));
      await stop("heartbeat", async () => {
        clearInterval(heartbeatTimer);
        // Off /readyz at once, rather than once the entry goes stale; but not at the cost of the
        // rest of shutdown while Redis is away (see REMOVE_STATUS_TIMEOUT_MS).
        if (outages.isDown("redis") || !(await within(removeWorkerStatus(connection, env.QUEUE_PREFIX, status.id), REMOVE_STATUS_TIMEOUT_MS))) {
          logger.info({ staleAfterMs: status.staleAfterMs }, "Redis does not answer: left this worker's /readyz entry to go stale");
        }
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
      // Samples still scoring beside their callers' are only samples: not waited for past the grace.
      await stop("shadow rows", () => within(watch.close(), Math.min(env.SHUTDOWN_GRACE_MS, PREDICT_GRACE_MS)));
      await stop("alias guard", () => stopAliasGuard());
      await stop("webhooks", () => webhooks?.stop());
      await stop("metrics", () => new Promise<void>((resolve) => (metricsServer ? metricsServer.close(() => resolve()) : resolve())));
      await stop("queue", () => queue.close());
      // The batch log's last summary once the last batches have run.
      await stop("batchers", () => batchers.closeAll().finally(() => batchLog.stop()));
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
  if (await within(worker.close(), graceMs)) return;
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
