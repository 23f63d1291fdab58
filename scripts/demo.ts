// `npm run demo`: the main job, end to end on the real services. Starts the API and a worker,
// registers the iris model and a webhook endpoint (a receiver in this process), scores the 150
// rows of fixtures/iris.csv through API -> Postgres -> BullMQ -> coalesced onnxruntime batch ->
// Postgres -> long-poll and signed webhook, predicts the first row again synchronously (and from the
// result cache), prints a summary and stops both processes again
// (`npm start` keeps a service running). It works with a key of only the scopes it needs, made through
// the key API, and revokes that key and the bootstrap key it started with at the end: no live key is
// left behind.
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import {
  TERMINAL_JOB_STATUSES,
  type AuditList,
  type CreatedApiKey,
  type CreatedWebhook,
  type Job,
  type JobResults,
  type ModelVersion,
  type PredictResponse,
  type Scope,
} from "@coalesce/contracts";
import { Webhook } from "standardwebhooks";
import { API_MAIN, freePort, ROOT, startProcess, stopProcess, waitUntilReady, WORKER_MAIN } from "./processes.ts";

const FIXTURES = path.join(ROOT, "fixtures");

/** What the demo does: register a model and a webhook, submit and read a job, predict. Not admin. */
const DEMO_SCOPES: Scope[] = ["models:write", "webhooks:write", "jobs:write", "jobs:read"];

function step(message: string): void {
  console.log(`> ${message}`);
}

async function call<T>(baseUrl: string, key: string, method: string, route: string, body?: string | Uint8Array, type?: string): Promise<T> {
  const response = await fetch(`${baseUrl}${route}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(type ? { "Content-Type": type } : {}) },
    ...(body === undefined ? {} : { body }),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${route} answered ${response.status}: ${text}`);
  return JSON.parse(text) as T;
}

/** What `run` resolves with, and how long it took. */
async function timed<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await run();
  return { value, ms: performance.now() - started };
}

/**
 * A webhook receiver on loopback: resolves with the first delivery, its signature checked with the
 * `standardwebhooks` package (an implementation independent of Coalesce's).
 */
