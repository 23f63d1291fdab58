// The worker in process on the real Postgres, Redis and onnxruntime, fed by writing jobs straight
// into Postgres (as the API would, but without its validation) and enqueueing their chunks.
import { completeChunks, createJob, startChunks, type Database, connectDatabase, readResults, upsertApiKey, createModelVersion, findJob, type JobRecord } from "@coalesce/db";
import { createModelStore, inspectModel } from "@coalesce/models";
import { createPredictQueue, createRedisConnection, enqueueChunks, type PredictQueue } from "@coalesce/queue";
import type { TensorRow } from "@coalesce/contracts";
import type { Redis } from "ioredis";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadWorkerEnv } from "../../apps/worker/src/env.ts";
import { startWorker, type RunningWorker } from "../../apps/worker/src/worker.ts";
import { readFeatureCsv, readModel } from "../support/fixtures.ts";
import { createTestServices, REDIS_URL, type TestServices } from "../support/services.ts";

let services: TestServices;
let db: Database;
let redis: Redis;
let queue: PredictQueue;
let worker: RunningWorker;
let tenantId: string;
let modelVersionId: string;
let features: number[][];

beforeAll(async () => {
  services = await createTestServices();
  db = connectDatabase(services.databaseUrl, { max: 2 });
  redis = createRedisConnection(REDIS_URL);
  queue = createPredictQueue({ connection: redis, prefix: services.queuePrefix });
  ({ tenantId } = await upsertApiKey(db.prisma, { tenantName: "worker-test", name: "k", hash: "worker-test", prefix: "csk_" }));
  const bytes = await readModel("iris");
  const stored = await createModelStore(services.modelStoreDir).put(bytes);
  const signature = await inspectModel(bytes);
  const { version } = await createModelVersion(db.prisma, { tenantId, name: "iris", ...stored, ...signature });
  modelVersionId = version.id;
  ({ features } = await readFeatureCsv("iris"));
  const env = loadWorkerEnv({ ...services.env, RECONCILE_INTERVAL_MS: "300", MIGRATE_ON_START: "false" });
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
  const { job, chunkIds } = await createJob(db, { tenantId, modelVersionId, rows: rows as TensorRow[], chunkRows: 4, priority: "batch" });
  if (options.enqueue) await enqueueChunks(queue, chunkIds.map((chunkId, seq) => ({ chunkId, jobId: job.id, modelVersionId, seq, priority: "batch" })));
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
    const { job, chunkIds } = await createJob(db, { tenantId, modelVersionId, rows: features.slice(0, 8).map((f) => ({ features: f })), chunkRows: 4, priority: "batch" });
    const results = Array.from({ length: 4 }, () => ({ outputs: { label: 0 } }));
    const [a, b] = chunkIds as [string, string];
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
    const { job, chunkIds } = await createJob(db, { tenantId, modelVersionId, rows: features.slice(0, 6).map((f) => ({ features: f })), chunkRows: 4, priority: "batch" });
    const [a, b] = chunkIds as [string, string];
    const started = await startChunks(db, [b, "chunk_missing", a]);
    expect(started.map((chunk) => chunk && { id: chunk.id, firstRow: chunk.firstRow, rows: chunk.inputs.length, done: chunk.done })).toEqual([
      { id: b, firstRow: 4, rows: 2, done: false },
      null,
      { id: a, firstRow: 0, rows: 4, done: false },
    ]);
    expect(started[2]?.inputs[0]).toEqual({ features: features[0] });
    expect(await findJob(db, tenantId, job.id)).toMatchObject({ status: "running" });
  });

  it("counts each chunk once when BullMQ delivers it twice", async () => {
    const { job, chunkIds } = await createJob(db, { tenantId, modelVersionId, rows: features.slice(0, 4).map((f) => ({ features: f })), chunkRows: 4, priority: "interactive" });
    const payload = { chunkId: chunkIds[0] as string, jobId: job.id, modelVersionId };
    // A second BullMQ job for the same chunk, as a retry after a lost lock would produce.
    await queue.add("score", payload, { jobId: `${payload.chunkId}-again` });
    await enqueueChunks(queue, [{ ...payload, seq: 0, priority: "interactive" }]);
    const done = await finished(job.id);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const again = await findJob(db, tenantId, job.id);
    expect(done).toMatchObject({ status: "succeeded", succeededRows: 4, failedRows: 0 });
    expect(again).toMatchObject({ succeededRows: 4, failedRows: 0 });
  });
});
