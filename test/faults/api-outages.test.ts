// The API process through real outages: its Postgres and Redis reached through TCP proxies that the
// test takes down (connections reset, new ones refused) and brings back. What a client sees: quick
// 503s with Retry-After that created nothing, or for a job (JSON or a CSV upload) under a Redis
// outage a 202 whose job the worker's reconciler queues later; a CSV upload that outlives a Postgres
// outage while it waits for its client; long-polls that answer within their wait; and a log that
// stays JSON lines, a couple per outage.
import { connect, type Socket } from "node:net";
import type { Job, Problem } from "@coalesce/contracts";
import { parseDatabaseUrl } from "@coalesce/db";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_MAIN, freePort, startProcess, stopProcess, waitUntilReady, type ServiceProcess } from "../../scripts/processes.ts";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { readModel } from "../support/fixtures.ts";
import { irisRows } from "../support/http.ts";
import { createTestServices, REDIS_URL, type TestServices } from "../support/services.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";
import { startTestWorker } from "../support/worker.ts";

const KEY = "csk_outage_0123456789abcdef";
/** "Within about 2 s": a request not answered by then is aborted, and the test fails. */
const ANSWER_WITHIN_MS = 2_500;

let services: TestServices;
let postgres: TcpProxy;
let redis: TcpProxy;
let api: ServiceProcess;
let baseUrl: string;
let worker: RunningWorker | undefined;
const lines: string[] = [];
let stderr = "";

type Answer = { status: number; headers: Headers; body: unknown };

async function send(method: string, route: string, options: { body?: string | Uint8Array; type?: string; withinMs?: number } = {}): Promise<Answer> {
  const response = await fetch(`${baseUrl}${route}`, {
    method,
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": options.type ?? "application/json" },
    ...(options.body === undefined ? {} : { body: options.body }),
    signal: AbortSignal.timeout(options.withinMs ?? ANSWER_WITHIN_MS),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // an event stream, or empty
  }
  return { status: response.status, headers: response.headers, body };
}

const jobBody = (rows = 3) => JSON.stringify({ model: "iris", inputs: irisRows(rows) });

function expectUnavailable(answer: Answer, route: string): void {
  expect(answer.status, `${route}: ${JSON.stringify(answer.body)}`).toBe(503);
  expect(answer.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  expect(Number(answer.headers.get("retry-after"))).toBeGreaterThan(0);
  expect((answer.body as Problem).code).toBe("service_unavailable");
}

async function countJobs(): Promise<number> {
  const client = new pg.Client({ connectionString: parseDatabaseUrl(services.databaseUrl).connectionString });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM "${services.schema}".jobs`);
    return Number(rows[0]?.n);
  } finally {
    await client.end();
  }
}

/** Waits until job `id` has succeeded, long-polling. */
async function waitForSuccess(id: string, ms = 45_000): Promise<void> {
  let status = "unknown";
  await eventually(async () => {
    const answer = await send("GET", `/v1/jobs/${id}?wait=5`, { withinMs: 5_000 + ANSWER_WITHIN_MS });
    status = (answer.body as Job).status;
    return status === "succeeded";
  }, ms).catch((error: unknown) => {
    throw new Error(`job ${id} is ${status}: ${(error as Error).message}`);
  });
}

/** Retries `attempt` until it returns true, for at most `ms` (the service coming back is not instant). */
async function eventually(attempt: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await attempt().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`not true within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** The API's log lines from `from` on. */
const linesSince = (from: number) => lines.slice(from);

const CSV_HEADER = "sepal_length,sepal_width,petal_length,petal_width\n";
const csvRows = (count: number) => `${irisRows(count).map((row) => row.features.join(",")).join("\n")}\n`;

/**
 * A CSV upload over a raw socket, its file sent piece by piece (chunked) as the test says: a client
 * that is slow, or pauses, mid-file. `answer` resolves with the response once the file has ended.
 */
async function openCsvUpload(): Promise<{ send(text: string): void; end(): void; answer: Promise<{ status: number; body: string }>; socket: Socket }> {
  const port = new URL(baseUrl).port;
  const socket = connect(Number(port), "127.0.0.1");
  socket.on("error", () => {});
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  let received = "";
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    socket.on("data", (data: Buffer) => (received += data.toString()));
    socket.once("close", () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1]);
      if (!status) reject(new Error(`no HTTP answer: ${JSON.stringify(received)}`));
      else resolve({ status, body: received.slice(received.indexOf("\r\n\r\n") + 4) });
    });
  });
  socket.write(
    `POST /v1/jobs?model=iris HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${KEY}\r\n` +
      "Content-Type: text/csv\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
  );
  return {
    socket,
    answer,
    send: (text) => void socket.write(`${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`),
    end: () => void socket.write("0\r\n\r\n"),
  };
}

