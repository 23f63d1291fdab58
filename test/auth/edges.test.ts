// The API's edges: /metrics behind a token of its own or on a port of its own, CORS off by default and
// on for an allow-list, and an API that will not start where /metrics would be open to all or where
// production would run on the development key.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../apps/api/src/app.ts";
import type { ApiDeps } from "../../apps/api/src/context.ts";
import { DEVELOPMENT_BOOTSTRAP_API_KEY, loadApiEnv } from "../../apps/api/src/env.ts";
import { startApi, type RunningApi } from "../../apps/api/src/server.ts";
import { API_MAIN, ROOT } from "../../scripts/processes.ts";
import { useApiSuite } from "../support/api-suite.ts";
import { expectProblem } from "../support/http.ts";

const METRICS_TOKEN = "metrics-token-0123456789abcdef";
const ALLOWED = "https://app.example.com";

const suite = useApiSuite("edges");

/** The suite's API, built again with other edge settings. */
function appWith(settings: Pick<ApiDeps, "metricsAccess" | "corsOrigins">): ReturnType<typeof createApp> {
  return createApp({ ...suite.api.deps, ...settings });
}

function preflight(app: ReturnType<typeof createApp>, path: string, origin: string, method = "POST"): Promise<Response> {
  return Promise.resolve(
    app.request(path, { method: "OPTIONS", headers: { Origin: origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": "authorization, content-type" } }),
  );
}

describe("/metrics behind METRICS_TOKEN", () => {
  it("answers 401 problem+json without the token, with an API key or a wrong token, and the metrics with it", async () => {
    const app = appWith({ metricsAccess: { onApiPort: true, token: METRICS_TOKEN } });
    const refused: Record<string, string>[] = [{}, { Authorization: suite.auth }, { Authorization: `Bearer ${METRICS_TOKEN.slice(0, -1)}x` }, { Authorization: `Bearer ${METRICS_TOKEN}extra` }, { Authorization: METRICS_TOKEN }];
    for (const headers of refused) {
      const response = await app.request("/metrics", { headers });
      expect(response.headers.get("www-authenticate")).toMatch(/^Bearer/);
      expect((await expectProblem(response, 401, "unauthorized")).detail).toContain("METRICS_TOKEN");
    }
    const response = await app.request("/metrics", { headers: { Authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(await response.text()).toContain("coalesce_http_request_duration_seconds");
  });

  it("is open, as before, when nothing is configured (the API then refuses a HOST that is not loopback, below)", async () => {
    const response = await suite.api.app.request("/metrics");
    expect(response.status).toBe(200);
  });
});

describe("/metrics on API_METRICS_PORT", () => {
  let api: RunningApi | undefined;
  let apiUrl: string;
  let metricsUrl: string;

  beforeAll(async () => {
    const env = loadApiEnv({ ...suite.services.env, HOST: "127.0.0.1", PORT: "0", API_METRICS_PORT: "0", METRICS_TOKEN, MIGRATE_ON_START: "false" });
    api = await startApi(env, pino({ level: "silent" }));
    apiUrl = `http://127.0.0.1:${api.port}`;
    metricsUrl = `http://127.0.0.1:${api.metricsPort}`;
  });
  afterAll(async () => {
    await api?.close();
  });

  it("serves /metrics only there, still behind the token, and answers 404 for it on the API's port", async () => {
    expect(api?.metricsPort).toEqual(expect.any(Number));
    expect(api?.metricsPort).not.toBe(api?.port);
    await expectProblem(await fetch(`${apiUrl}/metrics`, { headers: { Authorization: `Bearer ${METRICS_TOKEN}` } }), 404, "not_found");
    await expectProblem(await fetch(`${metricsUrl}/metrics`), 401, "unauthorized");
    const response = await fetch(`${metricsUrl}/metrics`, { headers: { Authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain("coalesce_http_request_duration_seconds");
    // Nothing else is served there, and the API's own routes still are on its port.
    expect((await fetch(`${metricsUrl}/healthz`)).status).toBe(404);
    expect((await fetch(`${metricsUrl}/v1/jobs`, { headers: { Authorization: suite.auth } })).status).toBe(404);
    expect((await fetch(`${apiUrl}/healthz`)).status).toBe(200);
  });
});

describe("refusing to start", () => {
  /** The API's own entry point with only `env`: it must fail while reading its configuration, before it connects to anything. */
  async function startMain(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [API_MAIN], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", MIGRATE_ON_START: "false", DATABASE_URL: "postgresql://nobody@127.0.0.1:1/none", ...env },
        timeout: 30_000,
      });
      return { code: 0, output: stdout + stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return { code: failed.code ?? null, output: `${failed.stdout ?? ""}${failed.stderr ?? ""}` };
    }
  }

  it("refuses the development key when NODE_ENV=production, naming BOOTSTRAP_API_KEY", async () => {
    const { code, output } = await startMain({ NODE_ENV: "production", BOOTSTRAP_API_KEY: DEVELOPMENT_BOOTSTRAP_API_KEY });
    expect(code).toBe(1);
    expect(output).toContain("BOOTSTRAP_API_KEY: is the well-known development key");
  }, 40_000);

  it("refuses a HOST that is not loopback while /metrics has neither a token nor a port of its own, naming both", async () => {
    const { code, output } = await startMain({ HOST: "0.0.0.0" });
    expect(code).toBe(1);
    expect(output).toMatch(/METRICS_TOKEN: \/metrics would be open to anyone reaching HOST=0\.0\.0\.0.*API_METRICS_PORT/);
  }, 40_000);
});

describe("CORS", () => {
  it("is off by default: a preflight gets no Access-Control-Allow-Origin, and /v1 still asks for a key", async () => {
    const response = await preflight(suite.api.app, "/v1/jobs", ALLOWED);
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    expect(response.status).toBe(401);
    const get = await suite.api.app.request("/v1/jobs", { headers: { Origin: ALLOWED, Authorization: suite.auth } });
    expect(get.status).toBe(200);
    expect(get.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("answers an allowed origin's preflight without a key, on /v1 and /v2/models, allowing the Authorization header", async () => {
    const app = appWith({ corsOrigins: [ALLOWED, "http://localhost:5173"] });
    for (const [path, method] of [["/v1/jobs", "POST"], ["/v1/jobs/job_01jdq3x8m7k2v9c4n5p6r7s8t9", "DELETE"], ["/v2/models/iris/infer", "POST"], ["/v1/models/iris/predict", "POST"]] as const) {
      const response = await preflight(app, path, ALLOWED, method);
      expect(response.status, path).toBe(204);
      expect(response.headers.get("access-control-allow-origin")).toBe(ALLOWED);
      expect(response.headers.get("access-control-allow-methods")?.split(",")).toContain(method);
      expect(response.headers.get("access-control-allow-headers")?.toLowerCase().split(",")).toEqual(expect.arrayContaining(["authorization", "content-type", "idempotency-key"]));
      expect(response.headers.get("access-control-allow-credentials")).toBeNull();
      expect(response.headers.get("access-control-max-age")).toBe("600");
      expect(response.headers.get("vary")).toContain("Origin");
    }
    expect((await preflight(app, "/v1/jobs", "http://localhost:5173")).headers.get("access-control-allow-origin")).toBe("http://localhost:5173");
  });

  it("gives a refused origin no Access-Control-Allow-Origin, on a preflight or a request", async () => {
    const app = appWith({ corsOrigins: [ALLOWED] });
    for (const origin of ["https://evil.example.com", "https://app.example.com.evil.example", "http://app.example.com", "null"]) {
      expect((await preflight(app, "/v1/jobs", origin)).headers.get("access-control-allow-origin"), origin).toBeNull();
      const response = await app.request("/v1/jobs", { headers: { Origin: origin, Authorization: suite.auth } });
      expect(response.headers.get("access-control-allow-origin"), origin).toBeNull();
    }
  });

  it("lets an allowed page read the answer and its headers, an error's included", async () => {
    const app = appWith({ corsOrigins: [ALLOWED] });
    const response = await app.request("/v1/jobs", { headers: { Origin: ALLOWED, Authorization: suite.auth } });
    expect(response.status).toBe(200);
    expect(response.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    const exposed = response.headers.get("access-control-expose-headers")?.split(",") ?? [];
    expect(exposed).toEqual(expect.arrayContaining(["X-Request-Id", "Retry-After", "RateLimit", "RateLimit-Policy", "Coalesce-Cache", "Coalesce-Job-Status", "Coalesce-Results-Complete"]));
    // A page must be able to read why it was refused.
    const refused = await app.request("/v1/jobs", { headers: { Origin: ALLOWED } });
    expect(refused.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    await expectProblem(refused, 401, "unauthorized");
  });

  it("allows any origin with `*`, still without credentials", async () => {
    const response = await preflight(appWith({ corsOrigins: ["*"] }), "/v1/jobs", "https://anywhere.example.org");
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe("*");
    expect(response.headers.get("access-control-allow-credentials")).toBeNull();
  });
});
