import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { CoalesceApiError, createClient } from "@coalesce/client";
import { serve } from "@hono/node-server";
import { createRedisConnection } from "@coalesce/queue";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createApp } from "../../apps/api/src/app.ts";
import { hashApiKey } from "../../apps/api/src/auth/api-keys.ts";
import { RateLimits, READS_PER_REQUEST_LIMIT, type RateLimitSettings } from "../../apps/api/src/limits/rate-limits.ts";
import { registerIris } from "../support/api-suite.ts";
import { expectProblem, get, irisRows, submitJob } from "../support/http.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "../support/services.ts";

/** What rate limits leave unlimited by default here: each test sets the one it looks at. */
const GENEROUS: RateLimitSettings = { requestsPerSecond: 0, rowsPerMinute: 0, queuedRows: 0 };

let services: TestServices;
const opened: TestApi[] = [];

beforeAll(async () => {
  services = await createTestServices();
});

afterAll(async () => {
  for (const api of opened) await api.close();
  await services?.cleanup();
});

type LimitedApi = TestApi & { limits: RateLimits };

/** An API in process on the shared services (its own Redis connection), with these limits. */
function limitedApi(settings: Partial<RateLimitSettings>, options: { redis?: TestApi["deps"]["redis"]; logger?: pino.Logger } = {}): LimitedApi {
  const api = createTestApi(services);
  opened.push(api);
  const limits = new RateLimits({
    redis: options.redis ?? api.deps.redis,
    db: api.db,
    prefix: services.queuePrefix,
    logger: options.logger ?? pino({ level: "silent" }),
    settings: { ...GENEROUS, ...settings },
  });
  const deps = { ...api.deps, rateLimits: limits };
  return { ...api, deps, app: createApp(deps), limits };
}

async function keyOf(api: TestApi, auth: string) {
  const key = await api.db.prisma.apiKey.findUniqueOrThrow({ where: { hash: hashApiKey(auth.replace(/^Bearer /, "")) } });
  return key;
}

/** A new tenant and key; `rps` sets the key's own requests per second (null: the default; 0: none). */
async function tenant(api: TestApi, name: string, own: { rps?: number | null; rowsPerMinute?: number; quotaQueuedRows?: number } = {}) {
  const auth = await api.createTenant(name);
  const key = await keyOf(api, auth);
  if (own.rps !== undefined) await api.db.prisma.apiKey.update({ where: { id: key.id }, data: { rateLimitRps: own.rps } });
  if (own.rowsPerMinute !== undefined || own.quotaQueuedRows !== undefined) {
    await api.db.prisma.tenant.update({
      where: { id: key.tenantId },
      data: {
        ...(own.rowsPerMinute === undefined ? {} : { rateLimitRowsPerMinute: own.rowsPerMinute }),
        ...(own.quotaQueuedRows === undefined ? {} : { quotaQueuedRows: BigInt(own.quotaQueuedRows) }),
      },
    });
  }
  return { auth, keyId: key.id, tenantId: key.tenantId };
}

/** A request that passes the limiter but is refused just after (422): it costs the route nothing. */
function cheapPost(api: TestApi, auth: string): Promise<Response> {
  return submitJob(api, auth, {});
}

async function burst(count: number, send: () => Promise<Response>): Promise<{ statuses: number[]; refused: Response[] }> {
  const responses = await Promise.all(Array.from({ length: count }, send));
  return { statuses: responses.map((r) => r.status), refused: responses.filter((r) => r.status === 429) };
}

const countOf = (statuses: number[], status: number) => statuses.filter((s) => s === status).length;