/** The newest job as Postgres has it (read beside the API, not through it). */
async function newestJob(): Promise<{ id: string; sealed: boolean; status: string; error: { code: string } | null } | undefined> {
  const client = new pg.Client({ connectionString: parseDatabaseUrl(services.databaseUrl).connectionString });
  await client.connect();
  try {
    const { rows } = await client.query(`SELECT id, sealed, status, error FROM "${services.schema}".jobs ORDER BY created_at DESC LIMIT 1`);
    return rows[0];
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  services = await createTestServices();
  const databaseUrl = new URL(services.databaseUrl);
  const redisUrl = new URL(REDIS_URL);
  postgres = await startTcpProxy(Number(databaseUrl.port || 5432), databaseUrl.hostname);
  redis = await startTcpProxy(Number(redisUrl.port || 6379), redisUrl.hostname);
  databaseUrl.hostname = "127.0.0.1";
  databaseUrl.port = String(postgres.port);
  redisUrl.hostname = "127.0.0.1";
  redisUrl.port = String(redis.port);
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  api = startProcess(
    "api",
    API_MAIN,
    {
      ...services.env,
      DATABASE_URL: databaseUrl.toString(),
      REDIS_URL: redisUrl.toString(),
      PORT: String(port),
      BOOTSTRAP_API_KEY: KEY,
      MIGRATE_ON_START: "false",
      LOG_LEVEL: "info",
      // The client gives up on a silent connection a second after this (see the stall tests).
      DATABASE_QUERY_TIMEOUT_MS: "1000",
    },
    "pipe",
  );
  let partial = "";
  api.child.stdout?.on("data", (chunk: Buffer) => {
    const parts = (partial + chunk.toString()).split("\n");
    partial = parts.pop() ?? "";
    lines.push(...parts.filter((line) => line.length > 0));
  });
  api.child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  await waitUntilReady(baseUrl, [api]);
  const model = await send("POST", "/v1/models/iris/versions", { body: await readModel("iris"), type: "application/octet-stream", withinMs: 30_000 });
  expect(model.status).toBe(201);
});

afterAll(async () => {
  await worker?.close();
  if (api) await stopProcess(api);
  await postgres?.close();
  await redis?.close();
  await services?.cleanup();
});

