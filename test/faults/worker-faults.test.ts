// Real faults against the worker, none of them mocked: Postgres and Redis go away (through a TCP
// proxy the test takes down), a worker process is killed with SIGKILL or stopped with SIGTERM
// while it holds chunks, a queue job is left in BullMQ's failed set. After each, the invariant is
// checked: the job finishes, every row is scored exactly once, equal to the reference outputs, and
// no row failed for an infrastructure reason.
import { Writable } from "node:stream";
import { connectDatabase, createJob, createJobs, createModelVersion, findJob, readResults, upsertApiKey, type CreatedJob, type Database, type JobRecord } from "@coalesce/db";
import { createModelStore, inspectModel, packRows } from "@coalesce/models";
import { createPredictQueue, createRedisConnection, enqueueChunks, listWorkers, type PredictQueue } from "@coalesce/queue";
import type { TensorSpec } from "@coalesce/contracts";
import { UnrecoverableError, Worker } from "bullmq";
import type { RedisClient } from "@coalesce/queue";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadWorkerEnv } from "../../apps/worker/src/env.ts";
import { reconcileOnce } from "../../apps/worker/src/reconcile.ts";
import { startWorker, type RunningWorker } from "../../apps/worker/src/worker.ts";
import { startProcess, stopProcess, WORKER_MAIN, type ServiceProcess } from "../../scripts/processes.ts";
import { readFeatureCsv, readModel, readReference, type Reference } from "../support/fixtures.ts";
import { createTestServices, REDIS_URL, type TestServices } from "../support/services.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";

type LogLine = { level: number; msg: string; [field: string]: unknown };

let services: TestServices;
let db: Database;
let redis: RedisClient;
let queue: PredictQueue;
let tenantId: string;
let modelVersionId: string;
let inputs: TensorSpec[];
let features: number[][];
let reference: Reference[];

beforeAll(async () => {
  services = await createTestServices();
  db = connectDatabase(services.databaseUrl, { max: 4 });
  redis = createRedisConnection(REDIS_URL);
  queue = createPredictQueue({ connection: redis, prefix: services.queuePrefix });
  ({ tenantId } = await upsertApiKey(db.prisma, { tenantName: "worker-faults", name: "k", hash: "worker-faults", prefix: "csk_" }));
  const bytes = await readModel("iris");
  const stored = await createModelStore(services.modelStoreDir).put(bytes);
  const signature = await inspectModel(bytes);
  inputs = signature.inputs;
  ({ version: { id: modelVersionId } } = await createModelVersion(db.prisma, { tenantId, name: "iris", ...stored, ...signature }));
  ({ features } = await readFeatureCsv("iris"));
  reference = await readReference("iris");
});

