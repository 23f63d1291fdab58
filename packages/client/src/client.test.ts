// The client against a small HTTP server in this process that answers as the API would: real fetch,
// real sockets and streamed bodies, no Coalesce server needed. `predict` runs against the real API
// (in this process, on a real port) and a real worker, where what it promises is the server's doing.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { gunzipSync } from "node:zlib";
import { PREDICT_CACHE_HEADER, type Job, type ResultRow } from "@coalesce/contracts";
import { publishWorkerStatus } from "@coalesce/queue";
import { serve } from "@hono/node-server";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../../apps/worker/src/worker.ts";
import { registerIris } from "../../../test/support/api-suite.ts";
import { readReference } from "../../../test/support/fixtures.ts";
import { irisInputs, useIrisSuite } from "../../../test/support/iris-suite.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "../../../test/support/services.ts";
import { startTestWorker } from "../../../test/support/worker.ts";
import { buildCsvUploadQuery, CoalesceApiError, CoalesceConnectionError, CoalesceResponseError, CoalesceTimeoutError, createClient, type CoalesceClient } from "./index.ts";

type Seen = { method: string; url: string; headers: IncomingMessage["headers"]; body: Buffer };
type Handler = (request: Seen, response: ServerResponse) => void | Promise<void>;

let server: Server;
let baseUrl: string;
let handler: Handler;
let seen: Seen[] = [];
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "coalesce-client-"));
  server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const request = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks) };
    seen.push(request);
    await handler(request, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

afterEach(() => {
  seen = [];
});

function job(fields: Partial<Job> = {}): Job {
  return {
    id: "job_01jdq3x8m7k2v9c4n5p6r7s8t9",
    status: "queued",
    priority: "interactive",
    model: { name: "iris", version: 1, alias: null },
    counts: { total: 3, received: 3, succeeded: 0, failed: 0 },
    progress: 0,
    eta_seconds: null,
    id_column: null,
    execution: { provider: null, batch_rows: null },
    expires_at: null,
    webhook_url: null,
    created_at: "2025-01-01T00:00:00.000Z",
    started_at: null,
    completed_at: null,
    ...fields,
  };
}

function send(res: ServerResponse, status: number, body: unknown, type = "application/json", headers: Record<string, string> = {}) {
  res.writeHead(status, { "Content-Type": type, ...headers });
  res.end(typeof body === "string" ? body : JSON.stringify(body));
}

function problem(status: number, code: string, detail: string, errors?: { field: string; message: string }[]) {
  return {
    type: `https://coalesce.dev/problems/${code}`,
    title: "x",
    status,
    detail,
    code,
    request_id: "req_123",
    ...(errors ? { errors } : {}),
  };
}

const client = () => createClient({ baseUrl, apiKey: "csk_test" });

describe("buildCsvUploadQuery", () => {
  it("names every option the way the API reads it, one map.INPUT per input", () => {
    const query = buildCsvUploadQuery({
      model: "iris@2",
      idColumn: "row_id",
      ignore: ["target", "split"],
      maxErrors: 5,
      map: { features: ["a", "b", "c", "d"], mask: ["m"] },
    });
    expect(query.toString()).toBe(
      "model=iris%402&id_column=row_id&ignore=target%2Csplit&max_errors=5&map.features=a%2Cb%2Cc%2Cd&map.mask=m",
    );
    expect(buildCsvUploadQuery({ model: "iris" }).toString()).toBe("model=iris");
  });

  it("refuses what the query cannot say", () => {
    expect(() => buildCsvUploadQuery({ model: "iris", ignore: ["a,b"] })).toThrow("without commas");
    expect(() => buildCsvUploadQuery({ model: "iris", map: { features: [] } })).toThrow("map.features names no columns");
    expect(() => buildCsvUploadQuery({ model: "iris", maxErrors: -1 })).toThrow("maxErrors");
  });
});

describe("uploadCsv", () => {
  const csv = "row_id,a,b,target\n" + Array.from({ length: 5000 }, (_, i) => `${i},${i * 0.5},${i * 0.25},${i % 3}`).join("\n") + "\n";

  it("streams the file as text/csv with the options in the query, and reports progress up to the file's size", async () => {
    const file = path.join(dir, "data.csv");
    await writeFile(file, csv);
    handler = (_req, res) => send(res, 202, job());
    const progress: [number, number | null][] = [];
    const accepted = await client().uploadCsv({
      model: "iris",
      file,
      idColumn: "row_id",
      ignore: ["target"],
      onUploadProgress: (sent, total) => progress.push([sent, total]),
    });
    expect(accepted.id).toBe(job().id);
    const [request] = seen;
    expect(request).toMatchObject({ method: "POST", url: "/v1/jobs?model=iris&id_column=row_id&ignore=target" });
    expect(request?.headers).toMatchObject({ "content-type": "text/csv", authorization: "Bearer csk_test" });
    expect(request?.headers["content-encoding"]).toBeUndefined();
    expect(request?.body.toString()).toBe(csv);
    expect(progress[0]).toEqual([0, csv.length]);
    expect(progress.at(-1)).toEqual([csv.length, csv.length]);
    expect(progress.every(([sent], i) => i === 0 || sent >= (progress[i - 1]?.[0] ?? 0))).toBe(true);
  });

  it("gzips on the fly with gzip: true, counting the file's bytes, not the compressed ones", async () => {
    handler = (_req, res) => send(res, 202, job());
    let last: [number, number | null] = [0, 0];
    await client().uploadCsv({ model: "iris", file: Readable.from([csv]), gzip: true, onUploadProgress: (...args) => (last = args) });
    const [request] = seen;
    expect(request?.headers["content-encoding"]).toBe("gzip");
    expect(request?.body.length).toBeLessThan(csv.length / 2);
    expect(gunzipSync(request?.body ?? Buffer.alloc(0)).toString()).toBe(csv);
    expect(last).toEqual([csv.length, null]);
  });

  it("takes a web ReadableStream too", async () => {
    handler = (_req, res) => send(res, 202, job());
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("a,b\n1,2\n"));
        controller.close();
      },
    });
    await client().uploadCsv({ model: "iris", file: body });
    expect(seen[0]?.body.toString()).toBe("a,b\n1,2\n");
  });

  it("fails on a missing file before sending anything", async () => {
    handler = (_req, res) => send(res, 202, job());
    await expect(client().uploadCsv({ model: "iris", file: path.join(dir, "nope.csv") })).rejects.toMatchObject({ code: "ENOENT" });
    expect(seen).toHaveLength(0);
  });

  it("surfaces the API's refusal as CoalesceApiError with the 422's field errors", async () => {
    handler = (_req, res) =>
      send(res, 422, problem(422, "validation_failed", "header: no column 'd' for map.features", [{ field: "header", message: "no column 'd'" }]), "application/problem+json");
    const error = await client().uploadCsv({ model: "iris", file: Readable.from([csv]) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CoalesceApiError);
    expect(error).toMatchObject({
      status: 422,
      code: "validation_failed",
      detail: "header: no column 'd' for map.features",
      requestId: "req_123",
      errors: [{ field: "header", message: "no column 'd'" }],
    });
  });
});

