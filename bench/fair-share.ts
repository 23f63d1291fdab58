// `npm run bench:fair-share`: the latency of a small job of one tenant beside another tenant's big
// work, through real API and worker processes on this machine's Postgres and Redis, with the
// worker's fair share on and off (FAIR_SHARE), side by side. Two kinds of big work: one big CSV
// (`--rows`, 200,000 rows of the digits model by default), and a flood of JSON jobs (`--flood-jobs` of `--flood-rows` each).
// While it is scored, tenant B submits a 10-row batch-lane job every `--every-ms` (a 10-row job
// would go to the interactive lane, ahead of any batch work, on its own), and the bench reports how
// long B's jobs took from submission to completion, and how many finished only after the big work.
// Writes bench/results/fair-share.json.
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { finished } from "node:stream/promises";
import { parseArgs } from "node:util";
import type { Job } from "@coalesce/contracts";
import { connectDatabase, upsertApiKey } from "@coalesce/db";
import { hashApiKey } from "../apps/api/src/auth/api-keys.ts";
import { randomBytes } from "node:crypto";
import { ROOT, startProcess, stopProcess, WORKER_MAIN } from "../scripts/processes.ts";
import { openBench, uploadCsvFile, type Bench } from "./harness.ts";
import { writeResults } from "./results.ts";
import { percentile } from "./stats.ts";

const { values: args } = parseArgs({
  options: {
    rows: { type: "string", default: "200000" },
    "flood-jobs": { type: "string", default: "100" },
    "flood-rows": { type: "string", default: "2000" },
    /** iris (4 features) or digits (64), from fixtures/. */
    model: { type: "string", default: "digits" },
    "every-ms": { type: "string", default: "100" },
    /** Extra worker environment, e.g. `WORKER_CONCURRENCY=16,MAX_BATCH_ROWS=64`. */
    "worker-env": { type: "string", default: "" },
  },
});

const SMALL_ROWS = 10;
/** The fixture models the bench can load, by their input width. */
const FEATURES: Record<string, number> = { iris: 4, digits: 64 };

type Auth = { Authorization: string };

async function registerModel(bench: Bench, auth: Auth, name: string): Promise<void> {
  const bytes = await readFile(path.join(ROOT, "fixtures", `${name}.onnx`));
  const response = await fetch(`${bench.baseUrl}/v1/models/${name}/versions`, {
    method: "POST",
    headers: { ...auth, "Content-Type": "application/octet-stream" },
    body: bytes,
  });
  if (!response.ok) throw new Error(`registering ${name}: ${response.status} ${await response.text()}`);
}