describe("Postgres down", () => {
  it("every route answers 503 with Retry-After within about 2 s, and a refused POST created nothing", async () => {
    const created = await send("POST", "/v1/jobs", { body: jobBody() });
    expect(created.status).toBe(202);
    const jobId = (created.body as Job).id;
    const before = await countJobs();
    const logFrom = lines.length;

    await postgres.down();
    // Every /v1 route first looks up the key: that it could not is no fault of the key (no 401).
    for (const [method, route, body] of [
      ["GET", `/v1/jobs/${jobId}`],
      ["GET", `/v1/jobs/${jobId}?wait=1`],
      ["GET", "/v1/jobs"],
      ["POST", "/v1/jobs", jobBody()],
      ["POST", "/v1/jobs", jobBody()],
      ["GET", "/v1/models"],
      ["GET", `/v1/jobs/${jobId}/results`],
      ["POST", `/v1/jobs/${jobId}/cancel`],
      ["GET", "/readyz"],
    ] as const) {
      const answer = await send(method, route, body === undefined ? {} : { body });
      expectUnavailable(answer, `${method} ${route}`);
      if (route === "/readyz") expect((answer.body as Problem).detail).toMatch(/postgres is unreachable/);
    }
    expect((await send("GET", "/healthz")).status).toBe(200);

    await postgres.up();
    await eventually(async () => (await send("GET", "/readyz")).status === 200);
    expect(await countJobs()).toBe(before);
    expect((await send("GET", `/v1/jobs/${jobId}`)).status).toBe(200);
    expect((await send("POST", "/v1/jobs", { body: jobBody() })).status).toBe(202);

    // One warning when it went away, one line when it was back; no stack dumps, no line per retry.
    await eventually(async () => linesSince(logFrom).some((line) => line.includes("postgres is back")), 5_000);
    const said = linesSince(logFrom).map((line) => JSON.parse(line) as { msg: string });
    expect(said.filter((entry) => entry.msg === "postgres unavailable")).toHaveLength(1);
    expect(said.filter((entry) => entry.msg.startsWith("postgres is back"))).toHaveLength(1);
  });

  it("a CSV upload waiting for its client outlives an outage: 202 with every row, and its heartbeat said the outage once", async () => {
    const logFrom = lines.length;
    const before = await countJobs();
    const upload = await openCsvUpload();
    upload.send(CSV_HEADER + csvRows(1100));
    await eventually(async () => (await countJobs()) === before + 1);
    await postgres.down();
    // Several heartbeats (every 2 s) fail while the client sends nothing.
    await new Promise((resolve) => setTimeout(resolve, 7_000));
    await postgres.up();
    await eventually(async () => (await send("GET", "/readyz")).status === 200);
    upload.send(csvRows(900));
    upload.end();
    const answer = await upload.answer;
    expect(answer.status, answer.body).toBe(202);
    const job = JSON.parse(answer.body.slice(answer.body.indexOf("{"), answer.body.lastIndexOf("}") + 1)) as Job;
    expect(job.counts.total).toBe(2000);
    const said = linesSince(logFrom).map((line) => JSON.parse(line) as { msg: string; jobId?: string; heartbeatsFailed?: number });
    // Several beats failed (the upload's summary counts them all, also when a later one worked), and the log said so once.
    expect(said.find((entry) => entry.msg === "csv upload accepted" && entry.jobId === job.id)?.heartbeatsFailed).toBeGreaterThan(1);
    expect(said.filter((entry) => entry.msg.startsWith("could not record that the upload is alive"))).toHaveLength(1);
    // (A beat that worked before the file ended says so, once; the upload may end first.)
    expect(said.filter((entry) => entry.msg.startsWith("recording that the upload is alive works again")).length).toBeLessThanOrEqual(1);
  });

  it("a CSV upload whose rows cannot be stored answers 503 and keeps nothing: its job is deleted, or ended by the sweep", async () => {
    const before = await countJobs();
    const upload = await openCsvUpload();
    upload.send(CSV_HEADER + csvRows(1100));
    await eventually(async () => (await countJobs()) === before + 1);
    const opened = await newestJob();
    await postgres.down();
    upload.send(csvRows(1100));
    upload.end();
    const answer = await upload.answer;
    expect(answer.status, answer.body).toBe(503);
    await postgres.up();
    await eventually(async () => (await send("GET", "/readyz")).status === 200);
    const left = await newestJob();
    if (left?.id === opened?.id) {
      // Postgres was away when the upload was refused, so it could not be deleted: it is unsealed and
      // no longer said alive, and the worker's upload sweep ends it.
      expect(left?.sealed).toBe(false);
      const sweeper = await startTestWorker(services, { UPLOAD_SWEEP_MS: "500", UPLOAD_STALE_MS: "10000", RECONCILE_INTERVAL_MS: "0" });
      try {
        await eventually(async () => (await newestJob())?.status === "failed", 30_000);
      } finally {
        await sweeper.close();
      }
      expect((await newestJob())?.error?.code).toBe("upload_interrupted");
    } else {
      expect(await countJobs()).toBe(before);
    }
  });
});