async function startReceiver(): Promise<{ url: string; received: (secret: string) => Promise<{ id: string; type: string; at: number }>; close(): void }> {
  let deliver: (value: { headers: Record<string, string>; body: string; at: number }) => void = () => {};
  const first = new Promise<{ headers: Record<string, string>; body: string; at: number }>((resolve) => (deliver = resolve));
  const server = createServer((request, response) => {
    let body = "";
    request.on("data", (part: Buffer) => (body += part.toString()));
    request.on("end", () => {
      response.writeHead(204).end();
      deliver({ headers: request.headers as Record<string, string>, body, at: Date.now() });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    async received(secret) {
      const { headers, body, at } = await first;
      const event = new Webhook(secret).verify(body, headers) as { type: string };
      return { id: headers["webhook-id"] ?? "", type: event.type, at };
    },
    close: () => server.close(),
  };
}

async function readIris(): Promise<{ features: number[][]; targets: number[] }> {
  const [header, ...lines] = (await readFile(path.join(FIXTURES, "iris.csv"), "utf8")).trim().split(/\r?\n/);
  const columns = (header ?? "").split(",");
  const target = columns.indexOf("target");
  const features: number[][] = [];
  const targets: number[] = [];
  for (const line of lines) {
    const cells = line.split(",").map(Number);
    // Layout: row_id, the four measurements, target.
    features.push(cells.slice(1, target));
    targets.push(cells[target] ?? Number.NaN);
  }
  return { features, targets };
}

async function main(): Promise<void> {
  const started = performance.now();
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  // Only to make the demo's own key, and revoked at the end with it.
  const bootstrap = `csk_demo_${randomBytes(16).toString("hex")}`;
  let key = bootstrap;
  // The demo's webhook receiver listens on loopback over http, which production settings refuse.
  const env = {
    PORT: String(port),
    BOOTSTRAP_API_KEY: bootstrap,
    LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
    WEBHOOK_ALLOW_HTTP: "true",
    WEBHOOK_ALLOWLIST: "127.0.0.1/32",
  };
  const receiver = await startReceiver();
  let webhook: CreatedWebhook | null = null;
  const revokeAtEnd: string[] = [];

  step("starting the API and a worker (each applies pending migrations first)");
  const services = [startProcess("api", API_MAIN, env), startProcess("worker", WORKER_MAIN, env)];
  try {
    await waitUntilReady(baseUrl, services);
    step(`API ready at ${baseUrl}`);

    const demoKey = await call<CreatedApiKey>(baseUrl, bootstrap, "POST", "/v1/api-keys", JSON.stringify({ name: "demo", scopes: DEMO_SCOPES }), "application/json");
    revokeAtEnd.push(demoKey.id);
    // The audit log names who made the key: the bootstrap key's id, to revoke it too at the end.
    const made = await call<AuditList>(baseUrl, bootstrap, "GET", "/v1/audit?action=api_key.created&limit=10");
    const bootstrapId = made.data.find((entry) => entry.resource === demoKey.id)?.actor;
    if (bootstrapId?.startsWith("key_")) revokeAtEnd.push(bootstrapId);
    key = demoKey.secret;
    step(`created key ${demoKey.id} (${demoKey.prefix}...) with ${demoKey.scopes.join(", ")}; the demo uses it from here on`);

    const model = await call<ModelVersion>(baseUrl, key, "POST", "/v1/models/iris/versions", await readFile(path.join(FIXTURES, "iris.onnx")), "application/octet-stream");
    const describe = (specs: ModelVersion["inputs"]) => specs.map((s) => `${s.name} ${s.type}[${s.shape.join(",")}]`).join(", ");
    step(`registered model iris version ${model.version}: ${describe(model.inputs)} -> ${describe(model.outputs)}`);

    webhook = await call<CreatedWebhook>(baseUrl, key, "POST", "/v1/webhooks", JSON.stringify({ url: receiver.url, events: ["job.succeeded", "job.failed"] }), "application/json");
    step(`registered webhook ${webhook.id} -> ${receiver.url}`);

    const { features, targets } = await readIris();
    const submitted = performance.now();
    const job = await call<Job>(baseUrl, key, "POST", "/v1/jobs", JSON.stringify({ model: `iris@${model.version}`, inputs: features.map((f) => ({ features: f })) }), "application/json");
    step(`submitted ${job.counts.total} rows as ${job.id} (${job.status})`);

    // Long-poll: the API holds each request until the job finishes (or 30 s pass).
    let current = job;
    while (!TERMINAL_JOB_STATUSES.includes(current.status)) current = await call<Job>(baseUrl, key, "GET", `/v1/jobs/${job.id}?wait=30`);
    const answeredAt = Date.now();
    const scoredMs = performance.now() - submitted;
    step(`job ${current.status}: ${current.counts.succeeded} rows scored, ${current.counts.failed} failed`);
    const delivered = await receiver.received(webhook.secret);
    const completedAt = Date.parse(current.completed_at ?? "");

    const rows: JobResults["data"] = [];
    let cursor: string | null = "0";
    while (cursor !== null) {
      const page: JobResults = await call<JobResults>(baseUrl, key, "GET", `/v1/jobs/${job.id}/results?limit=100&cursor=${cursor}`);
      rows.push(...page.data);
      cursor = page.next_cursor;
    }
    const correct = rows.filter((row) => row.outputs?.label === targets[row.index]).length;
    const first = rows[0];

    // The same first row predicted now (the synchronous path), then again from the result cache.
    const predictBody = JSON.stringify({ inputs: [{ features: features[0] }] });
    const predicted = await timed(() => call<PredictResponse>(baseUrl, key, "POST", `/v1/models/iris/versions/${model.version}/predict`, predictBody, "application/json"));
    const cached = await timed(() => call<PredictResponse>(baseUrl, key, "POST", `/v1/models/iris/versions/${model.version}/predict`, predictBody, "application/json"));
    const sameAsJob = JSON.stringify(predicted.value.outputs[0]?.outputs) === JSON.stringify(first?.outputs) && JSON.stringify(cached.value.outputs[0]?.outputs) === JSON.stringify(first?.outputs);
    console.log("");
    console.log(`  rows         ${rows.length}`);
    console.log(`  accuracy     ${((100 * correct) / targets.length).toFixed(1)}% (${correct}/${targets.length} labels match the CSV's target)`);
    console.log(`  scoring      ${scoredMs.toFixed(0)} ms from submit to succeeded`);
    const runs = current.execution.batch_rows;
    if (runs) console.log(`  ran on       ${current.execution.provider}, in onnxruntime runs of ${runs.min}-${runs.max} rows (mean ${runs.mean})`);
    console.log(`  long-poll    answered ${Math.max(0, answeredAt - completedAt)} ms after the job completed`);
    console.log(`  webhook      ${delivered.type} received ${Math.max(0, delivered.at - completedAt)} ms after completion, signature verified (webhook-id ${delivered.id})`);
    console.log(`  total        ${((performance.now() - started) / 1000).toFixed(1)} s including start-up`);
    if (first?.outputs) console.log(`  row 0        ${JSON.stringify(first.outputs)}`);
    console.log(`  predict      row 0 answered in ${predicted.ms.toFixed(1)} ms by POST .../predict, ${cached.ms.toFixed(1)} ms from the result cache; ${sameAsJob ? "the same outputs as the job's" : "NOT the job's outputs"}`);
    console.log("");
    if (current.status !== "succeeded" || rows.length !== targets.length) throw new Error("the demo job did not score every row");
    if (!sameAsJob) throw new Error("predict answered row 0 differently from the job");
    step("done; the API and worker are stopped again (run `npm start` to keep them running)");
  } finally {
    // The demo's tenant outlives the demo: leave no endpoint behind pointing at a closed port.
    if (webhook) await fetch(`${baseUrl}/v1/webhooks/${webhook.id}`, { method: "DELETE", headers: { Authorization: `Bearer ${key}` } }).catch(() => {});
    // Nor a live key: the demo's, then the bootstrap key revoking itself (allowed; it is the last request).
    let revoked = 0;
    for (const id of revokeAtEnd) {
      const answer = await fetch(`${baseUrl}/v1/api-keys/${id}`, { method: "DELETE", headers: { Authorization: `Bearer ${bootstrap}` } }).catch(() => null);
      if (answer?.status === 204) revoked += 1;
      else console.error(`could not revoke key ${id} (${answer?.status ?? "no answer"}); revoke it with \`coalesce keys revoke ${id}\``);
    }
    if (revoked === 2) step(`revoked the demo's key and the bootstrap key (${revokeAtEnd.join(", ")}): no live key is left behind`);
    receiver.close();
    await Promise.all(services.map((service) => stopProcess(service)));
  }
}

main().catch((error: unknown) => {
  console.error(`demo failed: ${(error as Error).message}`);
  console.error("Are Postgres (DATABASE_URL) and Redis (REDIS_URL) running? See README.md, Configuration.");
  process.exit(1);
});
