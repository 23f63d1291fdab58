// The worker in process on the real Postgres, Redis and onnxruntime, fed by writing jobs straight
// into Postgres (as the API would, but without its validation) and enqueueing their chunks.
import { cancelJob, completeChunks, createJob, createJobs, startChunks, updateModelVersionBatching, type Database, connectDatabase, readResults, upsertApiKey, createModelVersion, findJob, type JobRecord, type CreatedJob } from "@coalesce/db";
import { createModelStore, inspectModel, packRows } from "@coalesce/models";
import { createPredictQueue, createRedisConnection, enqueueChunks, type PredictQueue } from "@coalesce/queue";
import type { TensorRow, TensorSpec } from "@coalesce/contracts";
import type { RedisClient } from "@coalesce/queue";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadWorkerEnv } from "../../apps/worker/src/env.ts";
import { startWorker, type RunningWorker } from "../../apps/worker/src/worker.ts";
import { readFeatureCsv, readModel } from "../support/fixtures.ts";
import { createTestServices, REDIS_URL, type TestServices } from "../support/services.ts";

let services: TestServices;
let db: Database;
let redis: RedisClient;
let queue: PredictQueue;
let worker: RunningWorker;
let tenantId: string;
let modelVersionId: string;
let features: number[][];
let inputs: TensorSpec[];

beforeAll(async () => {
  services = await createTestServices();
  db = connectDatabase(services.databaseUrl, { max: 2 });
  redis = createRedisConnection(REDIS_URL);
  queue = createPredictQueue({ connection: redis, prefix: services.queuePrefix });
  ({ tenantId } = await upsertApiKey(db.prisma, { tenantName: "worker-test", name: "k", hash: "worker-test", prefix: "csk_" }));
  const bytes = await readModel("iris");
  const stored = await createModelStore(services.modelStoreDir).put(bytes);
  const signature = await inspectModel(bytes);
  inputs = signature.inputs;
  const { version } = await createModelVersion(db.prisma, { tenantId, name: "iris", ...stored, ...signature });
  modelVersionId = version.id;
  ({ features } = await readFeatureCsv("iris"));
  const env = loadWorkerEnv({ ...services.env, RECONCILE_INTERVAL_MS: "300", BATCHING_REFRESH_MS: "100", MIGRATE_ON_START: "false" });
  worker = await startWorker(env, pino({ level: "silent" }));
});

afterAll(async () => {
  await worker?.close();
  await queue?.close();
  redis?.disconnect();
  await db?.close();
  await services?.cleanup();
});

async function submit(rows: unknown[], options: { enqueue: boolean }): Promise<string> {
  const { job, chunks } = await createJob(db, { tenantId, modelVersionId, rows: rows as TensorRow[], chunkRows: 4, priority: "batch" });
  if (options.enqueue) await enqueueChunks(queue, chunks.map((chunk) => ({ chunkId: chunk.id, jobId: job.id, modelVersionId, seq: chunk.seq, priority: "batch" })));
  return job.id;
}

