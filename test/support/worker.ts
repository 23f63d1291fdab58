import type { TensorSpec } from "@coalesce/contracts";
import { connectDatabase, createJob, createModelVersion, upsertApiKey, type Database } from "@coalesce/db";
import { createModelStore, inspectModel, packRows } from "@coalesce/models";
import { createPredictQueue, createRedisConnection, enqueueChunks, type PredictQueue, type RedisClient } from "@coalesce/queue";
import pino from "pino";
import { afterAll, beforeAll } from "vitest";
import { loadWorkerEnv } from "../../apps/worker/src/env.ts";
import { startWorker, type RunningWorker } from "../../apps/worker/src/worker.ts";
import { readFeatureCsv, readModel } from "./fixtures.ts";
import { createTestServices, REDIS_URL, type TestServices } from "./services.ts";

/** A worker in this process on the test's own services; `env` overrides its settings. */
export function startTestWorker(services: TestServices, env: Record<string, string> = {}): Promise<RunningWorker> {
  return startWorker(loadWorkerEnv({ ...services.env, MIGRATE_ON_START: "false", ...env }), pino({ level: "silent" }));
}

/** A tenant with the iris model registered straight in Postgres, for tests that drive a worker without an API. */
export type IrisWorkerSuite = {
  services: TestServices;
  db: Database;
  redis: RedisClient;
  queue: PredictQueue;
  tenantId: string;
  modelVersionId: string;
  inputs: TensorSpec[];
  features: number[][];
};

/** Registers the hooks that make an IrisWorkerSuite (filled in by beforeAll) and clean it up after. */
export function useIrisWorkerSuite(tenantName: string): IrisWorkerSuite {
  const suite = {} as IrisWorkerSuite;
  beforeAll(async () => {
    suite.services = await createTestServices();
    suite.db = connectDatabase(suite.services.databaseUrl, { max: 2 });
    suite.redis = createRedisConnection(REDIS_URL);
    suite.queue = createPredictQueue({ connection: suite.redis, prefix: suite.services.queuePrefix });
    ({ tenantId: suite.tenantId } = await upsertApiKey(suite.db.prisma, { tenantName, name: "k", hash: tenantName, prefix: "csk_" }));
    const bytes = await readModel("iris");
    const stored = await createModelStore(suite.services.modelStoreDir).put(bytes);
    const signature = await inspectModel(bytes);
    suite.inputs = signature.inputs;
    ({ version: { id: suite.modelVersionId } } = await createModelVersion(suite.db.prisma, { tenantId: suite.tenantId, name: "iris", ...stored, ...signature }));
    ({ features: suite.features } = await readFeatureCsv("iris"));
  });
  afterAll(async () => {
    await suite.queue?.close();
    suite.redis?.disconnect();
    await suite.db?.close();
    await suite.services?.cleanup();
  });
  return suite;
}

/** Writes a batch-lane job of `rows` iris rows in `chunkRows`-row chunks and queues it (as the API would); returns its id. */
export async function submitIrisJob(suite: IrisWorkerSuite, rows: number, chunkRows: number): Promise<string> {
  const { job, chunks } = await createJob(suite.db, {
    tenantId: suite.tenantId,
    modelVersionId: suite.modelVersionId,
    rows: Array.from({ length: rows }, (_, i) => ({ features: suite.features[i % suite.features.length] as number[] })),
    chunkRows,
    priority: "batch",
    packRows: (r) => packRows(r, suite.inputs),
  });
  await enqueueChunks(suite.queue, chunks.map((chunk) => ({ chunkId: chunk.id, jobId: job.id, modelVersionId: suite.modelVersionId, seq: chunk.seq, priority: "batch" as const })));
  return job.id;
}
