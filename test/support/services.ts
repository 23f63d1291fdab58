import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createApp } from "../../apps/api/src/app.ts";
import { hashApiKey } from "../../apps/api/src/auth/api-keys.ts";
import type { ApiDeps } from "../../apps/api/src/context.ts";
import { createJobWriter } from "../../apps/api/src/ingest/job-writer.ts";
import { createApiMetrics } from "../../apps/api/src/metrics.ts";
import { PredictService, type PredictSettings } from "../../apps/api/src/predict/service.ts";
import { connectDatabase, DEFAULT_DATABASE_URL, migrate, upsertApiKey, type Database } from "@coalesce/db";
import { createModelStore } from "@coalesce/models";
import { createPredictQueue, createRedisConnection, DEFAULT_REDIS_URL, JobFinishedEvents } from "@coalesce/queue";
import pino from "pino";
import pg from "pg";

/** Tests share one database and isolate by schema; the CI and dev machines trust local connections. */
const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? DEFAULT_DATABASE_URL.replace(/\/coalesce$/, "/coalesce_test");
export const REDIS_URL = process.env.REDIS_URL ?? DEFAULT_REDIS_URL;

/** Webhook receivers in tests listen on loopback, over http. */
export const TEST_WEBHOOK_POLICY = { allowHttp: true, allowlist: ["127.0.0.0/8", "::1/128"] };
export const TEST_WEBHOOK_ENV = { WEBHOOK_ALLOW_HTTP: "true", WEBHOOK_ALLOWLIST: TEST_WEBHOOK_POLICY.allowlist.join(",") };

export const FIXTURES = path.resolve(import.meta.dirname, "../../fixtures");

/**
 * A private corner of the real services for one test file: its own Postgres schema (migrated),
 * its own BullMQ prefix and model store directory. `cleanup` drops them all.
 */
export type TestServices = {
  databaseUrl: string;
  schema: string;
  queuePrefix: string;
  modelStoreDir: string;
  /** Environment for API and worker processes started by the test. */
  env: Record<string, string>;
  cleanup(): Promise<void>;
};

export async function createTestServices(): Promise<TestServices> {
  const id = randomBytes(5).toString("hex");
  const schema = `test_${id}`;
  const url = new URL(TEST_DATABASE_URL);
  url.searchParams.set("schema", schema);
  const databaseUrl = url.toString();
  await migrate({ databaseUrl });
  const queuePrefix = `coalesce-test-${id}`;
  const modelStoreDir = await mkdtemp(path.join(tmpdir(), "coalesce-models-"));
  return {
    databaseUrl,
    schema,
    queuePrefix,
    modelStoreDir,
    env: {
      DATABASE_URL: databaseUrl,
      REDIS_URL,
      QUEUE_PREFIX: queuePrefix,
      MODEL_STORE_DIR: modelStoreDir,
      LOG_LEVEL: "warn",
      // Several workers may run at once in tests: each takes a free port for /metrics.
      METRICS_PORT: "0",
    },
    async cleanup() {
      const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
      const redis = createRedisConnection(REDIS_URL);
      const keys = await redis.keys(`${queuePrefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
      await rm(modelStoreDir, { recursive: true, force: true });
    },
  };
}

export type TestApi = {
  app: ReturnType<typeof createApp>;
  deps: ApiDeps;
  db: Database;
  /** Creates a tenant with a key; returns the Authorization header value. */
  createTenant(name: string): Promise<string>;
  close(): Promise<void>;
};

/** The API app in process, for `app.request(...)`, on the test's own services. */
export function createTestApi(services: TestServices, limits: Partial<ApiDeps["limits"]> = {}, predictSettings: Partial<PredictSettings> = {}): TestApi {
  const db = connectDatabase(services.databaseUrl, { max: 4 });
  const redis = createRedisConnection(REDIS_URL);
  const queue = createPredictQueue({ connection: redis, prefix: services.queuePrefix });
  const metrics = createApiMetrics(queue, redis, services.queuePrefix, db);
  const predict = new PredictService({
    redis,
    cacheRedis: redis,
    prefix: services.queuePrefix,
    metrics,
    logger: pino({ level: "silent" }),
    settings: { timeoutMs: 10_000, maxRows: 1024, maxBacklogRows: 16_384, cache: { ttlSeconds: 300, maxEntryBytes: 64 * 1024 }, ...predictSettings },
  });
  const deps: ApiDeps = {
    db,
    redis,
    queue,
    metrics,
    predict,
    jobWriter: createJobWriter(db, queue, pino({ level: "silent" })),
    jobEvents: new JobFinishedEvents(redis, services.queuePrefix),
    queuePrefix: services.queuePrefix,
    // Tests run their webhook receivers on loopback over http.
    webhookPolicy: TEST_WEBHOOK_POLICY,
    modelStore: createModelStore(services.modelStoreDir),
    logger: pino({ level: "silent" }),
    limits: { chunkRows: 64, maxJobRows: 10_000, maxBodyBytes: 8 * 1024 * 1024, maxModelBytes: 32 * 1024 * 1024, maxUploadBytes: 256 * 1024 * 1024, ...limits },
  };
  return {
    app: createApp(deps),
    deps,
    db,
    async createTenant(name) {
      const secret = `csk_test_${randomBytes(12).toString("hex")}`;
      await upsertApiKey(db.prisma, { tenantName: `${name}-${randomBytes(3).toString("hex")}`, name, hash: hashApiKey(secret), prefix: secret.slice(0, 8) });
      return `Bearer ${secret}`;
    },
    async close() {
      await deps.queue.close();
      deps.jobEvents.close();
      predict.close();
      redis.disconnect();
      await db.close();
    },
  };
}
