import { describeFailure } from "@coalesce/contracts";
import { listWorkers } from "@coalesce/queue";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../context.ts";
import { ApiError } from "../errors.ts";
import { V1_ERRORS } from "./responses.ts";

const CHECK_TIMEOUT_MS = 2_000;

export const healthzRoute = createRoute({
  method: "get",
  path: "/healthz",
  operationId: "getLiveness",
  security: [],
  tags: ["Health"],
  summary: "Liveness",
  description: "200 while the process serves requests; it does not touch Postgres or Redis.",
  responses: { 200: { description: "Alive", content: { "application/json": { schema: z.object({ status: z.literal("ok") }) } } } },
});

const ReadySchema = z.object({
  status: z.literal("ready"),
  checks: z.object({ postgres: z.literal("ok"), redis: z.literal("ok") }),
  workers: z
    .array(
      z.object({
        id: z.string(),
        provider: z.string().openapi({ example: "cpu" }),
        concurrency: z.number().int(),
        predict: z.boolean().openapi({ description: "Whether it answers predict requests (PREDICT_ROWS_IN_FLIGHT above 0)" }),
        started_at: z.string(),
        seen_at: z.string(),
      }),
    )
    .openapi({ description: "Workers heard from in the last 30 s and the execution provider each runs on. None is not an error: jobs queue until one starts." }),
});

export const readyzRoute = createRoute({
  method: "get",
  path: "/readyz",
  operationId: "getReadiness",
  security: [],
  tags: ["Health"],
  summary: "Readiness",
  description: "200 when Postgres and Redis both answer; 503 naming the one that does not.",
  responses: {
    200: { description: "Ready", content: { "application/json": { schema: ReadySchema } } },
    503: V1_ERRORS[503],
  },
});

/**
 * `read()` within CHECK_TIMEOUT_MS (below Prometheus' default 10 s scrape timeout), or why it failed:
 * a dependency that does not answer makes /readyz say so and the scrape-time gauges go missing,
 * never a request that hangs.
 */
export async function bounded<T>(read: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const value = await Promise.race([
      read(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
      }),
    ]);
    return { ok: true, value };
  } catch (error) {
    return { ok: false, error };
  } finally {
    clearTimeout(timer);
  }
}

/** Null when `probe` settles without an error within CHECK_TIMEOUT_MS; else why `name` counts as unreachable. */
export async function check(name: string, probe: () => Promise<unknown>): Promise<string | null> {
  const result = await bounded(probe);
  return result.ok ? null : `${name} is unreachable (${describeFailure(result.error)})`;
}

export function registerHealthRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(healthzRoute, (c) => c.json({ status: "ok" as const }, 200));
  app.openapi(readyzRoute, async (c) => {
    const failures = (
      await Promise.all([
        check("postgres", () => deps.db.pool.query("SELECT 1")),
        check("redis", () => deps.redis.ping()),
      ])
    ).filter((failure): failure is string => failure !== null);
    if (failures.length > 0) throw new ApiError("service_unavailable", failures.join("; "));
    const workers = (await listWorkers(deps.redis, deps.queuePrefix)).map((worker) => ({
      id: worker.id,
      provider: worker.provider,
      concurrency: worker.concurrency,
      predict: worker.predict ?? false,
      started_at: worker.startedAt,
      seen_at: worker.seenAt,
    }));
    return c.json({ status: "ready" as const, checks: { postgres: "ok" as const, redis: "ok" as const }, workers }, 200);
  });
}
