// The worker's probes on its metrics port (/healthz, /readyz), asked over HTTP as compose and the
// kubelet ask them, of a worker in this process on the test's own schema and queue prefix. Outages
// are played by TCP proxies in front of the shared Postgres and Redis (see tcp-proxy.ts).
import { spawn } from "node:child_process";
import { findJob, type JobRecord } from "@coalesce/db";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { REDIS_URL } from "../support/services.ts";
import { startTestWorker, submitIrisJob, useIrisWorkerSuite } from "../support/worker.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";

const suite = useIrisWorkerSuite("worker-health");

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));


type Probe = { status: number; body: { status?: string; checks?: Record<string, string>; stalledMs?: number } | null; text: string };

async function probe(worker: RunningWorker, path: string, method = "GET"): Promise<Probe> {
  const response = await fetch(`http://127.0.0.1:${worker.metricsPort}${path}`, { method });
  const text = await response.text();
  const json = response.headers.get("content-type")?.startsWith("application/json") && text ? (JSON.parse(text) as Probe["body"]) : null;
  return { status: response.status, body: json, text };
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function throughProxy(url: string, proxy: TcpProxy): string {
  const proxied = new URL(url);
  proxied.hostname = "127.0.0.1";
  proxied.port = String(proxy.port);
  return proxied.toString();
}


async function finished(jobId: string): Promise<JobRecord> {
  let job: JobRecord | null = null;
  await until(`job ${jobId} to finish`, async () => {
    job = await findJob(suite.db, suite.tenantId, jobId);
    return job !== null && ["succeeded", "failed", "cancelled"].includes(job.status);
  }, 30_000);
  return job as unknown as JobRecord;
}

describe("a running worker's probes", () => {
  let worker: RunningWorker;
  beforeAll(async () => {
    worker = await startTestWorker(suite.services);
  });
  afterAll(async () => {
    await worker?.close();
  });

  it("is live and ready (200), naming each check, on the port it serves /metrics on", async () => {
    expect(worker.metricsPort).toEqual(expect.any(Number));
    expect(await probe(worker, "/healthz")).toMatchObject({ status: 200, body: { status: "ok" } });
    expect(await probe(worker, "/readyz")).toMatchObject({ status: 200, body: { status: "ready", checks: { consumer: "ok", redis: "ok", postgres: "ok" } } });
    const metrics = await probe(worker, "/metrics");
    expect(metrics.status).toBe(200);
    expect(metrics.text).toContain("coalesce_worker_provider_info");
  });

  it("answers HEAD as GET without a body, refuses other methods (405) and unknown paths (404)", async () => {
    expect(await probe(worker, "/healthz", "HEAD")).toMatchObject({ status: 200, text: "" });
    expect(await probe(worker, "/readyz", "HEAD")).toMatchObject({ status: 200, text: "" });
    expect((await probe(worker, "/readyz", "POST")).status).toBe(405);
    expect((await probe(worker, "/nothing")).status).toBe(404);
    // A query string does not hide the path (some probes add a cache-buster).
    expect((await probe(worker, "/readyz?t=1")).status).toBe(200);
  });

  it("answers /healthz 503 to a probe that waited through an event-loop stall longer than the locks survive, and 200 after", async () => {
    // Another process asks while this one (the worker's) is blocked: its request waits in the socket.
    const url = `http://127.0.0.1:${worker.metricsPort}/healthz`;
    const asker = spawn(process.execPath, ["-e", `fetch(${JSON.stringify(url)}).then(async (r) => console.log(r.status, await r.text()))`], { stdio: ["ignore", "pipe", "inherit"] });
    let output = "";
    asker.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise((resolve) => asker.once("exit", resolve));
    // STALLED_TAKEOVER_MS 5 s: the locks survive a block of 3/8 of it (1.9 s).
    const blockUntil = Date.now() + 3_000;
    while (Date.now() < blockUntil) {
      // Blocks the event loop, as a synchronous inference run would.
    }
    await exited;
    const [status, body] = [Number(output.slice(0, 3)), JSON.parse(output.slice(4)) as { status: string; stalledMs: number }];
    expect({ status, body }).toMatchObject({ status: 503, body: { status: "stalled" } });
    expect(body.stalledMs).toBeGreaterThan(1_875);
    await sleep(600);
    expect(await probe(worker, "/healthz")).toMatchObject({ status: 200, body: { status: "ok" } });
  });
});

describe("a worker draining on shutdown", () => {
  it("answers /readyz 503 (consumer: draining) while the chunks in hand finish, and stays live", async () => {
    // Batches that wait their whole delay: the chunks stay in hand for a while after close() begins.
    const worker = await startTestWorker(suite.services, { ADAPTIVE_BATCHING: "false", MAX_BATCH_ROWS: "100000", MAX_BATCH_DELAY_MS: "2500", WORKER_CONCURRENCY: "8" });
    const jobId = await submitIrisJob(suite, 40, 10);
    await until("the worker to hold chunks", async () => (await suite.queue.getActive()).length > 0);
    expect((await probe(worker, "/readyz")).status).toBe(200);
    const closing = worker.close();
    try {
      let draining: Probe | undefined;
      await until("/readyz to say draining", async () => {
        draining = await probe(worker, "/readyz");
        return draining.status === 503;
      }, 2_000);
      expect(draining).toMatchObject({ status: 503, body: { status: "not_ready", checks: { consumer: "draining", redis: "ok", postgres: "ok" } } });
      expect(await probe(worker, "/healthz")).toMatchObject({ status: 200 });
    } finally {
      await closing;
    }
    // What it held was finished before it stopped.
    expect(await finished(jobId)).toMatchObject({ status: "succeeded", succeededRows: 40 });
  });
});

describe("a worker whose Redis or Postgres goes away", () => {
  let worker: RunningWorker;
  let redisProxy: TcpProxy;
  let postgresProxy: TcpProxy;
  beforeAll(async () => {
    redisProxy = await startTcpProxy(Number(new URL(REDIS_URL).port || 6379));
    postgresProxy = await startTcpProxy(Number(new URL(suite.services.databaseUrl).port || 5432));
    worker = await startTestWorker(suite.services, { REDIS_URL: throughProxy(REDIS_URL, redisProxy), DATABASE_URL: throughProxy(suite.services.databaseUrl, postgresProxy) });
  });
  afterAll(async () => {
    await redisProxy?.up();
    await postgresProxy?.up();
    await worker?.close();
    await redisProxy?.close();
    await postgresProxy?.close();
  });

  it("answers /readyz 503 naming Redis while Redis is unreachable, stays live, and is ready again once it is back", async () => {
    expect((await probe(worker, "/readyz")).status).toBe(200);
    await redisProxy.down();
    let down: Probe | undefined;
    await until("/readyz to say Redis is not ready", async () => {
      down = await probe(worker, "/readyz");
      return down.status === 503;
    });
    expect(down?.body).toMatchObject({ status: "not_ready", checks: { consumer: "ok", postgres: "ok" } });
    expect(down?.body?.checks?.redis).not.toBe("ok");
    expect(await probe(worker, "/healthz")).toMatchObject({ status: 200 });
    await redisProxy.up();
    await until("/readyz to be 200 again", async () => (await probe(worker, "/readyz")).status === 200, 20_000);
  });

  it("answers /readyz 503 naming Redis within the probe's timeout when Redis accepts but never answers", async () => {
    redisProxy.stall();
    try {
      // The connection still says ready (nothing was reset): the PING itself goes unanswered.
      let stalled: Probe | undefined;
      await until("/readyz to time out on Redis", async () => {
        const started = performance.now();
        stalled = await probe(worker, "/readyz");
        expect(performance.now() - started).toBeLessThan(2_000);
        return stalled.status === 503;
      });
      expect(stalled?.body?.checks?.redis).toMatch(/no answer within|not connected/);
    } finally {
      await redisProxy.up();
    }
    await until("/readyz to be 200 again", async () => (await probe(worker, "/readyz")).status === 200, 20_000);
  });

  it("answers /readyz 503 naming Postgres while Postgres is unreachable, and 200 once it is back", async () => {
    await postgresProxy.down();
    let down: Probe | undefined;
    await until("/readyz to say Postgres is not ready", async () => {
      down = await probe(worker, "/readyz");
      return down.status === 503;
    });
    expect(down?.body).toMatchObject({ status: "not_ready", checks: { consumer: "ok", redis: "ok" } });
    expect(down?.body?.checks?.postgres).not.toBe("ok");
    await postgresProxy.up();
    await until("/readyz to be 200 again", async () => (await probe(worker, "/readyz")).status === 200, 20_000);
  });
});
