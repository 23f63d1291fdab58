import { connectDatabase, migrate, upsertApiKey } from "@coalesce/db";
import { createModelStore } from "@coalesce/models";
import { createPredictQueue, createRedisConnection, JobFinishedEvents } from "@coalesce/queue";
import { webhookPolicyFromEnv } from "@coalesce/webhooks";
import { serve, type ServerType } from "@hono/node-server";
import { createServer as createHttpsServer } from "node:https";
import type { Server as HttpServer } from "node:http";
import type { Logger } from "pino";
import { createApp } from "./app.ts";
import { hashApiKey } from "./auth/api-keys.ts";
import { jwtSettingsFromEnv, JwtVerifier } from "./auth/jwt.ts";
import { DEFAULT_CSV_LIMITS } from "./ingest/csv-guard.ts";
import { createJobWriter } from "./ingest/job-writer.ts";
import { createApiMetrics } from "./metrics.ts";
import { serveMetricsPort, type MetricsServer } from "./metrics-endpoint.ts";
import { PredictService } from "./predict/service.ts";
import { RateLimits } from "./limits/rate-limits.ts";
import type { ApiDeps } from "./context.ts";
import { readTlsFiles, type ApiEnv } from "./env.ts";

export type RunningApi = {
  port: number;
  /** Where /metrics is served when API_METRICS_PORT is set; null: on `port`. */
  metricsPort: number | null;
  close(): Promise<void>;
};

/** Connects everything the API needs from its environment and starts listening. */
export async function startApi(env: ApiEnv, logger: Logger): Promise<RunningApi> {
  if (env.MIGRATE_ON_START) await migrate({ databaseUrl: env.DIRECT_DATABASE_URL ?? env.DATABASE_URL, log: (message) => logger.info(message) });
  const db = connectDatabase(env.DATABASE_URL, {
    connectTimeoutMs: env.DATABASE_CONNECT_TIMEOUT_MS,
    queryTimeoutMs: env.DATABASE_QUERY_TIMEOUT_MS || undefined,
    logger,
  });
  await db.warmUp();
  // Fail fast: a request answers (503, or 202 for a job the reconciler will queue) while Redis is
  // away instead of waiting for it; Postgres is the system of record.
  const redis = createRedisConnection(env.REDIS_URL, { failFast: true, logger });
  const queue = createPredictQueue({ connection: redis, prefix: env.QUEUE_PREFIX });
  // BullMQ re-emits its connection's errors here and prints them raw when nobody listens; the
  // connection has already said that Redis is away (one line per outage), and each request meets it.
  queue.on("error", () => {});
  if (env.BOOTSTRAP_API_KEY) {
    await upsertApiKey(db.prisma, {
      tenantName: env.PLATFORM_TENANT,
      name: "bootstrap",
      hash: hashApiKey(env.BOOTSTRAP_API_KEY),
      prefix: env.BOOTSTRAP_API_KEY.slice(0, 8),
    });
  }
  const metrics = createApiMetrics(queue, redis, env.QUEUE_PREFIX, db);
  // The result cache may live in a Redis of its own, one that may evict (BullMQ's must not).
  const cacheRedis = env.PREDICT_CACHE_REDIS_URL ? createRedisConnection(env.PREDICT_CACHE_REDIS_URL, { failFast: true, logger }) : redis;
  const predict = new PredictService({
    redis,
    cacheRedis,
    prefix: env.QUEUE_PREFIX,
    metrics,
    logger,
    settings: {
      timeoutMs: env.PREDICT_TIMEOUT_MS,
      maxRows: env.PREDICT_MAX_ROWS,
      maxBacklogRows: env.PREDICT_MAX_BACKLOG_ROWS,
      cache: { ttlSeconds: env.PREDICT_CACHE_TTL_S, maxEntryBytes: env.PREDICT_CACHE_MAX_ENTRY_BYTES },
    },
  });
  const closing = new AbortController();
  const deps: ApiDeps = {
    db,
    redis,
    queue,
    modelStore: createModelStore(env.MODEL_STORE_DIR),
    logger,
    metrics,
    predict,
    platformTenant: env.PLATFORM_TENANT,
    auth: authOptionsFromEnv(env, logger),
    metricsAccess: { onApiPort: env.API_METRICS_PORT === undefined, token: env.METRICS_TOKEN },
    corsOrigins: env.CORS_ORIGINS,
    queueAdmin: env.QUEUE_ADMIN,
    rateLimits: new RateLimits({
      redis,
      db,
      prefix: env.QUEUE_PREFIX,
      logger,
      settings: { requestsPerSecond: env.RATE_LIMIT_REQUESTS_PER_SECOND, rowsPerMinute: env.RATE_LIMIT_ROWS_PER_MINUTE, queuedRows: env.QUOTA_QUEUED_ROWS },
    }),
    jobWriter: createJobWriter(db, queue, logger),
    jobEvents: new JobFinishedEvents(redis, env.QUEUE_PREFIX),
    closing: closing.signal,
    queuePrefix: env.QUEUE_PREFIX,
    webhookPolicy: webhookPolicyFromEnv(env),
    limits: {
      chunkRows: env.CHUNK_ROWS,
      maxJobRows: env.MAX_JOB_ROWS,
      maxBodyBytes: env.MAX_BODY_BYTES,
      maxModelBytes: env.MAX_MODEL_BYTES,
      maxUploadBytes: env.MAX_UPLOAD_BYTES,
      csv: { ...DEFAULT_CSV_LIMITS, maxExtraFields: env.MAX_CSV_EXTRA_FIELDS, maxBlankLines: env.MAX_CSV_BLANK_LINES },
      uploadStaleMs: env.UPLOAD_STALE_MS,
    },
  };
  const app = createApp(deps);
  // Before the API's port opens, so a scraper never finds the API up and its metrics missing.
  const metricsServer: MetricsServer | null =
    env.API_METRICS_PORT === undefined
      ? null
      : await serveMetricsPort({ registry: metrics.registry, host: env.METRICS_HOST, port: env.API_METRICS_PORT, token: env.METRICS_TOKEN, logger });
  // Native TLS for a deployment without a TLS-terminating proxy in front (docker/nginx terminates it in compose).
  const tls = readTlsFiles(env);
  const server = await new Promise<ServerType>((resolve) => {
    const options = { fetch: app.fetch, port: env.PORT, hostname: env.HOST };
    const s = tls
      ? serve({ ...options, createServer: createHttpsServer, serverOptions: { cert: tls.cert, key: tls.key } }, () => resolve(s))
      : serve(options, () => resolve(s));
  });
  limitRequestTimes(server as HttpServer);
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : env.PORT;
  const scheme = tls ? "https" : "http";
  logger.info({ port, host: env.HOST, tls: tls !== null }, `api listening on ${scheme}://${env.HOST}:${port}`);
  if (env.CORS_ORIGINS.length > 0) logger.info({ corsOrigins: env.CORS_ORIGINS }, "CORS allowed for these origins");
  return {
    port,
    metricsPort: metricsServer?.port ?? null,
    async close() {
      // Event streams last as long as their job; ended now, their clients reconnect to another replica.
      closing.abort();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await metricsServer?.close();
      await queue.close();
      deps.jobEvents.close();
      predict.close();
      if (cacheRedis !== redis) cacheRedis.disconnect();
      redis.disconnect();
      await db.close();
    },
  };
}