async function finished(jobId: string): Promise<JobRecord> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const job = await findJob(db, tenantId, jobId);
    if (job && ["succeeded", "failed", "cancelled"].includes(job.status)) return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} is still ${job?.status}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("worker", () => {
  it("scores rows stored packed (as the API stores them) exactly as the same rows stored as JSON", async () => {
    const rows = features.slice(0, 10).map((f) => ({ features: f }));
    const json = await finished(await submit(rows, { enqueue: true }));
    const { job, chunks } = await createJob(db, { tenantId, modelVersionId, rows, chunkRows: 4, priority: "batch", packRows: (r) => packRows(r, inputs) });
    await enqueueChunks(queue, chunks.map((chunk) => ({ chunkId: chunk.id, jobId: job.id, modelVersionId, seq: chunk.seq, priority: "batch" })));
    const packed = await finished(job.id);
    expect(packed).toMatchObject({ status: "succeeded", succeededRows: 10 });
    const page = async (id: string) => (await readResults(db, id, { cursor: 0, limit: 100 })).rows;
    expect(await page(packed.id)).toEqual(await page(json.id));
  });

  it("fails every row of a chunk whose stored rows cannot be read, saying so, without retrying it", async () => {
    const { job, chunks } = await createJob(db, { tenantId, modelVersionId, rows: features.slice(0, 3).map((f) => ({ features: f })), chunkRows: 4, priority: "batch", packRows: (r) => packRows(r, inputs) });
    await db.pool.query(`UPDATE job_chunks SET inputs_packed = $1 WHERE id = $2`, [Buffer.from("not packed rows"), chunks[0]?.id]);
    await enqueueChunks(queue, chunks.map((chunk) => ({ chunkId: chunk.id, jobId: job.id, modelVersionId, seq: chunk.seq, priority: "batch" })));
    expect(await finished(job.id)).toMatchObject({ status: "failed", failedRows: 3 });
    const { rows: results } = await readResults(db, job.id, { cursor: 0, limit: 100 });
    expect(results.map((row) => ("error" in row ? row.error : null))).toEqual(
      Array.from({ length: 3 }, () => ({ code: "chunk_failed", message: expect.stringContaining("stored rows cannot be read") })),
    );
    expect(results[0]).toMatchObject({ error: { message: expect.stringContaining("gave up after 1 attempts") } });
  });

  it("fails a malformed row alone; the rest of its chunk and batch is scored", async () => {
    const rows: unknown[] = features.slice(0, 10).map((f) => ({ features: f }));
    rows[3] = { features: [1, 2, 3] };
    rows[7] = { petals: [1, 2, 3, 4] };
    const job = await finished(await submit(rows, { enqueue: true }));
    expect(job).toMatchObject({ status: "succeeded", totalRows: 10, succeededRows: 8, failedRows: 2 });
    const { rows: results } = await readResults(db, job.id, { cursor: 0, limit: 100 });
    expect(results.map((row) => ("error" in row ? row.error.code : "ok"))).toEqual([
      "ok", "ok", "ok", "invalid_row", "ok", "ok", "ok", "invalid_row", "ok", "ok",
    ]);
    expect(results[3]).toMatchObject({ error: { message: expect.stringContaining("inputs[3].features") } });
  });

  it("marks a job failed when every row failed", async () => {
    const job = await finished(await submit([{ features: [1] }, { features: "x" }], { enqueue: true }));
    expect(job.status).toBe("failed");
    expect(job.error?.code).toBe("all_rows_failed");
    expect(job.failedRows).toBe(2);
  });

  it("scores a job whose chunks never reached Redis (the reconciler enqueues them from Postgres)", async () => {
    const jobId = await submit(features.slice(0, 9).map((f) => ({ features: f })), { enqueue: false });
    const job = await finished(jobId);
    expect(job).toMatchObject({ status: "succeeded", succeededRows: 9 });
  });

  it("writes completions of several chunks together, counting a chunk given twice once", async () => {
    const { job, chunks } = await createJob(db, { tenantId, modelVersionId, rows: features.slice(0, 8).map((f) => ({ features: f })), chunkRows: 4, priority: "batch" });
    const results = Array.from({ length: 4 }, () => ({ outputs: { label: 0 } }));
    const [a, b] = chunks.map((chunk) => chunk.id) as [string, string];
    const statuses = await completeChunks(db, [
      { chunkId: a, jobId: job.id, results },
      { chunkId: a, jobId: job.id, results },
      { chunkId: b, jobId: job.id, results },
    ]);
    expect(statuses.map((s) => s?.status)).toEqual(["succeeded", "succeeded", "succeeded"]);
    expect(await findJob(db, tenantId, job.id)).toMatchObject({ status: "succeeded", succeededRows: 8, failedRows: 0 });
    // Already done: nothing more is counted.
    expect(await completeChunks(db, [{ chunkId: b, jobId: job.id, results }])).toEqual([null]);
    expect((await findJob(db, tenantId, job.id))?.succeededRows).toBe(8);
  });

  it("starts several chunks in one statement: their rows in order, their jobs running, a missing chunk null", async () => {
    const { job, chunks } = await createJob(db, { tenantId, modelVersionId, rows: features.slice(0, 6).map((f) => ({ features: f })), chunkRows: 4, priority: "batch" });
    const [a, b] = chunks.map((chunk) => chunk.id) as [string, string];
    const started = await startChunks(db, [b, "chunk_missing", a]);
    expect(started.map((chunk) => chunk && { id: chunk.id, firstRow: chunk.firstRow, rows: chunk.rowCount, done: chunk.done })).toEqual([
      { id: b, firstRow: 4, rows: 2, done: false },
      null,
      { id: a, firstRow: 0, rows: 4, done: false },
    ]);
    // Written without packRows, as chunks were before rows were packed: JSON rows.
    expect(started[2]?.inputs?.[0]).toEqual({ features: features[0] });
    expect(started[2]?.packedInputs).toBeNull();
    expect(await findJob(db, tenantId, job.id)).toMatchObject({ status: "running" });
  });

  it("counts each chunk once when BullMQ delivers it twice", async () => {
    const { job, chunks } = await createJob(db, { tenantId, modelVersionId, rows: features.slice(0, 4).map((f) => ({ features: f })), chunkRows: 4, priority: "interactive" });
    const chunkId = chunks[0]?.id as string;
    // A second BullMQ job for the same chunk, as a retry after a lost lock would produce.
    await queue.add("score", { modelVersionId, chunks: [{ chunkId, jobId: job.id }] }, { jobId: `${chunkId}-again` });
    await enqueueChunks(queue, [{ chunkId, jobId: job.id, modelVersionId, seq: 0, priority: "interactive" }]);
    const done = await finished(job.id);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const again = await findJob(db, tenantId, job.id);
    expect(done).toMatchObject({ status: "succeeded", succeededRows: 4, failedRows: 0 });
    expect(again).toMatchObject({ succeededRows: 4, failedRows: 0 });
  });
  describe("chunks sharing a queue job", () => {
    const SHARING = { maxRows: 4, maxChunks: 3 };
    const oneRowJobs = (count: number, priority: "interactive" | "batch" = "interactive") =>
      Array.from({ length: count }, (_, i) => ({ tenantId, modelVersionId, rows: [{ features: features[i] as number[] }], chunkRows: 4, priority }));
    const toEnqueue = (created: CreatedJob[]) =>
      created.flatMap(({ job, chunks }) => chunks.map((chunk) => ({ chunkId: chunk.id, jobId: job.id, modelVersionId, seq: chunk.seq, priority: job.priority, queueJobId: chunk.queueJobId })));

    it("groups small chunks written together, up to the row and chunk limits; a chunk alone keeps its own", async () => {
      const created = (await createJobs(db, [...oneRowJobs(4), ...oneRowJobs(1, "batch"), { ...oneRowJobs(1)[0]!, rows: features.slice(0, 3).map((f) => ({ features: f })) }], SHARING)) as CreatedJob[];
      const ids = created.map(({ chunks }) => chunks[0]?.queueJobId ?? null);
      // Three one-row interactive chunks fill a group (maxChunks 3); the fourth starts the next one,
      // which the three-row chunk joins (4 rows = maxRows); the batch-lane chunk is alone.
      expect(ids[0]).toMatch(/^qj_/);
      expect(ids.slice(0, 3)).toEqual([ids[0], ids[0], ids[0]]);
      expect(ids[3]).toMatch(/^qj_/);
      expect(ids[5]).toBe(ids[3]);
      expect(ids[3]).not.toBe(ids[0]);
      expect(ids[4]).toBeNull();
      await Promise.all(created.map(({ job }) => cancelJob(db, tenantId, job.id)));
    });

    it("scores every chunk of a shared queue job, also one that never reached Redis (the reconciler adds it back whole)", async () => {
      const created = (await createJobs(db, oneRowJobs(3), SHARING)) as CreatedJob[];
      const queueJobId = created[0]?.chunks[0]?.queueJobId as string;
      expect(queueJobId).toMatch(/^qj_/);
      // Not enqueued at all: the reconciler finds the group's queue job missing and adds it back whole.
      const jobs = await Promise.all(created.map(({ job }) => finished(job.id)));
      expect(jobs.map((job) => job.status)).toEqual(["succeeded", "succeeded", "succeeded"]);
      expect(jobs.every((job) => job.batchRowsMax !== null)).toBe(true);
    });

    it("cancelling one job leaves the queue job shared with others; its chunk is skipped, the rest are scored", async () => {
      const created = (await createJobs(db, oneRowJobs(3), SHARING)) as CreatedJob[];
      const [first, second, third] = created.map(({ job }) => job.id) as [string, string, string];
      const cancelled = await cancelJob(db, tenantId, second);
      // The shared queue job cannot be removed for one of its chunks.
      expect(cancelled?.queuedChunkIds).toEqual([]);
      await enqueueChunks(queue, toEnqueue(created));
      expect((await queue.getJob(created[0]?.chunks[0]?.queueJobId as string))?.data.chunks).toHaveLength(3);
      expect((await finished(first)).status).toBe("succeeded");
      expect((await finished(third)).status).toBe("succeeded");
      const skipped = await findJob(db, tenantId, second);
      expect(skipped).toMatchObject({ status: "cancelled", succeededRows: 0, failedRows: 0 });
      expect((await readResults(db, second, { cursor: 0, limit: 10 })).rows).toEqual([]);
    });
  });
  it("batches a version by its own limits, and picks up a change to them while running", async () => {
    const bytes = await readModel("iris");
    const stored = await createModelStore(services.modelStoreDir).put(bytes);
    const { version } = await createModelVersion(db.prisma, { tenantId, name: "iris-limited", ...stored, ...(await inspectModel(bytes)), batching: { maxBatchRows: 2 } });
    const run = async () => {
      const { job, chunks } = await createJob(db, { tenantId, modelVersionId: version.id, rows: features.slice(0, 12).map((f) => ({ features: f })), chunkRows: 4, priority: "batch" });
      await enqueueChunks(queue, chunks.map((chunk) => ({ chunkId: chunk.id, jobId: job.id, modelVersionId: version.id, seq: chunk.seq, priority: "batch" })));
      return finished(job.id);
    };
    // Chunks of 4 rows hand the batcher more rows than the limit at once, so runs are exactly the limit.
    expect(await run()).toMatchObject({ status: "succeeded", succeededRows: 12, batchRowsMax: 2 });
    await updateModelVersionBatching(db, tenantId, "iris-limited", 1, { maxBatchRows: 3 });
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await run()).toMatchObject({ status: "succeeded", succeededRows: 12, batchRowsMax: 3 });
  });
});