describe("rate limits per key", () => {
  it("refuses a burst past the key's requests per second with 429, Retry-After and the RateLimit fields", async () => {
    const api = limitedApi({ requestsPerSecond: 5 });
    const { auth, keyId } = await tenant(api, "burst");
    const started = performance.now();
    const { statuses, refused } = await burst(12, () => cheapPost(api, auth));
    // One fixed window of a second: exactly the limit passes when the burst fits in it.
    if (performance.now() - started < 900) expect(countOf(statuses, 422)).toBe(5);
    expect(refused.length).toBeGreaterThanOrEqual(7 - 5);
    const response = refused[0]!;
    expect(response.headers.get("retry-after")).toBe("1");
    expect(response.headers.get("ratelimit-policy")).toBe('"requests";q=5;w=1');
    expect(response.headers.get("ratelimit")).toBe('"requests";r=0;t=1');
    const problem = await expectProblem(response, 429, "rate_limited");
    expect(problem.detail).toContain(`key ${keyId}`);
    expect(problem.detail).toContain("5 requests in one second");
    expect(problem.detail).toContain("RATE_LIMIT_REQUESTS_PER_SECOND");
  });

  it("says how the key stands on answers that pass", async () => {
    const api = limitedApi({ requestsPerSecond: 50 });
    const { auth } = await tenant(api, "standing");
    const response = await cheapPost(api, auth);
    expect(response.status).toBe(422);
    expect(response.headers.get("ratelimit-policy")).toBe('"requests";q=50;w=1');
    expect(response.headers.get("ratelimit")).toMatch(/^"requests";r=\d+;t=1$/);
  });

  it("is shared by two API processes on one Redis", async () => {
    const first = limitedApi({ requestsPerSecond: 6 });
    const second = limitedApi({ requestsPerSecond: 6 });
    const { auth } = await tenant(first, "shared");
    const started = performance.now();
    const { statuses } = await burst(14, (() => {
      let turn = 0;
      return () => cheapPost(turn++ % 2 === 0 ? first : second, auth);
    })());
    if (performance.now() - started < 900) expect(countOf(statuses, 422)).toBe(6);
    expect(countOf(statuses, 429)).toBeGreaterThanOrEqual(2);
  });

  it("follows the key's own limit: 0 is none, a lower one refuses sooner", async () => {
    const api = limitedApi({ requestsPerSecond: 3 });
    const unlimited = await tenant(api, "unlimited", { rps: 0 });
    const lower = await tenant(api, "lower", { rps: 1 });
    const free = await burst(20, () => cheapPost(api, unlimited.auth));
    expect(countOf(free.statuses, 429)).toBe(0);
    expect(free.statuses.every((s) => s === 422)).toBe(true);
    const held = await burst(3, () => cheapPost(api, lower.auth));
    expect(countOf(held.statuses, 429)).toBeGreaterThanOrEqual(1);
    const problem = await expectProblem(held.refused[0]!, 429, "rate_limited");
    expect(problem.detail).toContain("the key's own rate_limit_rps");
  });

  it("gives reads a bucket of their own, so polling does not use up submissions", async () => {
    const api = limitedApi({ requestsPerSecond: 2 });
    const { auth } = await tenant(api, "reader");
    const reads = await burst(2 * READS_PER_REQUEST_LIMIT - 5, () => get(api, auth, "/v1/jobs"));
    expect(countOf(reads.statuses, 200)).toBe(reads.statuses.length);
    expect((await cheapPost(api, auth)).status).toBe(422);
    // Reads have a limit too, ten times the key's.
    const more = await burst(2 * READS_PER_REQUEST_LIMIT, () => get(api, auth, "/v1/jobs"));
    expect(more.refused.length).toBeGreaterThanOrEqual(1);
    expect(more.refused[0]!.headers.get("ratelimit-policy")).toBe(`"reads";q=${2 * READS_PER_REQUEST_LIMIT};w=1`);
  });

  it("never limits health, docs or a request without a valid key", async () => {
    const api = limitedApi({ requestsPerSecond: 1 });
    const { auth } = await tenant(api, "public");
    await cheapPost(api, auth);
    for (const path of ["/healthz", "/openapi.json", "/docs"]) {
      const statuses = (await burst(10, () => Promise.resolve(api.app.request(path)))).statuses;
      expect(statuses.filter((s) => s === 429), path).toEqual([]);
    }
    const anonymous = await burst(5, () => cheapPost(api, "Bearer csk_not_a_key_at_all_0000"));
    expect(anonymous.statuses.every((s) => s === 401)).toBe(true);
  });

  it("fails open when Redis does not answer, and says so once", async () => {
    const lines: string[] = [];
    const logger = pino({ level: "info" }, new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(chunk.toString()), done()) }));
    const deadRedis = createRedisConnection("redis://127.0.0.1:1", { failFast: true });
    deadRedis.on("error", () => {});
    try {
      const api = limitedApi({ requestsPerSecond: 1, rowsPerMinute: 1 }, { redis: deadRedis, logger });
      const { auth } = await tenant(api, "outage");
      const { statuses } = await burst(5, () => cheapPost(api, auth));
      expect(statuses.every((s) => s === 422)).toBe(true);
      expect(lines.filter((line) => line.includes("failing open"))).toHaveLength(1);
    } finally {
      deadRedis.disconnect();
    }
  });
});

