import { oldestUnscoredRows, sharedFlight, webhookBacklog, type Database } from "@coalesce/db";
import { listWorkers, registerQueueGauge, type PredictQueue } from "@coalesce/queue";
import type { MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
import type { RedisClient } from "@coalesce/queue";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { AppEnv } from "./context.ts";
import { bounded, check } from "./routes/health.ts";

/** The API's Prometheus metrics: requests, accepted work, the queue, and the workers behind it. */
export function createApiMetrics(queue: PredictQueue, redis: RedisClient, queuePrefix: string, db: Database) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metrics = {
    registry,
    requests: new Histogram({
      name: "coalesce_http_request_duration_seconds",
      help: "HTTP requests by route and status",
      labelNames: ["method", "route", "status"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
      registers: [registry],
    }),
    jobs: new Counter({ name: "coalesce_jobs_created_total", help: "Jobs accepted, by input format", labelNames: ["format"], registers: [registry] }),
    rows: new Counter({ name: "coalesce_rows_accepted_total", help: "Rows accepted into jobs, by input format", labelNames: ["format"], registers: [registry] }),
    predictRequests: new Counter({
      name: "coalesce_predict_requests_total",
      help: "Predict requests by protocol (v1, v2) and outcome: ok, timeout (504), rejected (503: no worker, a full backlog, Redis away), error",
      labelNames: ["protocol", "outcome"],
      registers: [registry],
    }),
    predictDuration: new Histogram({
      name: "coalesce_predict_duration_seconds",
      help: "Predict requests from validated to answered, by protocol and outcome",
      labelNames: ["protocol", "outcome"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    predictCache: new Counter({
      name: "coalesce_predict_cache_rows_total",
      help: "Predict rows looked up in the result cache, by result (hit, miss)",
      labelNames: ["result"],
      registers: [registry],
    }),
  };
  registerQueueGauge(registry, queue, redis);
  // Read by every API replica alike: alerts take max() over them.
  const workers = sharedFlight(() => bounded(() => listWorkers(redis, queuePrefix)));
  new Gauge({
    name: "coalesce_workers",
    help: "Workers heard from in the last 30 s, by execution provider",
    labelNames: ["provider"],
    registers: [registry],
    async collect() {
      this.reset();
      const live = await workers();
      if (live.ok) for (const worker of live.value) this.inc({ provider: worker.provider });
    },
  });
  new Gauge({
    name: "coalesce_workers_serving",
    help: "Live workers taking each kind of work: jobs (chunks of both lanes; every worker) and predict (workers with PREDICT_ROWS_IN_FLIGHT above 0); 0 when none, absent when Redis does not answer",
    labelNames: ["lane"],
    registers: [registry],
    async collect() {
      this.reset();
      const live = await workers();
      if (!live.ok) return;
      // Both series always, so that "none" is a 0 an alert can see rather than a missing series.
      this.set({ lane: "jobs" }, live.value.length);
      this.set({ lane: "predict" }, live.value.filter((worker) => worker.predict === true).length);
    },
  });
  // Webhook backlog, for alerting: a growing one means receivers are down or the workers cannot keep up.
  const backlog = sharedFlight(() => bounded(() => webhookBacklog(db)));
  new Gauge({
    name: "coalesce_webhook_deliveries_pending",
    help: "Webhook deliveries not yet done (waiting for their first attempt or a retry)",
    registers: [registry],
    async collect() {
      // NaN rather than a reassuring 0 when Postgres does not answer (an unlabelled gauge always has a value).
      const read = await backlog();
      this.set(read.ok ? read.value.pending : Number.NaN);
    },
  });
  new Gauge({
    name: "coalesce_webhook_oldest_due_seconds",
    help: "How long the most overdue webhook delivery has been due (0 when none is)",
    registers: [registry],
    async collect() {
      const read = await backlog();
      this.set(read.ok ? read.value.oldestDueSeconds : Number.NaN);
    },
  });
  new Gauge({
    name: "coalesce_oldest_unscored_row_seconds",
    help: "How long the oldest row not yet scored has waited since its job was created, by lane (0 when the lane has none)",
    labelNames: ["lane"],
    registers: [registry],
    async collect() {
      this.reset();
      const read = await bounded(() => oldestUnscoredRows(db));
      if (read.ok) for (const { lane, ageSeconds } of read.value) this.set({ lane }, ageSeconds ?? 0);
    },
  });
  // Probed as /readyz probes them, at scrape time: an alert then says which one is away.
  new Gauge({
    name: "coalesce_dependency_up",
    help: "Whether Postgres and Redis answered this API within 2 s at the scrape (1) or not (0)",
    labelNames: ["dependency"],
    registers: [registry],
    async collect() {
      const [postgres, redisFailure] = await Promise.all([check("postgres", () => db.pool.query("SELECT 1")), check("redis", () => redis.ping())]);
      this.set({ dependency: "postgres" }, postgres === null ? 1 : 0);
      this.set({ dependency: "redis" }, redisFailure === null ? 1 : 0);
    },
  });
  return metrics;
}
export type ApiMetrics = ReturnType<typeof createApiMetrics>;

/** Times every request under its route pattern (not its URL, which would explode the label set). */
export function measureRequests(metrics: ApiMetrics): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const end = metrics.requests.startTimer();
    await next();
    // The last matched route is the endpoint's own pattern; an unmatched request has none.
    end({ method: c.req.method, route: c.res.status === 404 && routePath(c, -1) === "*" ? "unmatched" : routePath(c, -1), status: String(c.res.status) });
  };
}