describe("Redis down", () => {
  it("POST /v1/jobs stores the job at once (202), long-polls and event streams answer within their wait, and the job completes once Redis is back", async () => {
    const before = await countJobs();
    const logFrom = lines.length;
    await redis.down();

    const created = await send("POST", "/v1/jobs", { body: jobBody(5) });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    const job = created.body as Job;
    expect(job.status).toBe("queued");
    expect(await countJobs()).toBe(before + 1);
    // A second submission while Redis is still away is stored too, not held.
    const second = await send("POST", "/v1/jobs", { body: jobBody(2) });
    expect(second.status).toBe(202);

    // A CSV upload queues chunk by chunk as it streams: the chunks Redis will not take stay stored for
    // the reconciler, as a JSON job's do, and the upload goes on (202), said in one line.
    const beforeUpload = await countJobs();
    const upload = await send("POST", "/v1/jobs?model=iris", { body: CSV_HEADER + csvRows(3000), type: "text/csv" });
    expect(upload.status, JSON.stringify(upload.body)).toBe(202);
    const uploaded = upload.body as Job;
    expect(uploaded.counts.total).toBe(3000);
    expect(await countJobs()).toBe(beforeUpload + 1);
    const deferred = linesSince(logFrom)
      .map((line) => JSON.parse(line) as { msg: string; jobId?: string; deferredChunks?: number })
      .filter((entry) => entry.jobId === uploaded.id && entry.msg.includes("stored but not queued"));
    expect(deferred).toHaveLength(1);
    expect(deferred[0]?.deferredChunks).toBe(3);

    // No announcement can come while Redis is away: the long-poll answers with the job as it is, in time.
    const polled = await send("GET", `/v1/jobs/${job.id}?wait=2`, { withinMs: 2_000 + ANSWER_WITHIN_MS });
    expect(polled.status).toBe(200);
    expect((polled.body as Job).status).toBe("queued");
    // The event stream opens and says where the job is, without Redis.
    const stream = await fetch(`${baseUrl}/v1/jobs/${job.id}/events`, {
      headers: { Authorization: `Bearer ${KEY}` },
      signal: AbortSignal.timeout(ANSWER_WITHIN_MS),
    });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain("event: progress");
    await reader.cancel();

    // Ending a job is Postgres' business: it is done and said so, though its chunks cannot leave the queue now.
    const doomed = await send("POST", "/v1/jobs", { body: jobBody(1) });
    const cancelled = await send("POST", `/v1/jobs/${(doomed.body as Job).id}/cancel`);
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect((cancelled.body as Job).status).toBe("cancelled");
    expect((await send("DELETE", `/v1/jobs/${(doomed.body as Job).id}`)).status).toBe(204);

    const ready = await send("GET", "/readyz");
    expectUnavailable(ready, "GET /readyz");
    expect((ready.body as Problem).detail).toMatch(/redis is unreachable/);
    expect((ready.body as Problem).detail).not.toMatch(/postgres/);
    // Stays down a while, so the connection retries many times: none of that may reach the log.
    await new Promise((resolve) => setTimeout(resolve, 4_000));

    await redis.up();
    await eventually(async () => (await send("GET", "/readyz")).status === 200);
    worker = await startTestWorker(services, { RECONCILE_INTERVAL_MS: "300", MAX_BATCH_DELAY_MS: "5" });
    for (const id of [job.id, (second.body as Job).id, uploaded.id]) await waitForSuccess(id);
    // Every row of the upload was scored, once.
    const done = (await send("GET", `/v1/jobs/${uploaded.id}`)).body as Job;
    expect(done.counts).toMatchObject({ total: 3000, succeeded: 3000, failed: 0 });

    await eventually(async () => linesSince(logFrom).some((line) => line.includes("redis is back")), 5_000);
    type Line = { msg: string; requestId?: string; failedAttempts?: number };
    // Lines of a request are bounded by the requests; the rest must not grow with the retries.
    const unscoped = linesSince(logFrom)
      .map((line) => JSON.parse(line) as Line)
      .filter((entry) => entry.requestId === undefined);
    // Jobs left for the reconciler are said once for the outage, however many were submitted.
    const enqueueLines = unscoped.filter((entry) => entry.msg.startsWith("enqueue"));
    expect(enqueueLines.filter((entry) => entry.msg.startsWith("enqueue failed"))).toHaveLength(1);
    // The rate limiter says once that it fails open meanwhile, and once that it is enforced again.
    const limiterLines = unscoped.filter((entry) => entry.msg.startsWith("rate limits "));
    expect(limiterLines.filter((entry) => entry.msg.startsWith("rate limits not enforced")).length).toBeLessThanOrEqual(1);
    expect(limiterLines.filter((entry) => entry.msg.startsWith("rate limits enforced again")).length).toBeLessThanOrEqual(1);
    const outage = unscoped.filter((entry) => !enqueueLines.includes(entry) && !limiterLines.includes(entry));
    expect(outage.map((entry) => entry.msg)).toEqual(["redis unavailable", expect.stringMatching(/^redis is back after \d+ s, \d+ failed connection attempts$/)]);
    // It did retry, many times, and said so only in the count.
    expect(outage[1]?.failedAttempts).toBeGreaterThan(2);
  });
});