describe("limits per tenant", () => {
  let api: LimitedApi;
  beforeAll(() => {
    api = limitedApi({ rowsPerMinute: 1_000_000 });
  });

  it("holds a tenant to its rows per minute over its submissions, and gives back the rows of a refused one", async () => {
    const { auth, tenantId } = await tenant(api, "rows", { rowsPerMinute: 10 });
    await registerIris(api, auth);
    expect((await submitJob(api, auth, { model: "iris", inputs: irisRows(6) })).status).toBe(202);
    const refused = await submitJob(api, auth, { model: "iris", inputs: irisRows(6) });
    expect(refused.headers.get("ratelimit-policy")).toBe('"rows";q=10;qu="rows";w=60');
    expect(refused.headers.get("ratelimit")).toMatch(/^"rows";r=0;t=\d+$/);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(60);
    const problem = await expectProblem(refused, 429, "rate_limited");
    expect(problem.detail).toContain(`tenant ${tenantId} has submitted 6 rows this minute, and 6 more would pass`);
    expect(problem.detail).toContain("rate_limit_rows_per_minute");
    // The refused 6 were given back: 4 more fit exactly.
    await vi.waitFor(async () => {
      const response = await submitJob(api, auth, { model: "iris", inputs: irisRows(4) });
      expect(response.status).toBe(202);
    });
    expect((await submitJob(api, auth, { model: "iris", inputs: irisRows(1) })).status).toBe(429);
  });

  it("takes a job larger than the whole limit when the minute has had none", async () => {
    const { auth } = await tenant(api, "oversize", { rowsPerMinute: 5 });
    await registerIris(api, auth);
    expect((await submitJob(api, auth, { model: "iris", inputs: irisRows(8) })).status).toBe(202);
    expect((await submitJob(api, auth, { model: "iris", inputs: irisRows(1) })).status).toBe(429);
  });

  it("counts a CSV upload's rows as they are stored, and refuses the next upload at its start", async () => {
    const { auth } = await tenant(api, "csv-rows", { rowsPerMinute: 50 });
    await registerIris(api, auth);
    const csv = ["row_id,sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm,target", ...Array.from({ length: 100 }, (_, i) => `${i},5.1,3.5,1.4,0.2,0`)].join("\n");
    const upload = () =>
      Promise.resolve(api.app.request("/v1/jobs?model=iris&id_column=row_id&ignore=target", { method: "POST", headers: { Authorization: auth, "Content-Type": "text/csv" }, body: csv }));
    expect((await upload()).status).toBe(202);
    await vi.waitFor(async () => {
      const again = await upload();
      await expectProblem(again, 429, "rate_limited");
    });
  });

  it("refuses a tenant past its quota of queued rows, naming the quota, while another tenant is served", async () => {
    const full = await tenant(api, "full", { quotaQueuedRows: 10 });
    const other = await tenant(api, "other", { quotaQueuedRows: 10 });
    await registerIris(api, full.auth);
    await registerIris(api, other.auth);
    // No worker runs here: every row accepted stays queued.
    expect((await submitJob(api, full.auth, { model: "iris", inputs: irisRows(8) })).status).toBe(202);
    const refused = await submitJob(api, full.auth, { model: "iris", inputs: irisRows(5) });
    expect(refused.headers.get("retry-after")).toBe("5");
    expect(refused.headers.get("ratelimit-policy")).toBe('"queued-rows";q=10;qu="rows"');
    expect(refused.headers.get("ratelimit")).toBe('"queued-rows";r=0');
    const problem = await expectProblem(refused, 429, "rate_limited");
    expect(problem.detail).toContain(`tenant ${full.tenantId} has 8 rows queued`);
    expect(problem.detail).toContain("quota_queued_rows");
    expect((await submitJob(api, other.auth, { model: "iris", inputs: irisRows(8) })).status).toBe(202);
    // Counted in Postgres too, so another process (or this one a second later) sees the same.
    const elsewhere = limitedApi({});
    await expectProblem(await submitJob(elsewhere, full.auth, { model: "iris", inputs: irisRows(5) }), 429, "rate_limited");
    // A CSV upload is refused at its start once the tenant's queue is full.
    expect((await submitJob(api, full.auth, { model: "iris", inputs: irisRows(2) })).status).toBe(202);
    const upload = await api.app.request("/v1/jobs?model=iris&id_column=row_id&ignore=target", {
      method: "POST",
      headers: { Authorization: full.auth, "Content-Type": "text/csv" },
      body: "row_id,sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm,target\n0,5.1,3.5,1.4,0.2,0\n",
    });
    expect((await expectProblem(upload, 429, "rate_limited")).detail).toContain("its whole quota");
  });
});

