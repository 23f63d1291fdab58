import type { CreatedJob, CreateJobInput, Database, GroupCommit, VersionGone } from "@coalesce/db";
import type { JobFinishedEvents } from "@coalesce/queue";
import type { HttpBindings } from "@hono/node-server";
import type { ModelStore } from "@coalesce/models";
import type { WebhookUrlPolicy } from "@coalesce/webhooks";
import type { PredictQueue } from "@coalesce/queue";
import type { RedisClient } from "@coalesce/queue";
import type { Logger } from "pino";
import type { QueueAdminMode } from "./admin/queue-admin-mode.ts";
import type { CsvLimits } from "./ingest/csv-guard.ts";
import type { AuthOptions } from "./middleware/auth.ts";
import type { RateLimits } from "./limits/rate-limits.ts";
import type { ApiMetrics } from "./metrics.ts";
import type { MetricsAccess } from "./metrics-endpoint.ts";
import type { PredictService } from "./predict/service.ts";

export type ApiLimits = {
  /** Rows per chunk, the unit of queueing and retry. */
  chunkRows: number;
  /** Most rows one JSON job may carry. */
  maxJobRows: number;
  /** Largest JSON request body, in bytes. */
  maxBodyBytes: number;
  /** Largest model upload, in bytes. */
  maxModelBytes: number;
  /** Largest CSV upload, in bytes, as sent and as decompressed. */
  maxUploadBytes: number;
  /** Bounds on a CSV upload's fields, blank lines and records. @defaultValue DEFAULT_CSV_LIMITS */
  csv?: CsvLimits | undefined;
  /**
   * An upload not seen alive this long is dead, and a retry may take its Idempotency-Key
   * (UPLOAD_STALE_MS, the same setting as the worker's upload sweep). @defaultValue 60,000
   */
  uploadStaleMs?: number | undefined;
};

/** Everything a route needs, built once at start-up and handed to createApp. */
export type ApiDeps = {
  db: Database;
  redis: RedisClient;
  queue: PredictQueue;
  modelStore: ModelStore;
  logger: Logger;
  limits: ApiLimits;
  metrics: ApiMetrics;
  /** Stores and queues JSON jobs, concurrent ones together. */
  jobWriter: GroupCommit<CreateJobInput, CreatedJob | VersionGone>;
  /** Wakes long-polls (GET /v1/jobs/{id}?wait=N) when a job finishes. */
  jobEvents: JobFinishedEvents;
  /** Aborted when the API starts shutting down: open event streams end then, so the drain is not held up by them. */
  closing?: AbortSignal;
  /** BullMQ key prefix, where workers also publish their status. */
  queuePrefix: string;
  /** Which webhook URLs are accepted (WEBHOOK_ALLOW_HTTP, WEBHOOK_ALLOWLIST). */
  webhookPolicy: WebhookUrlPolicy;
  /** The synchronous predict path (POST /v1/models/{name}/predict, /v2/.../infer). */
  predict: PredictService;
  /** The tenant whose admin keys may create keys for other tenants (PLATFORM_TENANT). @defaultValue "default" */
  platformTenant?: string | undefined;
  /** JWT bearer tokens and the failed-authentication throttle; absent: API keys only, default throttle. */
  auth?: AuthOptions | undefined;
  /** Who may read GET /metrics on the API's port (METRICS_TOKEN, API_METRICS_PORT). @defaultValue open, on the API's port */
  metricsAccess?: MetricsAccess | undefined;
  /** Browser origins allowed to call the API (CORS_ORIGINS, `*` for any). @defaultValue none: CORS off */
  corsOrigins?: readonly string[] | undefined;
  /** Rate limits and quotas per key and tenant (RATE_LIMIT_*, QUOTA_QUEUED_ROWS). @defaultValue none */
  rateLimits?: RateLimits | undefined;
  /** bull-board at /admin/queues (QUEUE_ADMIN, see admin/queue-admin.ts). @defaultValue "read" */
  queueAdmin?: QueueAdminMode | undefined;
};

/**
 * Who is calling: the tenant, who to name in histories and the audit log (`actor`: an API key id,
 * or `token:<sub>` for a JWT), the key (null for a token), its scopes and its own rate limit.
 */
export type Principal = { tenantId: string; actor: string; keyId: string | null; scopes: readonly string[]; rateLimitRps: number | null };

export type AppEnv = {
  /** Under @hono/node-server the Node request itself; absent for in-process `app.request` calls. */
  Bindings: Partial<HttpBindings>;
  Variables: {
    requestId: string;
    logger: Logger;
    /** Set by the auth middleware on every /v1 route. */
    tenantId: string;
    /** Who made a change, in histories (the principal's actor: a key id, or `token:<sub>`). */
    keyId: string;
    /** The caller, set by the auth middleware with tenantId. */
    principal: Principal;
  };
};
