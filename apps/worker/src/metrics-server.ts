import { sharedFlight } from "@coalesce/db";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { within } from "./within.ts";

/** How long /readyz waits for each dependency's answer: a probe (Kubernetes' default timeout is 1 s) must hear back. */
export const READY_CHECK_TIMEOUT_MS = 800;

/** How often the liveness ticker runs; a stall is told from the gap between its ticks. */
const TICK_MS = 250;

/** What /healthz and /readyz look at, supplied by the worker. */
export type WorkerHealth = {
  /** "ok" while the consumer takes chunks; otherwise why not ("draining" after SIGTERM, "stopped"). */
  consumer(): string;
  /** Each dependency's probe (Redis, Postgres): ready when every one settles within READY_CHECK_TIMEOUT_MS. */
  dependencies: Record<string, () => Promise<unknown>>;
  /**
   * The event loop counts as stalled past this gap between two ticks: /healthz then says 503. The
   * worker passes the longest block its chunks' locks survive (3/8 of STALLED_TAKEOVER_MS).
   */
  stallMs: number;
};

export type MetricsServerOptions = { registry: Registry; host: string; port: number; logger: Logger; health: WorkerHealth };

/**
 * The worker's own HTTP port: GET /metrics for Prometheus, and the probes of compose and Kubernetes.
 *
 * - `/healthz` (liveness): 200 while the process runs and its event loop is not stalled. A loop
 *   blocked for good answers nothing, and the probe's timeout says so; a loop that was blocked for
 *   longer than `stallMs` answers the requests that waited with 503 and how long it stalled (past
 *   that, the worker's chunk locks lapse and other workers take them over).
 * - `/readyz` (readiness): 200 when the consumer runs and Redis and Postgres answered within
 *   READY_CHECK_TIMEOUT_MS; 503 with what is not ready (draining on SIGTERM, Redis unreachable...).
 *   Probes that arrive together share one round of checks.
 *
 * HEAD answers as GET without the body. A port already taken (several workers on one host with the
 * default port) is logged and skipped rather than stopping the worker.
 */
export async function serveMetrics(options: MetricsServerOptions): Promise<Server | null> {
  const { registry, host, port, logger, health } = options;
  let lastTick = performance.now();
  // How late the latest tick came: after a stall, the requests that waited through it are answered
  // before the next tick (TICK_MS later) writes over it, and so they hear of the stall.
  let lastLateMs = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    lastLateMs = now - lastTick - TICK_MS;
    lastTick = now;
  }, TICK_MS);
  ticker.unref();
  // Probes that arrive while a round runs share its answer: a burst costs one PING and one SELECT.
  const readiness = sharedFlight(() => checkReadiness(health));

  const server = createServer((request, response) => {
    const path = (request.url ?? "/").split("?")[0];
    if (path !== "/metrics" && path !== "/healthz" && path !== "/readyz") {
      response.writeHead(404).end();
      return;
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { Allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/metrics") {
      registry.metrics().then(
        (text) => response.writeHead(200, { "Content-Type": registry.contentType }).end(request.method === "HEAD" ? undefined : text),
        (error: unknown) => response.writeHead(500).end(String(error)),
      );
      return;
    }
    if (path === "/healthz") {
      // A tick overdue now (the loop is only just free again, its timers not yet run) is a stall as much as a late one.
      const stalledMs = Math.round(Math.max(performance.now() - lastTick - TICK_MS, lastLateMs));
      if (stalledMs > health.stallMs) answerJson(request, response, 503, { status: "stalled", stalledMs, limitMs: health.stallMs });
      else answerJson(request, response, 200, { status: "ok" });
      return;
    }
    readiness().then(
      (report) => answerJson(request, response, report.status === "ready" ? 200 : 503, report),
      (error: unknown) => answerJson(request, response, 503, { status: "not_ready", error: String(error) }),
    );
  });
  server.on("close", () => clearInterval(ticker));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
  } catch (error) {
    clearInterval(ticker);
    logger.warn({ err: error, port }, "metrics not served: the port is taken (set METRICS_PORT per worker, or 0 for any free port)");
    return null;
  }
  const address = server.address();
  logger.info({ metricsPort: typeof address === "object" && address ? address.port : port }, "metrics on /metrics, probes on /healthz and /readyz");
  return server;
}

export type ReadinessReport = { status: "ready" | "not_ready"; checks: Record<string, string> };

/** Every check at once, each "ok" or why not. */
async function checkReadiness(health: WorkerHealth): Promise<ReadinessReport> {
  const checks: Record<string, string> = { consumer: health.consumer() };
  await Promise.all(
    Object.entries(health.dependencies).map(async ([name, probe]) => {
      try {
        checks[name] = (await within(probe(), READY_CHECK_TIMEOUT_MS)) ? "ok" : `no answer within ${READY_CHECK_TIMEOUT_MS} ms`;
      } catch (error) {
        checks[name] = error instanceof Error ? error.message : String(error);
      }
    }),
  );
  return { status: Object.values(checks).every((value) => value === "ok") ? "ready" : "not_ready", checks };
}

function answerJson(request: IncomingMessage, response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text), "Cache-Control": "no-store" });
  response.end(request.method === "HEAD" ? undefined : text);
}