afterAll(async () => {
  await queue?.close();
  redis?.disconnect();
  await db?.close();
  await services?.cleanup();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A job of `rows` iris rows (cycling through the data set), stored packed as the API stores them, in chunks of `chunkRows`. */
async function createIrisJob(rows: number, chunkRows: number, options: { enqueue: boolean } = { enqueue: true }) {
  const { job, chunks } = await createJob(db, {
    tenantId,
    modelVersionId,
    rows: Array.from({ length: rows }, (_, i) => ({ features: features[i % features.length] as number[] })),
    chunkRows,
    priority: "batch",
    packRows: (r) => packRows(r, inputs),
  });
  const toEnqueue = chunks.map((chunk) => ({ chunkId: chunk.id, jobId: job.id, modelVersionId, seq: chunk.seq, priority: "batch" as const }));
  if (options.enqueue) await enqueueChunks(queue, toEnqueue);
  return { jobId: job.id, chunks: toEnqueue };
}

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs: number, pollMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}

const finished = (jobId: string, timeoutMs = 60_000): Promise<JobRecord> =>
  waitFor(
    `job ${jobId} to finish`,
    async () => {
      const job = await findJob(db, tenantId, jobId);
      return job && ["succeeded", "failed", "cancelled", "expired"].includes(job.status) ? job : null;
    },
    timeoutMs,
  );

const started = (jobId: string): Promise<JobRecord> =>
  waitFor(
    `job ${jobId} to have scored rows`,
    async () => {
      const job = await findJob(db, tenantId, jobId);
      return job && job.succeededRows > 0 ? job : null;
    },
    30_000,
    10,
  );

/** The promise: every row scored exactly once, none failed, each equal to the reference outputs. */
async function expectScoredExactlyOnce(jobId: string, rows: number): Promise<void> {
  const job = await findJob(db, tenantId, jobId);
  expect(job).toMatchObject({ status: "succeeded", totalRows: rows, succeededRows: rows, failedRows: 0 });
  // Checked row by row, reported once (100k rows of expect() calls would take longer than the job).
  const seen: number[] = [];
  const wrong: unknown[] = [];
  let cursor: number | null = 0;
  while (cursor !== null) {
    const page: Awaited<ReturnType<typeof readResults>> = await readResults(db, jobId, { cursor, limit: 5_000 });
    for (const row of page.rows) {
      seen.push(row.index);
      const expected = reference[row.index % reference.length] as Reference;
      const outputs = "outputs" in row ? (row.outputs as { label?: number; probabilities?: number[] }) : null;
      const close = outputs?.label === expected.label && expected.probabilities.every((p, k) => Math.abs(p - (outputs.probabilities?.[k] ?? Number.NaN)) < 1e-5);
      if (!close && wrong.length < 5) wrong.push(row);
    }
    cursor = page.nextCursor;
  }
  expect(wrong).toEqual([]);
  expect(seen.length).toBe(rows);
  expect(seen.every((index, i) => index === i)).toBe(true);
}

/** A pino logger whose JSON lines are kept, to check what an outage looks like in the log. */
function capturedLogger(level = "info") {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n")) if (line) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

function inProcessWorker(env: Record<string, string>, logger: pino.Logger): Promise<RunningWorker> {
  return startWorker(loadWorkerEnv({ ...services.env, MIGRATE_ON_START: "false", ...env }), logger);
}

function throughProxy(url: string, proxy: TcpProxy): string {
  const proxied = new URL(url);
  proxied.hostname = "127.0.0.1";
  proxied.port = String(proxy.port);
  return proxied.toString();
}

/** Batches that wait for their delay, so chunks are in hand for a while (the model itself is fast). */
const SLOW_BATCHES = { ADAPTIVE_BATCHING: "false", MAX_BATCH_ROWS: "100000" };

describe("Postgres goes away mid-job", () => {
  it("holds the chunks back without spending attempts, finishes the job when it is back, every row once, and logs the outage in two lines", async () => {
    const proxy = await startTcpProxy(Number(new URL(services.databaseUrl).port || 5432));
    const { logger, lines } = capturedLogger();
    const worker = await inProcessWorker(
      { DATABASE_URL: throughProxy(services.databaseUrl, proxy), WORKER_CONCURRENCY: "16", MAX_BATCH_DELAY_MS: "100", ...SLOW_BATCHES, TRANSIENT_RETRY_MAX_MS: "400", RECONCILE_INTERVAL_MS: "500" },
      logger,
    );
    try {
      const rows = 6_000;
      const { jobId } = await createIrisJob(rows, 50);
      await started(jobId);
      await proxy.down();
      const during = await findJob(db, tenantId, jobId);
      expect(during?.status).toBe("running");
      expect(during?.succeededRows).toBeLessThan(rows);
      // Long enough for every chunk in flight to fail, be held back and fail again several times
      // (five BullMQ attempts would have been spent in about 15 s of backoff before).
      await sleep(4_000);
      await proxy.up();
      await finished(jobId);
      await expectScoredExactlyOnce(jobId, rows);

      const messages = lines.map((line) => line.msg);
      // Told by the connections: one warning, one info line with counts, nothing per chunk.
      expect(lines.filter((line) => line.msg === "postgres unavailable")).toMatchObject([{ level: 40 }]);
      expect(lines.filter((line) => line.msg.startsWith("postgres is back"))).toMatchObject([{ level: 30, failedAttempts: expect.any(Number) }]);
      expect(lines.filter((line) => line.level >= 40).map((line) => line.msg)).toEqual(["postgres unavailable"]);
      expect(messages).not.toContain("chunk failed");
      expect(lines.filter((line) => line.level >= 50)).toEqual([]);
    } finally {
      await worker.close();
      await proxy.close();
    }
  });
});

describe("Redis goes away mid-job", () => {
  it("resumes by itself when it is back, with nothing lost or scored twice", async () => {
    const proxy = await startTcpProxy(Number(new URL(REDIS_URL).port || 6379));
    const { logger, lines } = capturedLogger();
    // Locks shorter than the outage: the chunks in hand lose them, and are handed out again after it.
    const worker = await inProcessWorker(
      { REDIS_URL: throughProxy(REDIS_URL, proxy), WORKER_CONCURRENCY: "16", MAX_BATCH_DELAY_MS: "100", ...SLOW_BATCHES, STALLED_TAKEOVER_MS: "1500", RECONCILE_INTERVAL_MS: "1000" },
      logger,
    );
    try {
      const rows = 6_000;
      const { jobId } = await createIrisJob(rows, 50);
      await started(jobId);
      await proxy.down();
      await sleep(3_000);
      await proxy.up();
      await finished(jobId, 90_000);
      await expectScoredExactlyOnce(jobId, rows);
      expect(lines.map((line) => line.msg)).not.toContain("chunk failed");
      // The outage is told as such, not as a stream of errors.
      expect(lines.filter((line) => line.level >= 50)).toEqual([]);
      expect(lines.filter((line) => line.msg === "redis unavailable")).toMatchObject([{ level: 40 }]);
      expect(lines.filter((line) => line.msg.startsWith("redis is back"))).toMatchObject([{ level: 30 }]);
    } finally {
      await worker.close();
      await proxy.close();
    }
  });
});

describe("a worker stopped while Redis is away", () => {
  it("stops every part in order without waiting for Redis; what it held runs again once Redis is back, every row once", async () => {
    const proxy = await startTcpProxy(Number(new URL(REDIS_URL).port || 6379));
    const { logger, lines } = capturedLogger();
    const worker = await inProcessWorker(
      { REDIS_URL: throughProxy(REDIS_URL, proxy), WORKER_CONCURRENCY: "16", MAX_BATCH_DELAY_MS: "20000", ...SLOW_BATCHES, SHUTDOWN_GRACE_MS: "500", STALLED_TAKEOVER_MS: "1500" },
      logger,
    );
    let rest: RunningWorker | undefined;
    try {
      const rows = 400;
      const { jobId } = await createIrisJob(rows, 50);
      await waitFor("the worker to hold chunks", async () => (await queue.getActive()).length > 0, 30_000, 20);
      await proxy.down();
      // Resolves while Redis is still away: no part waits for it (the heartbeat's removal used to,
      // on a connection that holds commands until Redis is back, and so held up all the others).
      await worker.close();
      expect(lines.find((line) => line.msg === "worker stopped")).toMatchObject({
        failed: [],
        stopped: ["predict requests", "heartbeat", "periodic tasks", "chunks in hand", "shadow rows", "alias guard", "webhooks", "metrics", "queue", "batchers", "models", "redis", "postgres"],
      });
      expect(lines.find((line) => line.msg.startsWith("Redis does not answer: left this worker's /readyz entry"))).toBeDefined();
      await proxy.up();
      rest = await inProcessWorker({ RECONCILE_INTERVAL_MS: "500", STALLED_TAKEOVER_MS: "1500" }, capturedLogger().logger);
      await finished(jobId, 60_000);
      await expectScoredExactlyOnce(jobId, rows);
    } finally {
      await rest?.close();
      await proxy.close();
    }
  });
});

describe("Redis flushed mid-job", () => {
  it("the reconciler enqueues what Postgres still holds; the queue jobs that vanished under the worker are news, not errors", async () => {
    const { logger, lines } = capturedLogger();
    const worker = await inProcessWorker({ WORKER_CONCURRENCY: "16", MAX_BATCH_DELAY_MS: "100", ...SLOW_BATCHES, RECONCILE_INTERVAL_MS: "500" }, logger);
    try {
      const rows = 6_000;
      const { jobId } = await createIrisJob(rows, 50);
      await started(jobId);
      // FLUSHALL, but of this test's keys only (the Redis is shared).
      const keys = await redis.keys(`${services.queuePrefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      await finished(jobId, 60_000);
      await expectScoredExactlyOnce(jobId, rows);
      expect(lines.filter((line) => line.level >= 50)).toEqual([]);
      expect(lines.filter((line) => line.msg.includes("changed hands under this worker")).length).toBeLessThanOrEqual(1);
      expect(lines.find((line) => line.msg.startsWith("re-enqueued chunks"))).toMatchObject({ missing: expect.any(Number) });
    } finally {
      await worker.close();
    }
  });
});

describe("a long chunk", () => {
  it("keeps its lock while it is scored for many times the lock's length: no takeover, scored once", async () => {
    const { logger, lines } = capturedLogger();
    // A lock of 2 s renewed every 500 ms, and one 100k-row chunk that takes several times that (batches of 16 rows).
    const worker = await inProcessWorker({ STALLED_TAKEOVER_MS: "3000", MAX_BATCH_ROWS: "16", MAX_BATCH_DELAY_MS: "0" }, logger);
    try {
      const rows = 100_000;
      const { jobId } = await createIrisJob(rows, rows);
      const startedAt = Date.now();
      await finished(jobId, 120_000);
      const tookMs = Date.now() - startedAt;
      await expectScoredExactlyOnce(jobId, rows);
      expect(lines.filter((line) => line.msg.startsWith("took over chunks") || line.msg.includes("changed hands"))).toEqual([]);
      console.info(`one 100k-row chunk in batches of 16: ${(tookMs / 1000).toFixed(1)} s under a 2 s lock`);
    } finally {
      await worker.close();
    }
  }, 180_000);
});

describe("a chunk left in BullMQ's failed set", () => {
  /**
   * Fails a queue job as a worker would after its attempts ran out, with nothing recorded in
   * Postgres (or, with "completed", completes it without its chunks being scored).
   */
  async function failQueueJob(queueJobId: string, end: "failed" | "completed" = "failed"): Promise<void> {
    const taker = new Worker(queue.name, null, { connection: redis.duplicate(), prefix: services.queuePrefix, autorun: false });
    const others = [];
    try {
      for (;;) {
        const job = await taker.getNextJob("test-token", { block: false });
        if (!job) throw new Error(`queue job ${queueJobId} was not found waiting`);
        if (job.id === queueJobId) {
          if (end === "failed") await job.moveToFailed(new UnrecoverableError("gave up (as before transient errors were told apart)"), "test-token");
          else await job.moveToCompleted(undefined, "test-token", false);
          return;
        }
        others.push(job);
      }
    } finally {
      // The others go back to the queue as they were.
      for (const job of others) await job.moveToDelayed(Date.now(), "test-token");
      await taker.close();
    }
  }

  it("is brought back by the reconciler, once however many workers reconcile at once, and its job finishes", async () => {
    const { jobId, chunks } = await createIrisJob(12, 4);
    const victim = chunks[1]?.chunkId as string;
    await failQueueJob(victim);
    expect(await queue.getJobState(victim)).toBe("failed");
    // A shared queue job (several small jobs' chunks) failed whole.
    const shared = (
      await createJobs(
        db,
        Array.from({ length: 3 }, (_, i) => ({ tenantId, modelVersionId, rows: [{ features: features[i] as number[] }], chunkRows: 4, priority: "interactive" as const })),
        { maxRows: 4, maxChunks: 3 },
      )
    ).map((created) => (created as CreatedJob));
    const sharedId = shared[0]?.chunks[0]?.queueJobId as string;
    await enqueueChunks(
      queue,
      shared.flatMap(({ job, chunks: own }) => own.map((chunk) => ({ chunkId: chunk.id, jobId: job.id, modelVersionId, seq: chunk.seq, priority: job.priority, queueJobId: chunk.queueJobId }))),
    );
    await failQueueJob(sharedId);
    expect(await queue.getJobState(sharedId)).toBe("failed");

    // Three workers' reconcilers at once: each queue job comes back once.
    const passes = await Promise.all([0, 1, 2].map(() => reconcileOnce(db, queue, 0)));
    expect(passes.reduce((sum, pass) => sum + pass.failed, 0)).toBeGreaterThanOrEqual(4);
    for (const id of [victim, sharedId]) expect(["waiting", "prioritized"]).toContain(await queue.getJobState(id));
    expect((await queue.getJob(sharedId))?.data.chunks).toHaveLength(3);

    const { logger } = capturedLogger();
    const worker = await inProcessWorker({ RECONCILE_INTERVAL_MS: "300" }, logger);
    try {
      await finished(jobId);
      await expectScoredExactlyOnce(jobId, 12);
      for (const { job } of shared) expect(await finished(job.id)).toMatchObject({ status: "succeeded", succeededRows: 1, failedRows: 0 });
    } finally {
      await worker.close();
    }
  });

  it("a queue job completed in Redis while its chunk is unfinished in Postgres is brought back too", async () => {
    const { jobId, chunks } = await createIrisJob(8, 4, { enqueue: false });
    const [first, second] = chunks as [(typeof chunks)[number], (typeof chunks)[number]];
    await enqueueChunks(queue, [first]);
    // Kept when completed (the service's own queue jobs are removed then), as a completion whose chunk was skipped.
    await queue.add("score", { modelVersionId, chunks: [{ chunkId: second.chunkId, jobId }] }, { jobId: second.chunkId, removeOnComplete: false });
    await failQueueJob(second.chunkId, "completed");
    expect(await queue.getJobState(second.chunkId)).toBe("completed");
    expect((await reconcileOnce(db, queue, 0)).completed).toBe(1);
    const { logger } = capturedLogger();
    const worker = await inProcessWorker({ RECONCILE_INTERVAL_MS: "300" }, logger);
    try {
      await finished(jobId, 30_000);
      await expectScoredExactlyOnce(jobId, 8);
    } finally {
      await worker.close();
    }
  });

  it("is recovered by a running worker's reconciler without help", async () => {
    const { jobId, chunks } = await createIrisJob(8, 4);
    await failQueueJob(chunks[1]?.chunkId as string);
    const { logger, lines } = capturedLogger();
    const worker = await inProcessWorker({ RECONCILE_INTERVAL_MS: "300" }, logger);
    try {
      await finished(jobId, 30_000);
      await expectScoredExactlyOnce(jobId, 8);
      expect(lines.find((line) => line.msg.startsWith("re-enqueued chunks"))).toMatchObject({ failed: 1 });
    } finally {
      await worker.close();
    }
  });
});

/** Worker processes of this file; each describe that starts some stops them after its tests. */
const processes: ServiceProcess[] = [];
const output = new Map<ServiceProcess, string>();
const TAKEOVER_MS = 3_000;

function startWorkerProcess(env: Record<string, string>): ServiceProcess {
  const service = startProcess(
    "worker",
    WORKER_MAIN,
    { ...services.env, MIGRATE_ON_START: "false", LOG_LEVEL: "info", STALLED_TAKEOVER_MS: String(TAKEOVER_MS), RECONCILE_INTERVAL_MS: "1000", ...env },
    "pipe",
  );
  output.set(service, "");
  const keep = (chunk: Buffer) => output.set(service, (output.get(service) ?? "") + chunk.toString());
  service.child.stdout?.on("data", keep);
  service.child.stderr?.on("data", keep);
  processes.push(service);
  return service;
}

const stopWorkerProcesses = () => Promise.all(processes.splice(0).map((service) => stopProcess(service, 5_000)));

const logLines = (service: ServiceProcess): LogLine[] =>
  (output.get(service) ?? "")
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      try {
        return JSON.parse(line) as LogLine;
      } catch {
        return { level: 60, msg: `not a JSON line: ${line}` };
      }
    });

const workerIds = async () => (await listWorkers(redis, services.queuePrefix)).map((worker) => worker.id);
const isOf = (service: ServiceProcess) => (id: string | undefined) => id?.split(":")[1] === String(service.child.pid);
/** Waits until the process has said it is ready (its heartbeat is in Redis). */
const ready = (service: ServiceProcess) => waitFor(`worker ${service.child.pid} to be ready`, async () => (await workerIds()).some(isOf(service)), 60_000, 100);
/** Waits until the process holds at least one chunk (BullMQ's processedBy names it). */
const holdsChunks = (service: ServiceProcess) =>
  waitFor(`worker ${service.child.pid} to hold chunks`, async () => (await queue.getActive()).filter((job) => isOf(service)(job.processedBy)).length, 30_000, 20);

describe("worker processes", () => {
  afterAll(stopWorkerProcesses);

  it("a worker killed with SIGKILL: its chunks run again on a live worker within the takeover bound, logged, and /readyz forgets it", async () => {
    // The victim holds its chunks for seconds (its batches wait to fill); the survivor is quick.
    const victim = startWorkerProcess({ WORKER_CONCURRENCY: "4", MAX_BATCH_DELAY_MS: "20000", ...SLOW_BATCHES });
    const survivor = startWorkerProcess({ WORKER_CONCURRENCY: "4" });
    await Promise.all([ready(victim), ready(survivor)]);
    const rows = 2_000;
    const { jobId } = await createIrisJob(rows, 50);
    const held = await holdsChunks(victim);
    victim.child.kill("SIGKILL");
    const killedAt = Date.now();
    await victim.exited;

    const job = await finished(jobId, 30_000);
    const recoveredMs = Date.now() - killedAt;
    await expectScoredExactlyOnce(jobId, rows);
    expect(job.status).toBe("succeeded");
    const takeover = await waitFor(
      "the takeover to be logged",
      async () => logLines(survivor).find((line) => line.msg.startsWith("took over chunks")),
      10_000,
    );
    expect(takeover).toMatchObject({ level: 40, queueJobs: expect.any(Number) });
    expect(takeover.queueJobs as number).toBeGreaterThanOrEqual(1);
    // The chunks taken over were counted in Postgres as they started again; the others not at all.
    const { rows: restarts } = await db.pool.query<{ restarts: number; chunks: number }>(
      `SELECT restarts, count(*)::int AS chunks FROM job_chunks WHERE job_id = $1 GROUP BY restarts ORDER BY restarts`,
      [jobId],
    );
    expect(restarts.every((row) => row.restarts <= 1)).toBe(true);
    expect(restarts.find((row) => row.restarts === 1)?.chunks).toBeGreaterThanOrEqual(1);
    await waitFor("the dead worker to leave the list", async () => !(await workerIds()).some(isOf(victim)), TAKEOVER_MS + 5_000, 100);
    expect((await workerIds()).some(isOf(survivor))).toBe(true);
    console.info(`kill -9 of a worker holding ${held} queue jobs: job finished ${(recoveredMs / 1000).toFixed(1)} s after the kill (takeover bound ${TAKEOVER_MS / 1000} s)`);
  });

  it("a worker stopped with SIGTERM while busy: finishes what it holds, exits 0, nothing lost or scored twice", async () => {
    const busy = startWorkerProcess({ WORKER_CONCURRENCY: "4", MAX_BATCH_DELAY_MS: "1500", ...SLOW_BATCHES });
    await ready(busy);
    const rows = 2_000;
    const { jobId } = await createIrisJob(rows, 50);
    await holdsChunks(busy);
    busy.child.kill("SIGTERM");
    expect(await busy.exited).toBe(0);
    const lines = logLines(busy);
    expect(lines.find((line) => line.msg === "worker stopped")).toMatchObject({ failed: [], stopped: expect.arrayContaining(["chunks in hand", "postgres", "redis"]) });
    expect(lines.filter((line) => line.level >= 50)).toEqual([]);
    // Off the list at once, not when its heartbeat goes stale.
    expect((await workerIds()).some(isOf(busy))).toBe(false);
    // The survivor of the previous test scores the rest.
    await finished(jobId, 30_000);
    await expectScoredExactlyOnce(jobId, rows);
  });
});

describe("stalls are never a chunk's failure", () => {
  afterAll(stopWorkerProcesses);

  it("a queue job failed by BullMQ's stall limit (a worker that checks with a lower limit, as before) is enqueued again, not failed", async () => {
    const { jobId, chunks } = await createIrisJob(8, 8);
    const queueJobId = chunks[0]?.chunkId as string;
    // A worker as they were configured before (maxStalledCount 3; 0 here, to need one stall) takes
    // the chunk and dies holding it: its lock is never renewed, and its own stalled check hands the
    // queue job back marked to fail ("job stalled more than allowable limit").
    const old = new Worker(queue.name, null, { connection: redis.duplicate(), prefix: services.queuePrefix, autorun: false, lockDuration: 200, stalledInterval: 100, maxStalledCount: 0 });
    try {
      const taken = await old.getNextJob("dead-worker-token", { block: false });
      expect(taken?.id).toBe(queueJobId);
      await old.startStalledCheckTimer();
      await waitFor("BullMQ to mark the queue job to fail for stalls", async () => (await queue.getJob(queueJobId))?.deferredFailure, 10_000);
    } finally {
      await old.close();
    }
    const { logger, lines } = capturedLogger();
    const worker = await inProcessWorker({ RECONCILE_INTERVAL_MS: "300" }, logger);
    try {
      await finished(jobId, 30_000);
      await expectScoredExactlyOnce(jobId, 8);
      expect(lines.find((line) => line.msg.startsWith("BullMQ failed a chunk's queue job for stalls"))).toMatchObject({ level: 40, queueJobId });
      expect(lines.find((line) => line.msg.startsWith("re-enqueued chunks"))).toMatchObject({ failed: 1 });
      expect(lines.map((line) => line.msg)).not.toContain("chunk failed");
    } finally {
      await worker.close();
    }
  });

  it("a chunk whose every worker dies holding it ends after MAX_CHUNK_STARTS starts, failed with a reason that says so; the stalls before it fail nothing", async () => {
    const MAX_CHUNK_STARTS = 4;
    // Each worker holds the chunk for seconds (its batch waits to fill) and is killed holding it:
    // as onnxruntime crashing on the chunk's rows would. Four kills, one more than BullMQ's old
    // stall limit (3), which used to fail the rows at the next start.
    const holding = { WORKER_CONCURRENCY: "4", MAX_BATCH_DELAY_MS: "20000", ...SLOW_BATCHES, STALLED_TAKEOVER_MS: "1000", MAX_CHUNK_STARTS: String(MAX_CHUNK_STARTS) };
    const rows = 10;
    const { jobId, chunks } = await createIrisJob(rows, rows);
    const chunkId = chunks[0]?.chunkId as string;
    for (let kill = 1; kill <= MAX_CHUNK_STARTS; kill++) {
      const victim = startWorkerProcess(holding);
      await holdsChunks(victim);
      // Killed once it has started the chunk (its job is running), which counts in Postgres each
      // start after a stall: the first start is not one.
      await waitFor(
        `start ${kill} to be counted`,
        async () => {
          const { rows: [chunk] } = await db.pool.query<{ restarts: number; status: string }>(
            `SELECT c.restarts, j.status FROM job_chunks c JOIN jobs j ON j.id = c.job_id WHERE c.id = $1`,
            [chunkId],
          );
          return chunk?.status === "running" && chunk.restarts === kill - 1;
        },
        30_000,
        20,
      );
      victim.child.kill("SIGKILL");
      await victim.exited;
    }
    expect(await findJob(db, tenantId, jobId)).toMatchObject({ status: "running", failedRows: 0 });

    // The fifth start: the worker fails the chunk instead of running it.
    const last = startWorkerProcess({ STALLED_TAKEOVER_MS: "1000", MAX_CHUNK_STARTS: String(MAX_CHUNK_STARTS) });
    const job = await finished(jobId, 30_000);
    const reason = `started ${MAX_CHUNK_STARTS + 1} times without finishing; every worker that took it died (a crash in the model?)`;
    expect(job).toMatchObject({ status: "failed", succeededRows: 0, failedRows: rows });
    const { rows: results } = await readResults(db, jobId, { cursor: 0, limit: 100 });
    expect(results).toHaveLength(rows);
    for (const row of results) expect(row).toMatchObject({ error: { code: "chunk_failed", message: reason } });
    const said = await waitFor("the failure to be logged", async () => logLines(last).find((line) => line.msg === `chunk failed: ${reason}`), 10_000);
    expect(said).toMatchObject({ level: 50, chunkId, jobId, starts: MAX_CHUNK_STARTS + 1 });
  });
});