describe("uploadCsv against a server that answers before reading the body", () => {
  let early: Server;
  let earlyUrl: string;
  beforeAll(async () => {
    early = createServer((_req, res) => send(res, 404, problem(404, "not_found", "no model named 'nope'; register it first"), "application/problem+json"));
    await new Promise<void>((resolve) => early.listen(0, "127.0.0.1", resolve));
    earlyUrl = `http://127.0.0.1:${(early.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    early.closeAllConnections();
    await new Promise((resolve) => early.close(resolve));
  });

  it("reports the answer (not a broken connection) and stops reading the source", async () => {
    let produced = 0;
    const endless = new Readable({
      read() {
        produced += 65536;
        this.push(Buffer.alloc(65536, 0x31));
      },
    });
    const upload = createClient({ baseUrl: earlyUrl, apiKey: "k" }).uploadCsv({ model: "nope", file: endless });
    await expect(upload).rejects.toMatchObject({ name: "CoalesceApiError", status: 404, detail: "no model named 'nope'; register it first" });
    expect(endless.destroyed).toBe(true);
    expect(produced).toBeLessThan(1024 * 1024 * 1024);
  });
});

describe("errors", () => {
  it("reads a problem+json body into CoalesceApiError", async () => {
    handler = (_req, res) => send(res, 401, problem(401, "unauthorized", "the API key is not valid"), "application/problem+json");
    const error = await client().listModels().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CoalesceApiError);
    expect(error).toMatchObject({ status: 401, code: "unauthorized", detail: "the API key is not valid", requestId: "req_123", errors: [] });
    expect((error as Error).message).toBe("401 unauthorized: the API key is not valid");
  });

  it("still says something for an error page that is not a problem document", async () => {
    handler = (_req, res) => send(res, 502, "<html>Bad Gateway</html>", "text/html", { "X-Request-Id": "req_proxy" });
    await expect(client().getJob("job_x")).rejects.toMatchObject({
      status: 502,
      code: null,
      detail: "<html>Bad Gateway</html>",
      requestId: "req_proxy",
    });
  });

  it("reads Retry-After as seconds, or as a date from something in between", async () => {
    handler = (_req, res) => send(res, 503, problem(503, "service_unavailable", "the queue is unreachable"), "application/problem+json", { "Retry-After": "7" });
    await expect(client().listModels()).rejects.toMatchObject({ status: 503, code: "service_unavailable", retryAfterSeconds: 7 });
    handler = (_req, res) => send(res, 503, "Service Unavailable", "text/plain", { "Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT" });
    await expect(client().listModels()).rejects.toMatchObject({ status: 503, code: null, retryAfterSeconds: 0 });
    handler = (_req, res) => send(res, 404, problem(404, "not_found", "no job"), "application/problem+json");
    await expect(client().getJob("job_x")).rejects.toMatchObject({ retryAfterSeconds: null });
  });

  it("names the URL when nothing listens there", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));
    const error = await createClient({ baseUrl: url, apiKey: "k" }).listModels().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CoalesceConnectionError);
    expect(error).toMatchObject({ url, code: "ECONNREFUSED" });
    expect((error as Error).message).toContain(`cannot reach Coalesce at ${url}`);
  });

  it("refuses a body that does not match the contract", async () => {
    handler = (_req, res) => send(res, 200, { id: "job_x", status: "exploded" });
    const error = await client().getJob("job_x").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CoalesceResponseError);
    expect((error as Error).message).toContain("status");
  });

  it("refuses a base URL that is not one", () => {
    expect(() => createClient({ baseUrl: "localhost:3000", apiKey: "k" })).toThrow("baseUrl is not an http(s) URL");
    expect(() => createClient({ baseUrl: "http//127.0.0.1", apiKey: "k" })).toThrow("baseUrl is not an http(s) URL");
  });
});

describe("429: waiting out rate limits", () => {
  const rateLimited = (res: ServerResponse, retryAfter = "1") =>
    send(res, 429, problem(429, "rate_limited", "key k made more than 5 requests in one second"), "application/problem+json", {
      "Retry-After": retryAfter,
      "RateLimit-Policy": '"requests";q=5;w=1',
      RateLimit: '"requests";r=0;t=1',
    });

  /** Answers 429 `times` times, then as `then` does. */
  function refusedThen(times: number, then: Handler, retryAfter = "1"): Handler {
    let left = times;
    return (req, res) => (left-- > 0 ? rateLimited(res, retryAfter) : then(req, res));
  }

  it("sends a POST again after Retry-After, the same body each time, until it is accepted", async () => {
    handler = refusedThen(2, (_req, res) => send(res, 202, job()));
    const started = performance.now();
    const accepted = await client().createJob({ model: "iris", inputs: [{ features: [1, 2, 3, 4] }] });
    expect(accepted.id).toBe(job().id);
    expect(seen).toHaveLength(3);
    expect(new Set(seen.map((request) => request.body.toString())).size).toBe(1);
    // With one Idempotency-Key throughout, so the server could never make two jobs of it.
    const keys = new Set(seen.map((request) => request.headers["idempotency-key"]));
    expect(keys.size).toBe(1);
    expect([...keys][0]).toMatch(/^[0-9a-f-]{36}$/);
    // It waited the two Retry-After seconds rather than hammering the server.
    expect(performance.now() - started).toBeGreaterThanOrEqual(1_900);
  });

  it("sends a JSON job with the caller's Idempotency-Key, or none with idempotencyKey: false", async () => {
    handler = (_req, res) => send(res, 202, job());
    await client().createJob({ model: "iris", inputs: [{ features: [1, 2, 3, 4] }] }, { idempotencyKey: "order-42" });
    await client().createJob({ model: "iris", inputs: [{ features: [1, 2, 3, 4] }] }, { idempotencyKey: false });
    await client().createJob({ model: "iris", inputs: [{ features: [1, 2, 3, 4] }] });
    await client().createJob({ model: "iris", inputs: [{ features: [1, 2, 3, 4] }] });
    const [mine, none, first, second] = seen.map((request) => request.headers["idempotency-key"]);
    expect([mine, none]).toEqual(["order-42", undefined]);
    // A fresh key for each new submission: two calls are two jobs.
    expect(first).not.toBe(second);
  });

  it("gives up after maxRetries, throwing the 429 with retryAfterSeconds", async () => {
    handler = (_req, res) => rateLimited(res);
    const limited = createClient({ baseUrl, apiKey: "csk_test", rateLimitRetry: { maxRetries: 1 } });
    await expect(limited.listJobs()).rejects.toMatchObject({ status: 429, code: "rate_limited", retryAfterSeconds: 1 });
    expect(seen).toHaveLength(2);
  });

  it("does not wait at all when one Retry-After would pass maxWaitMs, or with rateLimitRetry: false", async () => {
    handler = (_req, res) => rateLimited(res, "31");
    await expect(client().listJobs()).rejects.toMatchObject({ status: 429, retryAfterSeconds: 31 });
    expect(seen).toHaveLength(1);
    handler = (_req, res) => rateLimited(res);
    await expect(createClient({ baseUrl, apiKey: "csk_test", rateLimitRetry: false }).listJobs()).rejects.toBeInstanceOf(CoalesceApiError);
    expect(seen).toHaveLength(2);
  });

  it("predict throws a 429 at once unless asked to wait", async () => {
    const answer: Handler = (_req, res) =>
      send(res, 200, { model: { name: "iris", version: 1, alias: null }, outputs: [] }, "application/json", { [PREDICT_CACHE_HEADER]: "miss" });
    handler = refusedThen(1, answer);
    await expect(client().predict("iris", [{ features: [1, 2, 3, 4] }])).rejects.toMatchObject({ status: 429, retryAfterSeconds: 1 });
    expect(seen).toHaveLength(1);
    handler = refusedThen(1, answer);
    expect((await client().predict("iris", [{ features: [1, 2, 3, 4] }], { waitOnRateLimit: true })).cache).toBe("miss");
    expect(seen).toHaveLength(3);
  });

  it("uploads a file named by its path again, whole; a stream, which cannot be read twice, is refused at once", async () => {
    const csv = "row_id,a\n1,2\n";
    const file = path.join(dir, "limited.csv");
    await writeFile(file, csv);
    handler = refusedThen(1, (_req, res) => send(res, 202, job()));
    expect((await client().uploadCsv({ model: "iris", file })).id).toBe(job().id);
    expect(seen.map((request) => request.body.toString())).toEqual([csv, csv]);
    handler = refusedThen(1, (_req, res) => send(res, 202, job()));
    await expect(client().uploadCsv({ model: "iris", file: Readable.from([Buffer.from(csv)]) })).rejects.toMatchObject({ status: 429 });
    expect(seen).toHaveLength(3);
  });
});

describe("reading", () => {
  it("keeps a base URL's path prefix and sends no Authorization for an empty key", async () => {
    handler = (_req, res) => send(res, 200, { data: [] });
    await createClient({ baseUrl: `${baseUrl}/coalesce/`, apiKey: "" }).listModels();
    expect(seen[0]?.url).toBe("/coalesce/v1/models");
    expect(seen[0]?.headers.authorization).toBeUndefined();
  });

  it("iterateResults follows next_cursor to the end", async () => {
    const rows: ResultRow[] = Array.from({ length: 5 }, (_, index) => ({ index, outputs: { label: index % 3 } }));
    handler = (req, res) => {
      const url = new URL(req.url, baseUrl);
      const from = Number(url.searchParams.get("cursor") ?? 0);
      const limit = Number(url.searchParams.get("limit"));
      const next = from + limit < rows.length ? String(from + limit) : null;
      send(res, 200, { data: rows.slice(from, from + limit), next_cursor: next, job_status: "succeeded", complete: true });
    };
    const all: ResultRow[] = [];
    for await (const row of client().iterateResults("job_a", { pageSize: 2 })) all.push(row);
    expect(all).toEqual(rows);
    expect(seen.map((request) => request.url)).toEqual([
      "/v1/jobs/job_a/results?limit=2",
      "/v1/jobs/job_a/results?cursor=2&limit=2",
      "/v1/jobs/job_a/results?cursor=4&limit=2",
    ]);
  });

  it("waitForJob polls until the job is finished, showing each state", async () => {
    const states = [job({ status: "queued" }), job({ status: "running", progress: 0.5 }), job({ status: "succeeded", progress: 1 })];
    handler = (_req, res) => send(res, 200, states[Math.min(seen.length - 1, states.length - 1)]);
    const shown: string[] = [];
    const done = await client().waitForJob("job_a", { intervalMs: 5, onProgress: (j) => shown.push(j.status) });
    expect(done.status).toBe("succeeded");
    expect(shown).toEqual(["queued", "running", "succeeded"]);
    // After the first look, each request is a long-poll the server may hold for the interval.
    expect(seen.map((request) => request.url)).toEqual(["/v1/jobs/job_a", "/v1/jobs/job_a?wait=0.005", "/v1/jobs/job_a?wait=0.005"]);
  });

  it("manages webhooks: create, change, rotate, delete, deliveries and a replay", async () => {
    const endpoint = {
      id: "wh_1",
      url: "https://example.com/hooks",
      events: ["job.succeeded"],
      description: null,
      enabled: true,
      disabled_reason: null,
      previous_secret_expires_at: null,
      created_at: "2025-01-01T00:00:00.000Z",
      updated_at: "2025-01-01T00:00:00.000Z",
    };
    handler = (request, res) => {
      if (request.method === "DELETE" || request.url.endsWith("/retry")) return send(res, request.method === "DELETE" ? 204 : 202, request.method === "DELETE" ? "" : { id: "dlv_1", state: "pending" });
      if (request.url.endsWith("/rotate-secret")) return send(res, 200, { secret: "whsec_bmV3", previous_secret_expires_at: "2025-01-02T00:00:00.000Z" });
      if (request.url.endsWith("/deliveries")) return send(res, 200, { data: [] });
      return send(res, request.method === "POST" ? 201 : 200, request.method === "POST" ? { ...endpoint, secret: "whsec_b2xk" } : endpoint);
    };
    const c = client();
    expect((await c.createWebhook({ url: endpoint.url, events: ["job.succeeded"] })).secret).toBe("whsec_b2xk");
    await c.updateWebhook("wh_1", { enabled: false });
    expect((await c.rotateWebhookSecret("wh_1", 60)).secret).toBe("whsec_bmV3");
    await c.deleteWebhook("wh_1");
    expect((await c.listDeliveries("job_a")).data).toEqual([]);
    await c.retryDelivery("dlv_1");
    expect(seen.map((r) => `${r.method} ${r.url}`)).toEqual([
      "POST /v1/webhooks",
      "PATCH /v1/webhooks/wh_1",
      "POST /v1/webhooks/wh_1/rotate-secret",
      "DELETE /v1/webhooks/wh_1",
      "GET /v1/jobs/job_a/deliveries",
      "POST /v1/deliveries/dlv_1/retry",
    ]);
    expect(JSON.parse(seen[2]!.body.toString())).toEqual({ overlap_seconds: 60 });
  });

  it("waitForJob gives up after timeoutMs with the last state", async () => {
    handler = (_req, res) => send(res, 200, job({ status: "running" }));
    const error = await client().waitForJob("job_a", { intervalMs: 10, timeoutMs: 50 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CoalesceTimeoutError);
    expect((error as CoalesceTimeoutError).job.status).toBe("running");
  });

  it("downloadResults asks for the format and reads the job-status headers", async () => {
    handler = (_req, res) =>
      send(res, 200, "row_id,label,error\n7,0,\n", "text/csv; charset=utf-8", { "Coalesce-Job-Status": "running", "Coalesce-Results-Complete": "false" });
    const download = await client().downloadResults("job_a", "csv");
    expect(seen[0]?.headers.accept).toBe("text/csv");
    expect(download).toMatchObject({ jobStatus: "running", complete: false });
    expect(await new Response(download.body).text()).toBe("row_id,label,error\n7,0,\n");
  });

  it("downloadResults refuses an answer in another format", async () => {
    handler = (_req, res) => send(res, 200, { data: [], next_cursor: null, job_status: "succeeded", complete: true }, "application/json", { "Coalesce-Job-Status": "succeeded" });
    await expect(client().downloadResults("job_a", "ndjson")).rejects.toThrow(/application\/json for Accept: application\/x-ndjson/);
  });
});

describe("aliases and versions", () => {
  const alias = {
    model: "iris",
    name: "production",
    routes: [
      { version: 2, weight: 90 },
      { version: 3, weight: 10 },
    ],
    shadow: { version: 4, sample: 0.2 },
    guard: { max_error_rate: 0.01, min_rows: 1000, compare_sample: 0.1 },
    revision: 2,
    created_at: "2025-01-01T00:00:00.000Z",
    updated_at: "2025-01-02T00:00:00.000Z",
  };
  const entry = {
    id: "7",
    at: "2025-01-02T00:00:00.000Z",
    action: "guard_rollback",
    key_id: null,
    before: { routes: alias.routes, shadow: null, guard: alias.guard },
    after: { routes: [{ version: 2, weight: 100 }], shadow: null, guard: alias.guard },
    reason: { figure: "error_rate", value: 0.05, limit: 0.01, version: 3, role: "route", rows: 1200 },
    undone: false,
  };
  const comparison = {
    model: "iris",
    alias: "production",
    revision: 2,
    versions: [{ version: 2, role: "route", rows: 900, errors: 0, error_rate: 0, mean_run_ms: 0.02 }],
    pairs: [{ primary_version: 2, shadow_version: 4, compared: 180, agreement: 0.99, outputs: [{ output: "label", compared: 180, agreement: 0.99, mean_abs_diff: 0.01, max_abs_diff: 1 }] }],
  };

  it("calls each alias route with its method, path and body, and parses the answers through the contracts", async () => {
    handler = (request, res) => {
      if (request.method === "DELETE") return send(res, 204, "");
      if (request.url.includes("/history")) return send(res, 200, { data: [entry] });
      if (request.url.endsWith("/comparison")) return send(res, 200, comparison);
      if (request.url.endsWith("/aliases")) return send(res, 200, { data: [alias] });
      return send(res, request.method === "PUT" ? 201 : 200, alias);
    };
    const c = client();
    const routing = { routes: alias.routes, shadow: alias.shadow, guard: { max_error_rate: 0.01, min_rows: 1000, compare_sample: 0.1 } };
    expect(await c.putAlias("iris", "production", routing)).toEqual(alias);
    expect((await c.getAlias("iris", "production")).routes).toEqual(alias.routes);
    expect((await c.listAliases("iris")).data).toHaveLength(1);
    await c.deleteAlias("iris", "production");
    expect((await c.aliasHistory("iris", "production", { limit: 10, before: "42" })).data[0]?.reason).toMatchObject({ figure: "error_rate", version: 3 });
    expect((await c.rollbackAlias("iris", "production")).revision).toBe(2);
    expect((await c.aliasComparison("iris", "production")).pairs[0]?.agreement).toBe(0.99);
    expect(seen.map((r) => `${r.method} ${r.url}`)).toEqual([
      "PUT /v1/models/iris/aliases/production",
      "GET /v1/models/iris/aliases/production",
      "GET /v1/models/iris/aliases",
      "DELETE /v1/models/iris/aliases/production",
      "GET /v1/models/iris/aliases/production/history?limit=10&before=42",
      "POST /v1/models/iris/aliases/production/rollback",
      "GET /v1/models/iris/aliases/production/comparison",
    ]);
    expect(seen[0]?.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(seen[0]!.body.toString())).toEqual(routing);
  });

  it("deletes a version, and changes its description and labels; a 409 comes back as CoalesceApiError", async () => {
    const version = {
      name: "iris",
      version: 2,
      sha256: "ab".repeat(32),
      size_bytes: 10,
      inputs: [],
      outputs: [],
      batching: { max_batch_rows: null, max_batch_delay_ms: null, max_batch_bytes: null },
      description: "retrained",
      labels: { stage: "prod" },
      aliases: ["production"],
      shadow_of: [],
      created_at: "2025-01-01T00:00:00.000Z",
    };
    handler = (request, res) => {
      if (request.method === "DELETE" && request.url.endsWith("/3")) {
        return send(res, 409, problem(409, "conflict", "version 3 is in use by the alias 'production'"), "application/problem+json");
      }
      return request.method === "DELETE" ? send(res, 204, "") : send(res, 200, version);
    };
    const c = client();
    expect(await c.updateModelVersion("iris", 2, { description: "retrained", labels: { stage: "prod" } })).toMatchObject({ description: "retrained", aliases: ["production"] });
    await c.deleteModelVersion("iris", 2);
    await expect(c.deleteModelVersion("iris", 3)).rejects.toMatchObject({ name: "CoalesceApiError", status: 409, code: "conflict", detail: expect.stringContaining("alias 'production'") });
    expect(seen.map((r) => `${r.method} ${r.url}`)).toEqual(["PATCH /v1/models/iris/versions/2", "DELETE /v1/models/iris/versions/2", "DELETE /v1/models/iris/versions/3"]);
    expect(JSON.parse(seen[0]!.body.toString())).toEqual({ description: "retrained", labels: { stage: "prod" } });
  });

  it("sends a routing key: the header on predict, the body or query on a job; an alias names the predict path", async () => {
    const answer = { model: { name: "iris", version: 3, alias: "canary" }, outputs: [{ index: 0, outputs: { label: 1 } }] };
    handler = (request, res) => (request.url.includes("/predict") ? send(res, 200, answer, "application/json", { "Coalesce-Cache": "miss" }) : send(res, 202, job()));
    const c = client();
    expect((await c.predict({ name: "iris", alias: "canary" }, [{ features: [1, 2, 3, 4] }], { routingKey: "user-1" })).model).toEqual(answer.model);
    await c.predict("iris@canary", [{ features: [1, 2, 3, 4] }]);
    await c.createJob({ model: "iris@canary", inputs: [{ features: [1, 2, 3, 4] }], routing_key: "user-2" });
    const file = path.join(dir, "routed.csv");
    await writeFile(file, "a,b,c,d\n1,2,3,4\n");
    await c.uploadCsv({ model: "iris@canary", file, routingKey: "user-3" });
    expect(seen.map((r) => `${r.method} ${r.url}`)).toEqual([
      "POST /v1/models/iris@canary/predict",
      "POST /v1/models/iris@canary/predict",
      "POST /v1/jobs",
      "POST /v1/jobs?model=iris%40canary&routing_key=user-3",
    ]);
    expect(seen[0]?.headers["coalesce-routing-key"]).toBe("user-1");
    expect(seen[1]?.headers["coalesce-routing-key"]).toBeUndefined();
    expect(JSON.parse(seen[2]!.body.toString())).toMatchObject({ routing_key: "user-2" });
  });
});

/** The API app on a real loopback port, as the client meets it in production. */
async function listen(api: TestApi): Promise<{ url: string; close(): Promise<void> }> {
  const listening = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: api.app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s as Server));
  });
  return {
    url: `http://127.0.0.1:${(listening.address() as AddressInfo).port}`,
    async close() {
      listening.closeAllConnections();
      await new Promise((resolve) => listening.close(resolve));
    },
  };
}

/** The suite's `Authorization: Bearer ...` value as the client's apiKey. */
const keyOf = (auth: string) => auth.replace(/^Bearer /, "");

describe("predict against the API and a worker", () => {
  const suite = useIrisSuite("client-predict");
  let worker: RunningWorker;
  let api: Awaited<ReturnType<typeof listen>>;
  let coalesce: CoalesceClient;
  beforeAll(async () => {
    worker = await startTestWorker(suite.services);
    api = await listen(suite.api);
    coalesce = createClient({ baseUrl: api.url, apiKey: keyOf(suite.auth) });
  });
  afterAll(async () => {
    await api?.close();
    await worker?.close();
  });

  it("scores rows by model name with the reference's outputs, and the same rows again come from the cache", async () => {
    const rows = irisInputs(suite, 5);
    const reference = await readReference("iris");
    const first = await coalesce.predict("iris", rows);
    expect(first.model).toEqual({ name: "iris", version: 1, alias: null });
    expect(first.cache).toBe("miss");
    expect(first.outputs.map((row) => row.index)).toEqual([0, 1, 2, 3, 4]);
    first.outputs.forEach((row, i) => {
      expect(row.error).toBeUndefined();
      expect(row.outputs?.label).toBe(reference[i]?.label);
      (row.outputs?.probabilities as number[]).forEach((p, j) => expect(p).toBeCloseTo(reference[i]?.probabilities[j] ?? Number.NaN, 5));
    });
    const again = await coalesce.predict("iris", rows);
    expect(again.cache).toBe("hit");
    expect(again.outputs).toEqual(first.outputs);
  });

  it("cache: refresh runs the model anyway and stores the answer; skip neither reads nor writes the cache", async () => {
    const rows = irisInputs(suite, 12).slice(8);
    expect((await coalesce.predict("iris", rows)).cache).toBe("miss");
    expect((await coalesce.predict("iris", rows)).cache).toBe("hit");
    expect((await coalesce.predict("iris", rows, { cache: "refresh" })).cache).toBe("miss");
    expect((await coalesce.predict("iris", rows)).cache).toBe("hit");
    expect((await coalesce.predict("iris", rows, { cache: "skip" })).cache).toBe("miss");

    const unseen = irisInputs(suite, 20).slice(15);
    expect((await coalesce.predict("iris", unseen, { cache: "skip" })).cache).toBe("miss");
    expect((await coalesce.predict("iris", unseen)).cache, "a no-store answer was stored").toBe("miss");
  });

  it("names a version with { name, version }; an unknown version or model is a 404 CoalesceApiError", async () => {
    const answer = await coalesce.predict({ name: "iris", version: 1 }, irisInputs(suite, 1));
    expect(answer.model).toEqual({ name: "iris", version: 1, alias: null });
    expect(answer.outputs).toHaveLength(1);
    await expect(coalesce.predict({ name: "iris", version: 2 }, irisInputs(suite, 1))).rejects.toMatchObject({
      name: "CoalesceApiError",
      status: 404,
      code: "not_found",
      detail: "model 'iris' has no version 2",
    });
    await expect(coalesce.predict("nope", irisInputs(suite, 1))).rejects.toMatchObject({ status: 404, code: "not_found", detail: expect.stringContaining("no model named 'nope'") });
  });

  it("a row that does not fit the model is a 422 naming the row and field", async () => {
    const error = await coalesce.predict("iris", [{ features: [5.1, 3.5, 1.4, 0.2] }, { features: [1, 2, 3] }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CoalesceApiError);
    expect(error).toMatchObject({ status: 422, code: "validation_failed", retryAfterSeconds: null });
    expect((error as CoalesceApiError).errors).toEqual([{ field: "inputs[1].features", message: expect.stringContaining("expected 4 values, got 3") }]);
  });

  it("sets an alias, predicts through it with a routing key, reads its history, and removes it", async () => {
    const canary = await coalesce.putAlias("iris", "canary", { version: 1 });
    expect(canary).toMatchObject({ model: "iris", name: "canary", routes: [{ version: 1, weight: 100 }], shadow: null, guard: null });
    const answer = await coalesce.predict({ name: "iris", alias: "canary" }, irisInputs(suite, 1), { routingKey: "user-1", cache: "skip" });
    expect(answer.model).toEqual({ name: "iris", version: 1, alias: "canary" });
    expect((await coalesce.predict("iris@canary", irisInputs(suite, 1))).model.alias).toBe("canary");
    expect((await coalesce.listAliases("iris")).data.map((a) => a.name)).toEqual(["canary"]);
    // Its first routing has nothing before it to go back to.
    await expect(coalesce.rollbackAlias("iris", "canary")).rejects.toMatchObject({ status: 409, code: "conflict" });
    await expect(coalesce.deleteModelVersion("iris", 1)).rejects.toMatchObject({ status: 409, detail: expect.stringContaining("alias 'canary'") });
    await coalesce.deleteAlias("iris", "canary");
    await expect(coalesce.getAlias("iris", "canary")).rejects.toMatchObject({ status: 404, detail: expect.stringContaining("no alias 'canary'") });
    expect((await coalesce.aliasHistory("iris", "canary")).data.map((e) => e.action)).toEqual(["delete", "set"]);
  });
});

describe("predict when no worker answers", () => {
  let services: TestServices;
  let apis: TestApi[] = [];
  let listening: Awaited<ReturnType<typeof listen>>[] = [];
  let apiKey: string;
  const PREDICT_TIMEOUT_MS = 300;

  /** A client of a fresh API process-part (so no worker count is cached), counting the requests it sends. */
  async function clientOfFreshApi(): Promise<{ client: CoalesceClient; requests: () => number }> {
    const api = createTestApi(services, {}, { timeoutMs: PREDICT_TIMEOUT_MS });
    apis.push(api);
    const server = await listen(api);
    listening.push(server);
    let requests = 0;
    const counting: typeof fetch = (input, init) => {
      requests++;
      return fetch(input, init);
    };
    return { client: createClient({ baseUrl: server.url, apiKey, fetch: counting }), requests: () => requests };
  }

  beforeAll(async () => {
    services = await createTestServices();
    const setup = createTestApi(services);
    apis.push(setup);
    const auth = await setup.createTenant("client-predict-down");
    await registerIris(setup, auth);
    apiKey = keyOf(auth);
  });
  afterAll(async () => {
    for (const server of listening) await server.close();
    for (const api of apis) await api.close();
    await services?.cleanup();
    apis = [];
    listening = [];
  });

  it("with no worker running: 503 service_unavailable with retryAfterSeconds, in one request (not retried)", async () => {
    const { client: coalesce, requests } = await clientOfFreshApi();
    const error = await coalesce.predict("iris", [{ features: [5.1, 3.5, 1.4, 0.2] }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CoalesceApiError);
    expect(error).toMatchObject({ status: 503, code: "service_unavailable", retryAfterSeconds: 5 });
    expect((error as CoalesceApiError).detail).toContain("no worker is running");
    expect(requests()).toBe(1);
  });

  it("with a worker listed that never answers: 504 timeout, in one request; the caller's abort comes first", async () => {
    // A worker that says it is alive but reads nothing: what a stalled one looks like to the API.
    await publishWorkerStatus(apis[0]!.deps.redis, services.queuePrefix, {
      id: "stalled-worker",
      provider: "cpu",
      concurrency: 1,
      startedAt: new Date().toISOString(),
      staleAfterMs: 10 * 60_000,
      predict: true,
    });
    const { client: coalesce, requests } = await clientOfFreshApi();
    const error = await coalesce.predict("iris", [{ features: [5.1, 3.5, 1.4, 0.2] }], { cache: "skip" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CoalesceApiError);
    expect(error).toMatchObject({ status: 504, code: "timeout", retryAfterSeconds: null });
    expect((error as CoalesceApiError).detail).toContain(`no answer within PREDICT_TIMEOUT_MS (${PREDICT_TIMEOUT_MS} ms)`);
    expect(requests()).toBe(1);

    const stop = new AbortController();
    const pending = coalesce.predict("iris", [{ features: [5.1, 3.5, 1.4, 0.3] }], { signal: stop.signal });
    stop.abort(new Error("the caller gave up"));
    await expect(pending).rejects.toThrow("the caller gave up");
  });
});
