// `npm run demo`: the main job, end to end on the real services. Starts the API and a worker,
// registers the iris model, scores the 150 rows of fixtures/iris.csv through
// API -> Postgres -> BullMQ -> coalesced onnxruntime batch -> Postgres -> poll, prints a summary
// and stops both processes again (`npm start` keeps a service running).
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { TERMINAL_JOB_STATUSES, type Job, type JobResults, type ModelVersion } from "@coalesce/contracts";
import { API_MAIN, freePort, ROOT, startProcess, stopProcess, waitUntilReady, WORKER_MAIN } from "./processes.ts";

const FIXTURES = path.join(ROOT, "fixtures");

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
  const key = `csk_demo_${randomBytes(16).toString("hex")}`;
  const env = { PORT: String(port), BOOTSTRAP_API_KEY: key, LOG_LEVEL: process.env.LOG_LEVEL ?? "warn" };

  step("starting the API and a worker (each applies pending migrations first)");
  const services = [startProcess("api", API_MAIN, env), startProcess("worker", WORKER_MAIN, env)];
  try {
    await waitUntilReady(baseUrl, services);
    step(`API ready at ${baseUrl}`);

    const model = await call<ModelVersion>(baseUrl, key, "POST", "/v1/models/iris/versions", await readFile(path.join(FIXTURES, "iris.onnx")), "application/octet-stream");
    const describe = (specs: ModelVersion["inputs"]) => specs.map((s) => `${s.name} ${s.type}[${s.shape.join(",")}]`).join(", ");
    step(`registered model iris version ${model.version}: ${describe(model.inputs)} -> ${describe(model.outputs)}`);

    const { features, targets } = await readIris();
    const submitted = performance.now();
    const job = await call<Job>(baseUrl, key, "POST", "/v1/jobs", JSON.stringify({ model: `iris@${model.version}`, inputs: features.map((f) => ({ features: f })) }), "application/json");
    step(`submitted ${job.counts.total} rows as ${job.id} (${job.status})`);

    let current = job;
    while (!TERMINAL_JOB_STATUSES.includes(current.status)) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      current = await call<Job>(baseUrl, key, "GET", `/v1/jobs/${job.id}`);
    }
    const scoredMs = performance.now() - submitted;
    step(`job ${current.status}: ${current.counts.succeeded} rows scored, ${current.counts.failed} failed`);

    const rows: JobResults["data"] = [];
    let cursor: string | null = "0";
    while (cursor !== null) {
      const page: JobResults = await call<JobResults>(baseUrl, key, "GET", `/v1/jobs/${job.id}/results?limit=100&cursor=${cursor}`);
      rows.push(...page.data);
      cursor = page.next_cursor;
    }
    const correct = rows.filter((row) => row.outputs?.label === targets[row.index]).length;
    const first = rows[0];
    console.log("");
    console.log(`  rows         ${rows.length}`);
    console.log(`  accuracy     ${((100 * correct) / targets.length).toFixed(1)}% (${correct}/${targets.length} labels match the CSV's target)`);
    console.log(`  scoring      ${scoredMs.toFixed(0)} ms from submit to succeeded`);
    const runs = current.execution.batch_rows;
    if (runs) console.log(`  ran on       ${current.execution.provider}, in onnxruntime runs of ${runs.min}-${runs.max} rows (mean ${runs.mean})`);
    console.log(`  total        ${((performance.now() - started) / 1000).toFixed(1)} s including start-up`);
    if (first?.outputs) console.log(`  row 0        ${JSON.stringify(first.outputs)}`);
    console.log("");
    if (current.status !== "succeeded" || rows.length !== targets.length) throw new Error("the demo job did not score every row");
    step("done; the API and worker are stopped again (run `npm start` to keep them running)");
  } finally {
    await Promise.all(services.map((service) => stopProcess(service)));
  }
}

main().catch((error: unknown) => {
  console.error(`demo failed: ${(error as Error).message}`);
  console.error("Are Postgres (DATABASE_URL) and Redis (REDIS_URL) running? See README.md, Configuration.");
  process.exit(1);
});
