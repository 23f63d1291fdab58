// docker/nginx's template in front of two real API processes and one worker, through HTTPS with the real
// Debian nginx: a streamed CSV upload, a long-poll and an event stream pass through, and when one API
// process is SIGKILLed under load, every request nginx may retry succeeds and no accepted job is lost.
import { randomUUID } from "node:crypto";
import { connect as connectTls } from "node:tls";
import type { Job, JobList } from "@coalesce/contracts";
import { Agent, fetch, type Response } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_MAIN, freePort, startProcess, stopProcess, waitUntilReady, WORKER_MAIN, type ServiceProcess } from "../../scripts/processes.ts";
import { fixture, irisRows } from "../support/http.ts";
import { createTestServices, type TestServices } from "../support/services.ts";
import { missingTools, startNginx, type RunningNginx } from "./nginx.ts";

const KEY = "csk_nginx_0123456789abcdef";
const AUTH = { Authorization: `Bearer ${KEY}` };
const MISSING = missingTools();
if (MISSING) console.warn(`skipping the nginx proxy tests: ${MISSING}`);

describe.skipIf(MISSING !== null)("nginx (docker/nginx/coalesce.conf.template) in front of two API processes", () => {
  let services: TestServices;
  let nginx: RunningNginx;
  let agent: Agent;
  const apis: ServiceProcess[] = [];
  const processes: ServiceProcess[] = [];
  const directUrls: string[] = [];
  let output = "";

  const call = (route: string, init: Parameters<typeof fetch>[1] = {}): Promise<Response> =>
    fetch(`${nginx.httpsUrl}${route}`, { dispatcher: agent, ...init, headers: { ...AUTH, ...(init.headers as Record<string, string>) } });

  async function json<T>(response: Response): Promise<T> {
    const text = await response.text();
    if (!response.ok) throw new Error(`${response.status} ${text}`);
    return JSON.parse(text) as T;
  }

  async function waitForJob(id: string, timeoutMs = 60_000): Promise<Job> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await json<Job>(await call(`/v1/jobs/${id}?wait=10`));
      if (["succeeded", "failed", "cancelled"].includes(job.status)) return job;
      if (Date.now() > deadline) throw new Error(`job ${id} still ${job.status}\n${output.slice(-4000)}`);
    }
  }

  beforeAll(async () => {
    services = await createTestServices();
    const env = { ...services.env, BOOTSTRAP_API_KEY: KEY, TRUST_PROXY: "true", LOG_LEVEL: "warn", MAX_BATCH_DELAY_MS: "5" };
    for (const name of ["api-1", "api-2"]) {
      const port = await freePort();
      const api = startProcess(name, API_MAIN, { ...env, HOST: "127.0.0.1", PORT: String(port) }, "pipe");
      apis.push(api);
      directUrls.push(`http://127.0.0.1:${port}`);
    }
    processes.push(...apis, startProcess("worker", WORKER_MAIN, { ...env, METRICS_PORT: "0" }, "pipe"));
    for (const service of processes) {
      service.child.stdout?.on("data", (chunk: Buffer) => (output += `[${service.name}] ${chunk.toString()}`));
      service.child.stderr?.on("data", (chunk: Buffer) => (output += `[${service.name}] ${chunk.toString()}`));
    }
    for (const url of directUrls) await waitUntilReady(url, processes, 90_000);
    nginx = await startNginx(directUrls.map((url) => url.replace("http://", "")));
    agent = new Agent({ connect: { ca: nginx.ca }, connections: 64 });
    await json(await call("/v1/models/iris/versions", { method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: fixture("iris.onnx") }));
  }, 180_000);

  afterAll(async () => {
    await agent?.close();
    await nginx?.stop();
    await Promise.all(processes.map((service) => stopProcess(service)));
    await services?.cleanup();
  });

  it("redirects plain HTTP to HTTPS with a 308 that keeps the path and query, and answers its own health path", async () => {
    const redirect = await fetch(`${nginx.httpUrl}/v1/jobs?limit=5`, { redirect: "manual" });
    expect(redirect.status).toBe(308);
    expect(redirect.headers.get("location")).toBe(`https://127.0.0.1:${nginx.httpsPort}/v1/jobs?limit=5`);
    expect((await fetch(`${nginx.httpUrl}/nginx-health`)).status).toBe(200);
    // Through TLS, the API itself answers.
    expect(await json(await call("/healthz"))).toMatchObject({ status: "ok" });
  });

  it("streams a CSV upload through to the API (scoring begins before the file ends), then serves its results as CSV", async () => {
    const lines = new TextDecoder().decode(fixture("iris.csv")).trim().split("\n");
    const [header, ...rows] = lines;
    const copies = 40;
    const body = Array.from({ length: copies }, (_, copy) => rows.map((row) => row.replace(/^\d+/, (id) => String(copy * rows.length + Number(id)))).join("\n"));
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const encoder = new TextEncoder();
    const stream = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(encoder.encode(`${header}\n${body.slice(0, copies / 2).join("\n")}\n`));
        // The rest only once the API shows the job: nginx passed the first half on without the whole body.
        await held;
        controller.enqueue(encoder.encode(`${body.slice(copies / 2).join("\n")}\n`));
        controller.close();
      },
    });
    const upload = call("/v1/jobs?model=iris&id_column=row_id&ignore=target", { method: "POST", headers: { "Content-Type": "text/csv" }, body: stream, duplex: "half" });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const list = await json<JobList>(await call("/v1/jobs?limit=10"));
      if (list.data.some((job) => job.counts.total === null)) break;
      if (Date.now() > deadline) throw new Error("the upload's job never showed while its file was half sent: the proxy buffers request bodies");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    release();
    const job = await json<Job>(await upload);
    expect((await waitForJob(job.id)).counts).toMatchObject({ total: copies * rows.length, succeeded: copies * rows.length, failed: 0 });
    const csv = await (await call(`/v1/jobs/${job.id}/results?format=csv`)).text();
    expect(csv.trim().split("\n")).toHaveLength(copies * rows.length + 1);
  }, 60_000);

  it("holds a long-poll until the job ends and streams its events as they happen", async () => {
    const submitted = await json<Job>(await call("/v1/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: "iris", inputs: irisRows(2000) }) }));
    const events = await call(`/v1/jobs/${submitted.id}/events`, { headers: { Accept: "text/event-stream" } });
    expect(events.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const polled = await json<Job>(await call(`/v1/jobs/${submitted.id}?wait=30`));
    expect(polled.status).toBe("succeeded");
    const text = await events.text();
    const names = [...text.matchAll(/^event: (\w+)$/gm)].map((match) => match[1]);
    expect(names.at(0)).toBe("progress");
    expect(names.at(-1)).toBe("end");
    expect(text).toContain('"status":"succeeded"');
  }, 60_000);

  it("answers what it refuses itself as problem+json: a body past MAX_UPLOAD_BYTES, plain HTTP on the TLS port", async () => {
    // A declared length past the limit is refused before a byte of the body is sent.
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connectTls({ host: "127.0.0.1", port: nginx.httpsPort, ca: nginx.ca, servername: "localhost" }, () => {
        socket.write(`POST /v1/jobs?model=iris HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: text/csv\r\nContent-Length: ${5 * 1024 ** 3}\r\nConnection: close\r\n\r\n`);
      });
      let text = "";
      socket.on("data", (chunk: Buffer) => {
        text += chunk.toString();
        // The whole problem is in: done, without waiting out nginx's lingering close of an unread body.
        if (text.endsWith("}\n")) {
          socket.destroy();
          resolve(text);
        }
      });
      socket.on("error", reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 413/);
    expect(answer).toMatch(/Content-Type: application\/problem\+json/i);
    expect(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4))).toMatchObject({ status: 413, code: "payload_too_large" });

    const plain = await fetch(`http://127.0.0.1:${nginx.httpsPort}/healthz`);
    expect(plain.status).toBe(400);
    expect(await plain.json()).toMatchObject({ code: "validation_failed", detail: expect.stringContaining("https://") });
  });

  it("loses no accepted job when an API process is SIGKILLed under load: GETs and keyed submits fail over", async () => {
    type Outcome = { kind: "get" | "keyed" | "unkeyed"; status: number; code?: string; jobId?: string; key?: string };
    const outcomes: Outcome[] = [];
    const known = await json<Job>(await call("/v1/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: "iris", inputs: irisRows(3) }) }));
    let stop = false;
    let sent = 0;

    async function one(i: number): Promise<void> {
      const kind = (["get", "keyed", "get", "unkeyed"] as const)[i % 4]!;
      if (kind === "get") {
        const response = await call(`/v1/jobs/${known.id}`);
        const body = (await response.json()) as { code?: string };
        outcomes.push({ kind, status: response.status, ...(response.ok ? {} : { code: body.code }) });
        return;
      }
      const key = kind === "keyed" ? `nginx-${randomUUID()}` : undefined;
      const response = await call("/v1/jobs", {
        method: "POST",
        headers: { "Content-Type": "application/json", ...(key ? { "Idempotency-Key": key } : {}) },
        body: JSON.stringify({ model: "iris", inputs: irisRows(20) }),
      });
      const body = (await response.json()) as { id?: string; code?: string };
      outcomes.push({ kind, status: response.status, ...(response.ok ? { jobId: body.id } : { code: body.code }), ...(key ? { key } : {}) });
    }

    const clients = Array.from({ length: 16 }, async () => {
      while (!stop) await one(sent++);
    });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const victim = apis[0]!;
    victim.child.kill("SIGKILL");
    await victim.exited;
    const killedAt = sent;
    await new Promise((resolve) => setTimeout(resolve, 3000));
    stop = true;
    await Promise.all(clients);

    const failed = outcomes.filter((outcome) => outcome.status >= 300);
    // nginx tried some of them on the dead process first and then on the live one.
    const retried = (await nginx.accessLines()).filter((line) => /upstream=\S+, \S+/.test(line));
    const retriedKinds = countBy(retried, (line) => `${/"(\w+) /.exec(line)?.[1]} ${/upstream_status=(\S+ \S+)/.exec(line)?.[1]}`);
    const summary = JSON.stringify({ sent, killedAt, failed, byKind: countBy(outcomes, (o) => `${o.kind}:${o.status}`), retried: retriedKinds });
    console.info(`failover under load: ${summary}`);
    expect(retried.length, summary).toBeGreaterThan(0);
    // A GET is always retried; a keyed submit too, and the key decides its answer: the first job's,
    // or, when the dead process had claimed the key but not written its job, a job of the retry's
    // (the claim is taken over once stale, routes/jobs/idempotency.ts).
    expect(failed.filter((o) => o.kind === "get"), summary).toEqual([]);
    expect(failed.filter((o) => o.kind === "keyed"), summary).toEqual([]);
    // A submit without a key that the dead process held is not retried: nginx's own 502, problem+json.
    expect(failed.filter((o) => o.kind === "unkeyed" && !(o.status === 502 && o.code === "service_unavailable")), summary).toEqual([]);

    // Every job whose submit was answered 2xx exists and completes; a key answered twice names one job.
    const accepted = outcomes.filter((o) => o.jobId !== undefined);
    expect(accepted.length).toBeGreaterThan(20);
    for (const { jobId } of accepted) expect((await waitForJob(jobId!)).status, jobId).toBe("succeeded");
    for (const { key, jobId } of accepted.filter((o) => o.key)) {
      const again = await call("/v1/jobs", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": key! },
        body: JSON.stringify({ model: "iris", inputs: irisRows(20) }),
      });
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      expect(((await json<Job>(again)) as Job).id).toBe(jobId);
    }
  }, 180_000);
});

function countBy<T>(items: T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}