describe("the typed client against the limited API", () => {
  it("waits out the 429s of a burst by itself, so every call of it succeeds", async () => {
    const api = limitedApi({ requestsPerSecond: 1 });
    const { auth } = await tenant(api, "client");
    const server = await new Promise<Server>((resolve) => {
      const s = serve({ fetch: api.app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s as Server));
    });
    try {
      const client = createClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: auth.replace(/^Bearer /, "") });
      // Reads: ten a second for this key, so 25 at once take three windows.
      const lists = await Promise.all(Array.from({ length: 25 }, () => client.listJobs()));
      expect(lists.every((list) => Array.isArray(list.data))).toBe(true);
      // A key that stays over its limit past the client's bounds: the 429 reaches the caller, with when to retry.
      const impatient = createClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: auth.replace(/^Bearer /, ""), rateLimitRetry: false });
      const outcomes = await Promise.allSettled(Array.from({ length: 15 }, () => impatient.listJobs()));
      const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === "rejected").map((o) => o.reason as CoalesceApiError);
      expect(refused.length).toBeGreaterThanOrEqual(1);
      expect(refused[0]).toMatchObject({ status: 429, code: "rate_limited", retryAfterSeconds: 1 });
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("the OpenAPI document", () => {
  it("documents 429 with its headers on every route behind a key", async () => {
    const api = limitedApi({});
    const document = (await (await api.app.request("/openapi.json")).json()) as {
      paths: Record<string, Record<string, { security?: unknown[]; responses: Record<string, { headers?: Record<string, unknown> }> }>>;
    };
    const missing: string[] = [];
    for (const [path, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        if (!operation.security?.length) continue;
        const answer = operation.responses["429"];
        if (!answer?.headers?.["Retry-After"] || !answer.headers["RateLimit"]) missing.push(`${method.toUpperCase()} ${path}`);
      }
    }
    expect(missing).toEqual([]);
  });
});

describe("who may loosen a limit", () => {
  it("a tenant's admin may lower its limits, but only a platform admin may turn one off or raise it past the default", async () => {
    const api = limitedApi({ requestsPerSecond: 100, rowsPerMinute: 1_000, queuedRows: 5_000 });
    const own = await tenant(api, "loosen-tenant");
    const patch = (auth: string, body: unknown) =>
      api.app.request("/v1/tenant", { method: "PATCH", headers: { Authorization: auth, "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const createKey = (auth: string, body: unknown) =>
      api.app.request("/v1/api-keys", { method: "POST", headers: { Authorization: auth, "Content-Type": "application/json" }, body: JSON.stringify(body) });

    expect((await patch(own.auth, { quota_queued_rows: 100, rate_limit_rows_per_minute: 10 })).status).toBe(200);
    expect((await patch(own.auth, { quota_queued_rows: null })).status).toBe(200);
    const off = await expectProblem(await patch(own.auth, { quota_queued_rows: 0 }), 403, "forbidden");
    expect(off.detail).toMatch(/^quota_queued_rows: only an admin of the platform tenant/);
    await expectProblem(await patch(own.auth, { rate_limit_rows_per_minute: 1_001 }), 403, "forbidden");
    await expectProblem(await createKey(own.auth, { name: "unlimited", scopes: ["jobs:read"], rate_limit_rps: 0 }), 403, "forbidden");
    expect((await createKey(own.auth, { name: "slower", scopes: ["jobs:read"], rate_limit_rps: 5 })).status).toBe(201);

    // The platform's own admins run the service: they may.
    const platform = await tenant(api, "platform");
    const { name } = await api.db.prisma.tenant.findUniqueOrThrow({ where: { id: platform.tenantId } });
    const asPlatform = createApp({ ...api.deps, platformTenant: name });
    const send = (path: string, method: string, body: unknown) =>
      asPlatform.request(path, { method, headers: { Authorization: platform.auth, "Content-Type": "application/json" }, body: JSON.stringify(body) });
    expect((await send("/v1/tenant", "PATCH", { quota_queued_rows: 0 })).status).toBe(200);
    expect((await send("/v1/api-keys", "POST", { name: "unlimited", scopes: ["jobs:read"], rate_limit_rps: 0 })).status).toBe(201);
  });
});