/** How long a connection may send or receive nothing before it is closed (event streams say something every 15 s). */
const SOCKET_IDLE_TIMEOUT_MS = 120_000;

/**
 * Node's HTTP server ends every request whose body has not all arrived within 5 minutes
 * (`requestTimeout`): a 4 GiB CSV upload would need 14 MB/s to make it. Uploads are bounded by
 * MAX_UPLOAD_BYTES instead, and a client that stops sending by the idle timeout (also what
 * nginx's client_body_timeout does in front); the headers keep Node's own limit (60 s).
 */
function limitRequestTimes(server: HttpServer): void {
  server.requestTimeout = 0;
  server.setTimeout(SOCKET_IDLE_TIMEOUT_MS);
}

/** API keys always; JWTs from one issuer when AUTH_JWT_ISSUER is set; failed attempts throttled per address. */
function authOptionsFromEnv(env: ApiEnv, logger: Logger): NonNullable<ApiDeps["auth"]> {
  const jwt = jwtSettingsFromEnv(env);
  if (jwt) logger.info({ issuer: jwt.issuer, audience: jwt.audience, algorithms: jwt.algorithms }, "accepting JWT bearer tokens");
  return {
    jwt: jwt ? new JwtVerifier(jwt) : null,
    failureLimit: env.AUTH_FAILURE_LIMIT,
    failureWindowMs: env.AUTH_FAILURE_WINDOW_S * 1000,
    trustProxy: env.TRUST_PROXY,
  };
}