async function writeCsv(file: string, rows: number, features: number): Promise<void> {
  const out = createWriteStream(file);
  out.write(`${Array.from({ length: features }, (_, i) => `f${i}`).join(",")}\n`);
  let buffer = "";
  for (let i = 0; i < rows; i++) {
    buffer += `${Array.from({ length: features }, () => (1 + Math.random() * 6).toFixed(1)).join(",")}\n`;
    if (buffer.length > 1 << 20) {
      if (!out.write(buffer)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
      buffer = "";
    }
  }
  out.end(buffer);
  await finished(out);
}

function jsonRows(count: number, features: number): { features: number[] }[] {
  return Array.from({ length: count }, () => ({ features: Array.from({ length: features }, () => 1 + Math.random() * 6) }));
}

async function submitJson(bench: Bench, auth: Auth, model: string, rows: { features: number[] }[]): Promise<Job> {
  const response = await fetch(`${bench.baseUrl}/v1/jobs`, {
    method: "POST",
    headers: { ...auth, "Content-Type": "application/json" },
    body: JSON.stringify({ model, inputs: rows, priority: "batch" }),
  });
  const job = (await response.json()) as Job;
  if (response.status !== 202) throw new Error(`submit failed: ${response.status} ${JSON.stringify(job)}`);
  return job;
}


type Scenario = "one big CSV" | "a flood of jobs";

async function runScenario(bench: Bench, a: Auth, b: Auth, scenario: Scenario, fairShare: boolean, csvFile: string, features: number) {
  const model = args.model;
  const workerEnv: Record<string, string> = { ...bench.env, FAIR_SHARE: String(fairShare) };
  for (const pair of args["worker-env"].split(",").filter(Boolean)) {
    const [name, value = ""] = pair.split("=");
    if (name) workerEnv[name] = value;
  }
  // The big work is queued first, then the worker starts: B's jobs meet a full queue and a worker busy with A's.
  const big: Job[] = [];
  const t0 = performance.now();
  if (scenario === "one big CSV") {
    big.push(await uploadCsvFile(bench.baseUrl, a, `model=${model}`, csvFile));
  } else {
    const rows = jsonRows(Number(args["flood-rows"]), features);
    for (let i = 0; i < Number(args["flood-jobs"]); i++) big.push(await submitJson(bench, a, model, rows));
  }
  const bigRows = big.reduce((sum, job) => sum + (job.counts.total ?? 0), 0);
  const bigIds = big.map((job) => job.id);
  const worker = startProcess("worker", WORKER_MAIN, workerEnv);
  const smallIds: string[] = [];
  try {
    const smallRows = jsonRows(SMALL_ROWS, features);
    let nextSmall = performance.now();
    for (;;) {
      const { rows } = await bench.db.query<{ unfinished: number; done: number }>(
        `SELECT count(*) FILTER (WHERE status IN ('queued', 'running'))::int AS unfinished, sum(succeeded_rows + failed_rows)::int AS done FROM jobs WHERE id = ANY($1)`,
        [bigIds],
      );
      const state = rows[0] ?? { unfinished: 0, done: 0 };
      if (state.unfinished === 0) break;
      // B's jobs only once A's work is being scored, so every one of them meets it.
      if (state.done > 0 && performance.now() >= nextSmall) {
        smallIds.push((await submitJson(bench, b, model, smallRows)).id);
        nextSmall = performance.now() + Number(args["every-ms"]);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const bigSeconds = (performance.now() - t0) / 1000;
    // Every small job finishes, if only after the big work: its latency counts either way.
    type Small = { latency_ms: number; after_big: boolean };
    let small: Small[] = [];
    for (;;) {
      const { rows } = await bench.db.query<Small & { completed: boolean }>(
        `SELECT s.completed_at IS NOT NULL AS completed,
                (extract(epoch FROM s.completed_at - s.created_at) * 1000)::int AS latency_ms,
                s.completed_at > (SELECT max(completed_at) FROM jobs WHERE id = ANY($2)) AS after_big
           FROM jobs s WHERE s.id = ANY($1)`,
        [smallIds, bigIds],
      );
      if (rows.every((row) => row.completed)) {
        small = rows;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const latencies = small.map((row) => row.latency_ms).sort((x, y) => x - y);
    return {
      scenario,
      fair_share: fairShare,
      big_rows: bigRows,
      big_jobs: big.length,
      big_s: +bigSeconds.toFixed(1),
      small_jobs: small.length,
      small_after_big: small.filter((row) => row.after_big).length,
      small_p50_ms: percentile(latencies, 50),
      small_p90_ms: percentile(latencies, 90),
      small_max_ms: latencies[latencies.length - 1] ?? Number.NaN,
    };
  } finally {
    await stopProcess(worker);
  }
}

async function main(): Promise<void> {
  const bench = await openBench();
  const model = args.model;
  const db = connectDatabase(bench.env.DATABASE_URL as string, { max: 2 });
  try {
    const a = bench.headers;
    const secret = `csk_bench_b_${randomBytes(12).toString("hex")}`;
    await upsertApiKey(db.prisma, { tenantName: "bench-b", name: "bench-b", hash: hashApiKey(secret), prefix: secret.slice(0, 8) });
    const b = { Authorization: `Bearer ${secret}` };
    await registerModel(bench, a, model);
    await registerModel(bench, b, model);
    const features = FEATURES[model];
    if (features === undefined) throw new Error(`--model: one of ${Object.keys(FEATURES).join(", ")}`);
    const csvFile = path.join(bench.dir, "big.csv");
    console.log(`generating ${Number(args.rows).toLocaleString()} rows of ${features} features ...`);
    await writeCsv(csvFile, Number(args.rows), features);

    const results: Awaited<ReturnType<typeof runScenario>>[] = [];
    for (const scenario of ["one big CSV", "a flood of jobs"] as const) {
      for (const fairShare of [false, true]) {
        console.log(`${scenario}, FAIR_SHARE=${fairShare} ...`);
        const row = await runScenario(bench, a, b, scenario, fairShare, csvFile, features);
        console.log(row);
        results.push(row);
      }
    }
    console.log("");
    console.table(results);
    console.log(`small jobs: ${SMALL_ROWS} rows each, batch lane, tenant B, one every ${args["every-ms"]} ms while tenant A's work ran; latency from submission to completion.`);
    console.log(`written to ${await writeResults("fair-share", results)}`);
  } finally {
    await db.close();
    await bench.close();
  }
}

main().catch((error: unknown) => {
  console.error(`bench failed: ${(error as Error).message}`);
  process.exit(1);
});
