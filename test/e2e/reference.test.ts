// Through the real processes: API and worker started as `npm start` starts them, talking to the
// real Postgres, Redis and onnxruntime. Results must equal the PyTorch reference outputs.
import type { Job, JobResults, ResultRow } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_MAIN, freePort, startProcess, stopProcess, waitUntilReady, WORKER_MAIN, type ServiceProcess } from "../../scripts/processes.ts";
import { readFeatureCsv, readModel, readReference } from "../support/fixtures.ts";
import { createTestServices, type TestServices } from "../support/services.ts";

const KEY = "csk_e2e_0123456789abcdef";
let services: TestServices;
let processes: ServiceProcess[] = [];
let baseUrl: string;
let output = "";

async function call<T>(method: string, route: string, body?: string | Uint8Array, type = "application/json"): Promise<T> {
  const response = await fetch(`${baseUrl}${route}`, {
    method,
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": type },
    ...(body === undefined ? {} : { body }),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
  return JSON.parse(text) as T;
}

async function waitForJob(id: string, timeoutMs = 60_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await call<Job>("GET", `/v1/jobs/${id}`);
    if (["succeeded", "failed", "cancelled"].includes(job.status)) return job;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${job.status} after ${timeoutMs} ms\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function allResults(id: string): Promise<ResultRow[]> {
  const rows: ResultRow[] = [];
  let cursor: string | null = "0";
  while (cursor !== null) {
    const page: JobResults = await call<JobResults>("GET", `/v1/jobs/${id}/results?limit=500&cursor=${cursor}`);
    rows.push(...page.data);
    cursor = page.next_cursor;
  }
  return rows;
}

beforeAll(async () => {
  services = await createTestServices();
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  const env = { ...services.env, PORT: String(port), BOOTSTRAP_API_KEY: KEY, LOG_LEVEL: "debug", MAX_BATCH_DELAY_MS: "20" };
  processes = [startProcess("api", API_MAIN, env, "pipe"), startProcess("worker", WORKER_MAIN, env, "pipe")];
  for (const service of processes) {
    service.child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    service.child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  }
  await waitUntilReady(baseUrl, processes);
});

afterAll(async () => {
  await Promise.all(processes.map((service) => stopProcess(service)));
  await services?.cleanup();
});

describe.each(["iris", "digits"] as const)("%s through API and worker processes", (name) => {
  it("equals the reference outputs within 1e-5, with every label equal", async () => {
    await call("POST", `/v1/models/${name}/versions`, await readModel(name), "application/octet-stream");
    const { features } = await readFeatureCsv(name);
    const reference = await readReference(name);
    const job = await call<Job>("POST", "/v1/jobs", JSON.stringify({ model: name, inputs: features.map((f) => ({ features: f })) }));
    const done = await waitForJob(job.id);
    expect(done).toMatchObject({ status: "succeeded", counts: { total: features.length, succeeded: features.length, failed: 0 } });
    expect(done.started_at).not.toBeNull();
    expect(done.completed_at).not.toBeNull();

    const rows = await allResults(job.id);
    expect(rows.map((row) => row.index)).toEqual(reference.map((_, i) => i));
    let worst = 0;
    rows.forEach((row, i) => {
      const expected = reference[i] as (typeof reference)[number];
      const outputs = row.outputs as { probabilities: number[]; label: number };
      expect(outputs.label).toBe(expected.label);
      outputs.probabilities.forEach((p, k) => (worst = Math.max(worst, Math.abs(p - (expected.probabilities[k] as number)))));
    });
    expect(worst).toBeLessThan(1e-5);
  });
});

describe("worker process", () => {
  it("coalesces rows of concurrent jobs into shared batches", async () => {
    const { features } = await readFeatureCsv("iris");
    const jobs = await Promise.all(
      Array.from({ length: 8 }, (_, i) => call<Job>("POST", "/v1/jobs", JSON.stringify({ model: "iris", inputs: [{ features: features[i] }] }))),
    );
    await Promise.all(jobs.map((job) => waitForJob(job.id)));
    const batches = output
      .split("\n")
      .filter((line) => line.includes('"msg":"batch"'))
      .map((line) => JSON.parse(line) as { rows: number; sources: number });
    expect(batches.some((batch) => batch.sources > 1)).toBe(true);
  });

  it("finishes the work in hand and exits cleanly on SIGTERM", async () => {
    const worker = processes.find((service) => service.name === "worker") as ServiceProcess;
    worker.child.kill("SIGTERM");
    expect(await worker.exited).toBe(0);
  });
});