// A network that goes silent (a host gone without a reset, a partition) answers nothing, so only
// the API's own timeouts end a wait: Postgres' connect and query timeouts (a second past
// DATABASE_QUERY_TIMEOUT_MS), Redis' command timeout. Hence a looser bound than for a refused connection.
describe("a silent network (half-open connections)", () => {
  const SILENT_WITHIN_MS = 3_500;

  it("Postgres silent: routes answer 503 once the timeouts pass, nothing is created, and the pool recovers", async () => {
    const created = await send("POST", "/v1/jobs", { body: jobBody() });
    expect(created.status).toBe(202);
    const jobId = (created.body as Job).id;
    const before = await countJobs();
    postgres.stall();
    for (const [method, route, body] of [
      ["GET", `/v1/jobs/${jobId}`],
      ["POST", "/v1/jobs", jobBody()],
      ["GET", "/v1/models"],
      ["GET", "/readyz"],
    ] as const) {
      expectUnavailable(await send(method, route, { withinMs: SILENT_WITHIN_MS, ...(body === undefined ? {} : { body }) }), `${method} ${route}`);
    }
    await postgres.up();
    await eventually(async () => (await send("GET", "/readyz")).status === 200);
    expect(await countJobs()).toBe(before);
    expect((await send("GET", `/v1/jobs/${jobId}`)).status).toBe(200);
  });

  it("Redis silent: POST /v1/jobs still stores the job (202), long-polls answer, and the job completes once Redis answers again", async () => {
    redis.stall();
    const created = await send("POST", "/v1/jobs", { body: jobBody(4), withinMs: SILENT_WITHIN_MS });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    const jobId = (created.body as Job).id;
    const polled = await send("GET", `/v1/jobs/${jobId}?wait=1`, { withinMs: 1_000 + SILENT_WITHIN_MS });
    expect(polled.status).toBe(200);
    const ready = await send("GET", "/readyz", { withinMs: SILENT_WITHIN_MS });
    expectUnavailable(ready, "GET /readyz");
    expect((ready.body as Problem).detail).toMatch(/redis is unreachable/);
    await redis.up();
    await eventually(async () => (await send("GET", "/readyz")).status === 200);
    // The worker of the Redis test is still running; its reconciler queues what Redis never got.
    if (!worker) worker = await startTestWorker(services, { RECONCILE_INTERVAL_MS: "300", MAX_BATCH_DELAY_MS: "5" });
    await waitForSuccess(jobId);
  });
});

describe("the API's output through all the outages", () => {
  it("is JSON lines only: no ioredis stack dumps, nothing on stderr", () => {
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
    expect(stderr).toBe("");
  });
});
