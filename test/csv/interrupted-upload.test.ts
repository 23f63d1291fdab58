// The API process killed (kill -9) in the middle of a CSV upload sent with an Idempotency-Key: the
// worker's upload sweep ends the job as interrupted within its bound, announces it, and frees the
// key, so the client's retry with the same key is accepted as a new job. Real processes throughout.
import { connect, type Socket } from "node:net";
import type { Job, JobList } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_MAIN, freePort, startProcess, stopProcess, waitUntilReady, WORKER_MAIN, type ServiceProcess } from "../../scripts/processes.ts";
import { readModel } from "../support/fixtures.ts";
import { createTestServices, type TestServices } from "../support/services.ts";

const KEY = "csk_interrupted_0123456789abcdef";
let services: TestServices;
let env: Record<string, string>;
let baseUrl: string;
let port: number;
let api: ServiceProcess;
let worker: ServiceProcess;
let output = "";

function start(name: string, entry: string): ServiceProcess {
  const service = startProcess(name, entry, env, "pipe");
  service.child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  service.child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  return service;
}

async function call<T>(method: string, route: string, body?: string | Uint8Array, headers: Record<string, string> = {}): Promise<{ status: number; body: T }> {
  const response = await fetch(`${baseUrl}${route}`, {
    method,
    headers: { Authorization: `Bearer ${KEY}`, ...headers },
    ...(body === undefined ? {} : { body }),
  });
  return { status: response.status, body: (await response.json()) as T };
}

async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}\n${output.slice(-4000)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

beforeAll(async () => {
  services = await createTestServices();
  port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  env = { ...services.env, PORT: String(port), BOOTSTRAP_API_KEY: KEY, UPLOAD_SWEEP_MS: "500", UPLOAD_STALE_MS: "10000" };
  api = start("api", API_MAIN);
  worker = start("worker", WORKER_MAIN);
  await waitUntilReady(baseUrl, [api, worker]);
  const model = await fetch(`${baseUrl}/v1/models/iris/versions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/octet-stream" },
    body: await readModel("iris"),
  });
  expect(model.status).toBe(201);
}, 120_000);

afterAll(async () => {
  await Promise.all([api, worker].filter(Boolean).map((service) => stopProcess(service)));
  await services?.cleanup();
});

const HEADER = "row_id,a,b,c,d\n";
const rows = (from: number, count: number) => Array.from({ length: count }, (_, i) => `r${from + i},5.1,3.5,1.4,0.2\n`).join("");

/** Starts a chunked upload over a raw socket; returns a function that sends more of the file. */
async function openUpload(idempotencyKey: string): Promise<{ socket: Socket; send(text: string): void }> {
  const socket = connect(port, "127.0.0.1");
  socket.on("error", () => {});
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  socket.write(
    `POST /v1/jobs?model=iris&id_column=row_id HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${KEY}\r\n` +
      `Content-Type: text/csv\r\nIdempotency-Key: ${idempotencyKey}\r\nTransfer-Encoding: chunked\r\n\r\n`,
  );
  return { socket, send: (text) => void socket.write(`${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`) };
}

describe("the API killed during a CSV upload", () => {
  it("ends the job as interrupted within the staleness bound and frees its Idempotency-Key for the retry", async () => {
    const upload = await openUpload("retry-me");
    upload.send(HEADER);
    // Slowly, a chunk's worth (1024 rows) at a time, until some rows are stored and scored.
    let sent = 0;
    const streaming = await until("the upload to store rows", 30_000, async () => {
      upload.send(rows(sent, 1100));
      sent += 1100;
      const { body } = await call<JobList>("GET", "/v1/jobs?limit=1");
      const job = body.data[0];
      return job && job.counts.succeeded > 0 ? job : undefined;
    });
    expect(streaming).toMatchObject({ status: "running", counts: { total: null } });

    api.child.kill("SIGKILL");
    await api.exited;
    upload.socket.destroy();
    api = start("api", API_MAIN);
    await waitUntilReady(baseUrl, [api, worker]);
    // A long-poll waiting on the job learns that it ended (the sweep announces it).
    const polled = call<Job>("GET", `/v1/jobs/${streaming.id}?wait=30`);

    // Before the bound, a retry with the key is still held off: the upload may be alive elsewhere.
    const early = await call<{ code: string }>("POST", "/v1/jobs?model=iris&id_column=row_id", HEADER + rows(0, 10), {
      "Content-Type": "text/csv",
      "Idempotency-Key": "retry-me",
    });
    expect([409, 202]).toContain(early.status);

    const ended = await until("the sweep to end the interrupted upload", 30_000, async () => {
      const { body } = await call<Job>("GET", `/v1/jobs/${streaming.id}`);
      return body.status === "failed" ? body : undefined;
    });
    expect(ended.error?.code).toBe("upload_interrupted");
    expect(ended.error?.message).toMatch(/the upload stopped before the file ended.*\d+ rows had been received; resubmit the file/);
    expect(ended.counts.total).toBe(ended.counts.received);
    expect(ended.counts.received).toBeGreaterThan(0);
    expect(ended.counts.received).toBeLessThanOrEqual(sent);
    expect((await polled).body).toMatchObject({ status: "failed", error: { code: "upload_interrupted" } });
    // The rows scored before it stopped stay readable; nothing more is scored for it.
    const scored = ended.counts.succeeded;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect((await call<Job>("GET", `/v1/jobs/${streaming.id}`)).body.counts.succeeded).toBe(scored);

    // The key is free again: the whole file, retried with the same key, is a new job that completes.
    const retry = early.status === 202
      ? early
      : await until("the key to be freed", 30_000, async () => {
          const response = await call<Job>("POST", "/v1/jobs?model=iris&id_column=row_id", HEADER + rows(0, 10), {
            "Content-Type": "text/csv",
            "Idempotency-Key": "retry-me",
          });
          return response.status === 202 ? response : undefined;
        });
    const retried = retry.body as Job;
    expect(retried.id).not.toBe(streaming.id);
    const done = await until("the retried job to finish", 30_000, async () => {
      const { body } = await call<Job>("GET", `/v1/jobs/${retried.id}`);
      return body.status === "succeeded" ? body : undefined;
    });
    expect(done.counts).toMatchObject({ total: 10, succeeded: 10 });
    expect(output).toMatch(/upload interrupted/);
  }, 180_000);
});
