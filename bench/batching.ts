// `npm run bench`: does coalescing pay? Side by side in one run, for mlp_wide (fixtures) and a
// weight-heavy 64 -> 4096 -> 4096 -> 10 perceptron generated here with random weights:
//   1. raw onnxruntime-node in this process at batch 1 and at MAX_BATCH_ROWS, as one session and as
//      the worker runs it (MODEL_INSTANCES sessions on threads of their own): the physical limit;
//   2. many single-row jobs through the real API and a real worker, submitted `concurrency` at a
//      time, with coalescing on and with MAX_BATCH_ROWS=1: rows/s, latency from creation to
//      completion (p50/p95/p99, server timestamps), the mean batch size, the worker's worst
//      event-loop delay. One worker serves both: the model is registered twice, once with the
//      version limit max_batch_rows=1, and the two take turns over `--rounds` rounds, so a slow
//      spell of a shared machine hits both sides alike (rows/s is the median over the rounds);
//   3. jobs of 64 rows, 16 in flight, coalescing on: what the service costs once the per-request
//      costs (HTTP, the job's own rows in Postgres) are shared by many rows;
//   4. single-row jobs one at a time at low load: their latency;
//   5. where the time goes: CPU milliseconds per row of the API, the worker (its event loop and its
//      other threads: onnxruntime's), Postgres, Redis and this load generator (from /proc, on Linux);
//   6. end to end against raw onnxruntime at the batch size each run achieved, measured in the same
//      round as the run (this shared machine's speed drifts by tens of percent within minutes);
//   7. fairness: single-row jobs sent every 100 ms while one 20,000-row batch-lane job runs: their
//      latency, and that job's own rows/s;
//   8. predict now (bench/predict.ts): single-row POST /v1/models/{name}/predict with
//      `Cache-Control: no-cache` (the model runs) at 1, 64 and 256 in flight, in the same rounds as
//      the job loads and against raw onnxruntime at the batch they achieved; cached answers (the
//      same few rows asked again), 64 in flight and one at a time; a lone iris request at a time.
//      Latency is the client's (request sent to answer read), the mean batch and the time inside
//      the API and the worker come from their /metrics.
// Prints a table, each issue target with whether it is met, and writes bench/results/batching.json.
// `--jobs N` sets the coalescing rows per load over all rounds (a third of that for
// MAX_BATCH_ROWS=1, four times that for 64-row jobs; as many predict rows as coalescing rows, a
// fifteenth of that one at a time). `--only jobs|predict` runs only those loads.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import type { Job } from "@coalesce/contracts";
import { loadSessionWithFallback } from "@coalesce/models";
import { intraOpThreads, loadWorkerEnv } from "../apps/worker/src/env.ts";
import { openInstances } from "../apps/worker/src/inference/session-pool.ts";
import type { ModelSession } from "../apps/worker/src/inference/thread-session.ts";
import { buildRandomMlp } from "@coalesce/models/tiny-onnx";
import * as ort from "onnxruntime-node";
import { Pool } from "undici";
import { ROOT, startProcess, stopProcess, WORKER_MAIN, type ServiceProcess } from "../scripts/processes.ts";
import { cpuPerJob, snapshotCpu } from "./cpu.ts";
import { openBench, registerModel, type Bench } from "./harness.ts";
import { makePredictBodies, predictRecord, scrape, sendPredicts, servedTotals, warmCache, warmPredict, type PredictLoad, type ServedMs } from "./predict.ts";
import { writeResults } from "./results.ts";
import { median, percentile, round1 } from "./stats.ts";

const { values: args } = parseArgs({
  options: {
    jobs: { type: "string", default: "15000" },
    "max-batch": { type: "string", default: "256" },
    models: { type: "string", default: "mlp_wide,heavy" },
    rounds: { type: "string", default: "3" },
    only: { type: "string" },
  },
});
if (args.only !== undefined && args.only !== "jobs" && args.only !== "predict") {
  throw new Error(`--only takes "jobs" or "predict", got "${args.only}"; leave it out to run both`);
}
const RUN_JOBS = args.only !== "predict";
const RUN_PREDICT = args.only !== "jobs";
const ROUNDS = Math.max(1, Number(args.rounds));
const JOBS = Number(args.jobs);
const MAX_BATCH = Number(args["max-batch"]);

/** A load: jobs of `rowsPerJob` rows, `concurrency` submissions in flight; `both`: also with coalescing off. */
type Load = { name: string; rowsPerJob: number; concurrency: number; both: boolean; share: number };
const MANY_ROWS_LOAD = "64 rows/job, c=16";
/** Rows of the big job (batch lane) that lone interactive rows run beside. */
const BULK_ROWS = 20_000;
const BULK_ROWS_LOAD = `one ${BULK_ROWS.toLocaleString("en")}-row job`;
const LOADS: Load[] = [
  { name: "c=64", rowsPerJob: 1, concurrency: 64, both: true, share: 1 },
  { name: "c=256", rowsPerJob: 1, concurrency: 256, both: true, share: 1 },
  // Coalescing off would take minutes here and says nothing new: batch 1 is batch 1.
  { name: MANY_ROWS_LOAD, rowsPerJob: 64, concurrency: 16, both: false, share: 4 },
];

/** Single-row predict requests with `concurrency` in flight, `share` of --jobs rows over all rounds. */
const PREDICT_LOADS = [
  { name: "c=1", concurrency: 1, share: 1 / 15 },
  { name: "c=64", concurrency: 64, share: 1 },
  { name: "c=256", concurrency: 256, share: 1 },
];
/** Distinct rows of the cache-hit loads: few enough that every one is in the cache, asked many times each. */
const CACHED_ROWS = 8;
const CACHE_HIT_LOADS = [
  { name: "cache hit, c=64", concurrency: 64, requests: 5000 },
  { name: "cache hit, one at a time", concurrency: 1, requests: 1000 },
];
/** Lone iris requests, one at a time: the service's own latency, the model's run being tiny. */
const LONE_IRIS_REQUESTS = 1000;
/** The targets for predict, checked on every run. */
const PREDICT_TARGETS = { vsJobsAt256X: 5, vsRawPct: 60, loneIrisP50Ms: 3, cacheHitP50Ms: 1 };

async function loadModel(name: string): Promise<Uint8Array> {
  if (name === "heavy") return buildRandomMlp([64, 4096, 4096, 10]);
  return new Uint8Array(await readFile(path.join(ROOT, "fixtures", `${name}.onnx`)));
}

/** onnxruntime alone, one way of running it: `inFlight` runs at a time. */
type RawRunner = { name: string; run: ModelSession["run"]; inFlight: number; release(): Promise<void> };

/**
 * onnxruntime alone, two ways: one session with its default threads, and as the worker runs it
 * (MODEL_INSTANCES sessions on threads of their own, cores shared out, through the worker's own
 * openInstances). The limit at a batch size is the faster of the two.
 */
async function openRawRunners(bytes: Uint8Array, providers: string[]): Promise<{ provider: string; runners: RawRunner[] }> {
  const { session, provider } = await loadSessionWithFallback(bytes, providers);
  const runners: RawRunner[] = [{ name: "one session", run: (feeds) => session.run(feeds), inFlight: 1, release: () => session.release() }];
  // The worker this bench starts inherits this environment, so it runs the model the same way.
  const env = loadWorkerEnv(process.env);
  if (env.INFERENCE_THREADS && env.MODEL_INSTANCES > 1) {
    const options = { intraOpNumThreads: intraOpThreads(env), spinning: env.INTRA_OP_SPINNING, graphOptimizationLevel: env.GRAPH_OPTIMIZATION_LEVEL };
    const { session: pool, instances } = await openInstances({ model: bytes, providers: [provider], options }, env.MODEL_INSTANCES);
    runners.push({ name: `${instances} instances x ${options.intraOpNumThreads} threads`, run: (feeds) => pool.run(feeds), inFlight: instances, release: () => pool.release() });
  }
  return { provider, runners };
}

/** Rows/s of one raw runner at one batch size, over about `seconds`. */
async function rawRowsPerSecond(runner: RawRunner, batch: number, seconds = 2): Promise<number> {
  const data = Float32Array.from({ length: batch * 64 }, () => Math.random());
  // A fresh tensor per run: the inference threads take their inputs' buffers (transferred, not copied).
  const runOnce = () => runner.run({ x: new ort.Tensor("float32", data.slice(), [batch, 64]) });
  await Promise.all(Array.from({ length: runner.inFlight }, runOnce));
  const started = performance.now();
  const deadline = started + seconds * 1000;
  let runs = 0;
  await Promise.all(
    Array.from({ length: runner.inFlight }, async () => {
      while (performance.now() < deadline) {
        await runOnce();
        runs++;
      }
    }),
  );
  return Math.round((runs * batch) / ((performance.now() - started) / 1000));
}

/** The limit at one batch size: the faster raw runner, each measured now. */
async function rawLimit(runners: RawRunner[], batch: number, seconds = 2): Promise<number> {
  let best = 0;
  for (const runner of runners) best = Math.max(best, await rawRowsPerSecond(runner, batch, seconds));
  return best;
}


async function startWorker(bench: Bench, env: Record<string, string>): Promise<{ worker: ServiceProcess; metricsPort: Promise<number> }> {
  const worker = startProcess("worker", WORKER_MAIN, { ...bench.env, LOG_LEVEL: "info", WORKER_CONCURRENCY: "256", ...env }, "pipe");
  let output = "";
  const metricsPort = new Promise<number>((resolve) => {
    worker.child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const match = /"metricsPort":(\d+)/.exec(output);
      if (match) resolve(Number(match[1]));
      if (output.length > 1e6) output = output.slice(-1e4);
    });
  });
  worker.child.stderr?.resume();
  return { worker, metricsPort };
}

/** The worst event-loop delay since the previous scrape, from a scrape's text (prom-client resets it on each scrape). */
const eventLoopMaxMsOf = (metricsText: string) => Number(/^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(metricsText)?.[1] ?? Number.NaN) * 1000;

/** The worst event-loop delay since the last scrape. */
async function eventLoopMaxMs(port: number): Promise<number> {
  return eventLoopMaxMsOf(await scrape(port));
}

// The load generator shares the 2 cores with the service, so it uses undici's request API on a
// pool of kept-alive connections (per job about 0.1-0.2 ms of CPU, against 0.6 ms for node:http
// and about as much as the API itself for fetch), and sends bodies made before the clock starts.
let pool: Pool | undefined;
const http = (bench: Bench) => (pool ??= new Pool(bench.baseUrl, { connections: 256 }));

/** Request bodies of `rowsPerJob` random 64-feature rows for `model`, made once and sent in turn. */
function makeBodies(model: string, rowsPerJob: number, count: number): string[] {
  const row = () => ({ x: Array.from({ length: 64 }, () => Math.random()) });
  return Array.from({ length: count }, () => JSON.stringify({ model, inputs: Array.from({ length: rowsPerJob }, row) }));
}

async function submit(bench: Bench, body: string): Promise<string> {
  const response = await http(bench).request({ path: "/v1/jobs", method: "POST", headers: { ...bench.headers, "content-type": "application/json" }, body });
  const text = await response.body.text();
  if (response.statusCode !== 202) throw new Error(`submit: ${response.statusCode} ${text}`);
  return (JSON.parse(text) as Job).id;
}

/** One run's jobs as Postgres recorded them, once every job has finished. */
type RunRecord = { provider: string; rows_s: number; latencies: number[]; batchRowsSum: number; ranRows: number };

/** The mean onnxruntime batch the rows of some runs were part of. */
const meanBatch = (records: RunRecord[]) =>
  records.reduce((sum, r) => sum + r.batchRowsSum, 0) / Math.max(1, records.reduce((sum, r) => sum + r.ranRows, 0));

async function recordOf(bench: Bench, ids: string[]): Promise<RunRecord> {
  for (;;) {
    const { rows } = await bench.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM jobs WHERE id = ANY($1) AND status IN ('succeeded', 'failed')`,
      [ids],
    );
    if (Number(rows[0]?.n) === ids.length) break;
    // Timings come from Postgres' timestamps, so polling slowly costs no accuracy (and less CPU).
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const { rows } = await bench.db.query<{ created: Date; completed: Date; sum: string; ran: number; total: number; provider: string | null }>(
    `SELECT created_at AS created, completed_at AS completed, batch_rows_sum AS sum, batched_rows AS ran, total_rows AS total, provider
       FROM jobs WHERE id = ANY($1)`,
    [ids],
  );
  const first = Math.min(...rows.map((r) => r.created.getTime()));
  const last = Math.max(...rows.map((r) => r.completed.getTime()));
  return {
    // The provider(s) the worker scored these jobs on, as recorded on each job.
    provider: [...new Set(rows.map((r) => r.provider ?? "none"))].sort().join("+"),
    rows_s: Math.round(rows.reduce((sum, r) => sum + r.total, 0) / ((last - first) / 1000)),
    latencies: rows.map((r) => r.completed.getTime() - r.created.getTime()),
    batchRowsSum: rows.reduce((sum, r) => sum + Number(r.sum), 0),
    ranRows: rows.reduce((sum, r) => sum + r.ran, 0),
  };
}



type RunStats = { provider: string; rows_s: number; rows_s_by_round: number[]; p50_ms: number; p95_ms: number; p99_ms: number; mean_batch: number };

/** The runs of one mode and load over the rounds: median rows/s, latencies over all their jobs. */
function combine(records: RunRecord[]): RunStats {
  const latencies = records.flatMap((r) => r.latencies).sort((a, b) => a - b);
  return {
    provider: [...new Set(records.map((r) => r.provider))].join("+"),
    rows_s: Math.round(median(records.map((r) => r.rows_s))),
    rows_s_by_round: records.map((r) => r.rows_s),
    p50_ms: percentile(latencies, 50),
    p95_ms: percentile(latencies, 95),
    p99_ms: percentile(latencies, 99),
    mean_batch: round1(meanBatch(records)),
  };
}

/** `count` jobs, the bodies in turn, with `concurrency` submissions in flight. */
async function loadRun(bench: Bench, bodies: string[], count: number, concurrency: number): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        ids.push(await submit(bench, bodies[next++ % bodies.length] as string));
      }
    }),
  );
  return ids;
}

/** Waits for a job as a client would: long-polls until it has ended. */
async function waitForJob(bench: Bench, id: string, waitSeconds = 10): Promise<Job> {
  for (;;) {
    const response = await http(bench).request({ path: `/v1/jobs/${id}?wait=${waitSeconds}`, method: "GET", headers: bench.headers });
    const job = (await response.body.json()) as Job;
    if (response.statusCode !== 200) throw new Error(`job ${id}: ${response.statusCode} ${JSON.stringify(job)}`);
    if (job.status !== "queued" && job.status !== "running") return job;
  }
}

/**
 * Single-row jobs one at a time, each waited for as a client would (a long-poll, answered when the
 * job finishes): latency at low load. Polling Postgres every millisecond instead, as this did, kept
 * a core busy that the service shares and added ~4 ms to the p50 on a slow day.
 */
async function lowLoadRun(bench: Bench, model: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (const body of makeBodies(model, 1, count)) {
    const id = await submit(bench, body);
    ids.push(id);
    const job = await waitForJob(bench, id);
    if (job.status !== "succeeded") throw new Error(`low load: job ${id} is ${job.status}`);
  }
  return ids;
}

/** Lone interactive rows sent beside the big job, this often whatever their latency (as an app's requests come). */
const BESIDE_EVERY_MS = 100;

/**
 * Single-row jobs sent every BESIDE_EVERY_MS while the job `bulk` runs, each waited for by
 * long-poll: how long an interactive row waits behind a big job's batches.
 */
async function besideRun(bench: Bench, model: string, bulk: string): Promise<string[]> {
  const bodies = makeBodies(model, 1, 64);
  const ids: string[] = [];
  const waits: Promise<Job>[] = [];
  let running = true;
  const bulkDone = waitForJob(bench, bulk, 60).then(() => {
    running = false;
  });
  for (let i = 0; running; i++) {
    waits.push(submit(bench, bodies[i % bodies.length] as string).then((id) => (ids.push(id), waitForJob(bench, id))));
    await new Promise((resolve) => setTimeout(resolve, BESIDE_EVERY_MS));
  }
  await bulkDone;
  for (const job of await Promise.all(waits)) if (job.status !== "succeeded") throw new Error(`beside: job ${job.id} is ${job.status}`);
  return ids;
}

/**
 * One mode of one load: each round's record, CPU per row and worst event-loop delay, and raw
 * onnxruntime beside it; for predict loads also where the time went inside the services.
 */
type Entry = { records: RunRecord[]; cpu: Record<string, number>[]; eventLoopMs: number[]; rawAtAchieved: number[]; served: ServedMs[] };

const newEntry = (): Entry => ({ records: [], cpu: [], eventLoopMs: [], rawAtAchieved: [], served: [] });

/** A row of the 64-feature models (mlp_wide and the heavy one). */
const randomRow = () => ({ x: Array.from({ length: 64 }, () => Math.random()) });

type Pids = { api: number | undefined; worker: number | undefined };

/**
 * One predict load, recorded into `entry` as a job load is: the client's timings and rows/s, CPU
 * per row, the worker's worst event-loop delay, and from both processes' metrics the mean batch
 * and the time spent inside them.
 */
async function measurePredict(bench: Bench, port: number, pids: Pids, load: PredictLoad, entry: Entry): Promise<RunRecord> {
  const scrapeBoth = async () => {
    const [worker, api] = await Promise.all([scrape(port), scrape(bench.baseUrl)]);
    return servedTotals(worker, api, load.model);
  };
  // The worker's scrape also starts a fresh worst event-loop delay, as eventLoopMaxMs does for jobs.
  const before = await scrapeBoth();
  const cpuBefore = await snapshotCpu(pids);
  const sent = await sendPredicts(http(bench), bench, load);
  const cpuAfter = await snapshotCpu(pids);
  const workerText = await scrape(port);
  const after = servedTotals(workerText, await scrape(bench.baseUrl), load.model);
  const record = predictRecord(sent, before, after);
  entry.records.push(record);
  entry.cpu.push(cpuPerJob(cpuBefore, cpuAfter, load.count));
  entry.eventLoopMs.push(eventLoopMaxMsOf(workerText));
  entry.served.push(record.servedMs);
  return record;
}

/** The table rows of one model's runs: each mode and load over its rounds. */
function summarizeRuns(model: string, runs: Map<string, Entry>): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  for (const [key, entry] of runs) {
    const [mode = "", load = ""] = key.split("|");
    const cpu: Record<string, number> = {};
    for (const part of entry.cpu) for (const [name, value] of Object.entries(part)) cpu[name] = (cpu[name] ?? 0) + value / entry.cpu.length;
    const served: Record<string, number> = {};
    for (const part of entry.served) for (const [name, value] of Object.entries(part)) served[name] = (served[name] ?? 0) + value / entry.served.length;
    // End to end against raw onnxruntime at the batch each round achieved, round by round.
    const vsRaw = entry.rawAtAchieved.map((rawRows, i) => (100 * (entry.records[i]?.rows_s ?? 0)) / rawRows);
    const latencies = entry.records.flatMap((r) => r.latencies);
    const row = {
      model,
      mode,
      load,
      ...combine(entry.records),
      // The client's mean: beside the services' own means below, the rest is HTTP over loopback and the client.
      ...(entry.served.length > 0 ? { mean_ms: Math.round((latencies.reduce((sum, l) => sum + l, 0) / latencies.length) * 1000) / 1000 } : {}),
      worst_event_loop_ms: entry.eventLoopMs.length > 0 ? round1(Math.max(...entry.eventLoopMs)) : null,
      ...(vsRaw.length > 0 ? { raw_at_achieved_rows_s: Math.round(median(entry.rawAtAchieved)), e2e_vs_raw_pct: Math.round(median(vsRaw)) } : {}),
      ...Object.fromEntries(Object.entries(cpu).map(([name, value]) => [name, Math.round(value * 100) / 100])),
      ...Object.fromEntries(Object.entries(served).map(([name, value]) => [name, Math.round(value * 1000) / 1000])),
    };
    rows.push(row);
    console.log(row);
  }
  return rows;
}

/** Lone iris predict requests, one at a time, on a worker of their own: the service's latency when the model costs nothing. */
async function loneIrisRun(bench: Bench): Promise<Record<string, unknown>[]> {
  await registerModel(bench, "iris", new Uint8Array(await readFile(path.join(ROOT, "fixtures/iris.onnx"))));
  const csv = (await readFile(path.join(ROOT, "fixtures/iris.csv"), "utf8")).trim().split("\n").slice(1);
  // row_id, the four features, target.
  const rows = csv.map((line) => ({ features: line.split(",").slice(1, 5).map(Number) }));
  let next = 0;
  const bodies = makePredictBodies(() => rows[next++ % rows.length], rows.length);
  const { worker, metricsPort } = await startWorker(bench, { MAX_BATCH_ROWS: String(MAX_BATCH), MAX_BATCH_DELAY_MS: "5" });
  const runs = new Map<string, Entry>();
  try {
    const port = await metricsPort;
    await warmPredict(http(bench), bench, "iris", bodies[0] as string);
    const entry = newEntry();
    await measurePredict(bench, port, { api: bench.api.child.pid, worker: worker.child.pid }, { model: "iris", bodies, count: LONE_IRIS_REQUESTS, concurrency: 1, cacheControl: "no-cache", expectCache: "miss" }, entry);
    runs.set("predict|lone request, one at a time", entry);
  } finally {
    await stopProcess(worker);
  }
  return summarizeRuns("iris", runs);
}

/** One issue target: its measured value, the goal, and whether it is met. */
type Target = { target: string; model: string; value: number | null; goal: string; met: boolean | null };

function checkTarget(target: string, model: string, value: number | null | undefined, goal: number, atLeast: boolean): Target {
  const known = value !== null && value !== undefined && Number.isFinite(value);
  return { target, model, value: known ? value : null, goal: `${atLeast ? ">=" : "<="} ${goal}`, met: known ? (atLeast ? value >= goal : value <= goal) : null };
}

async function main(): Promise<void> {
  const bench = await openBench();
  const results: Record<string, unknown>[] = [];
  const targets: Target[] = [];
  try {
    for (const model of String(args.models).split(",")) {
      const bytes = await loadModel(model);
      // Raw onnxruntime opens on the worker's providers (EXECUTION_PROVIDERS, default cpu), as its model cache does.
      const { provider, runners } = await openRawRunners(bytes, (process.env.EXECUTION_PROVIDERS ?? "cpu").split(",").map((p) => p.trim()));
      const rawByRunner: Record<string, { batch1: number; batchMax: number }> = {};
      for (const runner of runners) {
        rawByRunner[runner.name] = { batch1: await rawRowsPerSecond(runner, 1), batchMax: await rawRowsPerSecond(runner, MAX_BATCH) };
        console.log(`${model}: raw onnxruntime on ${provider}, ${runner.name}: ${rawByRunner[runner.name]?.batch1} rows/s at batch 1, ${rawByRunner[runner.name]?.batchMax} at batch ${MAX_BATCH}`);
      }
      const raw = {
        batch1: Math.max(...Object.values(rawByRunner).map((r) => r.batch1)),
        batchMax: Math.max(...Object.values(rawByRunner).map((r) => r.batchMax)),
      };
      const modes = [
        { name: "coalescing", model, share: 1 },
        // The same model as a version with coalescing off: one row per onnxruntime run.
        { name: "MAX_BATCH_ROWS=1", model: `${model}-b1`, share: 1 / 3 },
      ];
      await registerModel(bench, model, bytes);
      if (RUN_JOBS) await registerModel(bench, `${model}-b1`, bytes, "max_batch_rows=1&max_batch_delay_ms=0");

      const { worker, metricsPort } = await startWorker(bench, { MAX_BATCH_ROWS: String(MAX_BATCH), MAX_BATCH_DELAY_MS: "5" });
      const runs = new Map<string, Entry>();
      try {
        const port = await metricsPort;
        // Warm up: each model loads on its first job (or predict request).
        if (RUN_JOBS) for (const mode of modes) await recordOf(bench, await loadRun(bench, makeBodies(mode.model, 1, 16), 16, 16));
        if (RUN_PREDICT) await warmPredict(http(bench), bench, model, makePredictBodies(randomRow, 1)[0] as string);
        const pids = { api: bench.api.child.pid, worker: worker.child.pid };
        const plan = (RUN_JOBS ? LOADS : []).flatMap((load) =>
          modes.filter((mode) => load.both || mode.name === "coalescing").map((mode) => {
            const jobs = Math.ceil((JOBS * mode.share * load.share) / load.rowsPerJob / ROUNDS);
            return { load, mode, jobs, bodies: makeBodies(mode.model, load.rowsPerJob, Math.min(jobs, 2048)) };
          }),
        );
        // `no-cache`: every request runs the model (and stores its answer, as such a request does).
        const predictPlan = (RUN_PREDICT ? PREDICT_LOADS : []).map(({ name, concurrency, share }) => {
          const count = Math.ceil((JOBS * share) / ROUNDS);
          const load: PredictLoad = { model, bodies: makePredictBodies(randomRow, Math.min(count, 2048)), count, concurrency, cacheControl: "no-cache", expectCache: "miss" };
          return { name, load };
        });
        for (let round = 1; round <= ROUNDS; round++) {
          for (const { load, mode, jobs, bodies } of plan) {
            await eventLoopMaxMs(port);
            const cpuBefore = await snapshotCpu(pids);
            const ids = await loadRun(bench, bodies, jobs, load.concurrency);
            const record = await recordOf(bench, ids);
            const key = `${mode.name}|${load.name}`;
            const entry = runs.get(key) ?? newEntry();
            entry.records.push(record);
            entry.cpu.push(cpuPerJob(cpuBefore, await snapshotCpu(pids), ids.length * load.rowsPerJob));
            entry.eventLoopMs.push(await eventLoopMaxMs(port));
            // The limit at this run's batch size, measured now: the machine's speed drifts between rounds.
            if (mode.name === "coalescing") entry.rawAtAchieved.push(await rawLimit(runners, Math.max(1, Math.round(meanBatch([record]))), 1.5));
            runs.set(key, entry);
            console.log(`${model} round ${round}/${ROUNDS} ${mode.name} ${load.name}: ${record.rows_s} rows/s`);
          }
          for (const { name, load } of predictPlan) {
            const key = `predict|${name}`;
            const entry = runs.get(key) ?? newEntry();
            const record = await measurePredict(bench, port, pids, load, entry);
            entry.rawAtAchieved.push(await rawLimit(runners, Math.max(1, Math.round(meanBatch([record]))), 1.5));
            runs.set(key, entry);
            console.log(`${model} round ${round}/${ROUNDS} predict ${name}: ${record.rows_s} rows/s, mean batch ${round1(meanBatch([record]))}`);
          }
        }
        if (RUN_JOBS) {
          await eventLoopMaxMs(port);
          const lowLoad = await recordOf(bench, await lowLoadRun(bench, model, 100));
          // At low load the CPU goes to waiting, not to jobs: no CPU per row.
          runs.set("coalescing|low load", { ...newEntry(), records: [lowLoad], eventLoopMs: [await eventLoopMaxMs(port)] });
          // Fairness: the same lone rows (interactive lane) while one big job (batch lane) runs.
          const bulk = await submit(bench, makeBodies(model, BULK_ROWS, 1)[0] as string);
          const beside = await recordOf(bench, await besideRun(bench, model, bulk));
          runs.set(`coalescing|${BULK_ROWS_LOAD}`, { ...newEntry(), records: [await recordOf(bench, [bulk])] });
          runs.set(`coalescing|1 row every ${BESIDE_EVERY_MS} ms beside it`, { ...newEntry(), records: [beside], eventLoopMs: [await eventLoopMaxMs(port)] });
        }
        if (RUN_PREDICT) {
          // The same few rows asked again and again: every answer from the cache, no model run.
          const cached = makePredictBodies(randomRow, CACHED_ROWS);
          await warmCache(http(bench), bench, model, cached);
          for (const { name, concurrency, requests } of CACHE_HIT_LOADS) {
            const entry = newEntry();
            await measurePredict(bench, port, pids, { model, bodies: cached, count: requests, concurrency, expectCache: "hit" }, entry);
            runs.set(`predict|${name}`, entry);
          }
        }
      } finally {
        await stopProcess(worker);
      }
      for (const runner of runners) await runner.release();
      results.push(...summarizeRuns(model, runs));
      const find = (mode: string, load: string) => results.find((r) => r.model === model && r.mode === mode && r.load === load) as (RunStats & { e2e_vs_raw_pct?: number }) | undefined;
      const coalesced = find("coalescing", "c=256");
      const single = find("MAX_BATCH_ROWS=1", "c=256");
      const manyRows = find("coalescing", MANY_ROWS_LOAD);
      const predicted = find("predict", "c=256");
      const cacheHit = find("predict", "cache hit, one at a time");
      // Each round's own ratio too: both sides of a round ran back to back.
      const byRound = (a: RunStats | undefined, b: RunStats | undefined) => (a && b ? a.rows_s_by_round : []).map((rows, i) => round1(rows / (b?.rows_s_by_round[i] ?? Number.NaN)));
      const predictVsJobs = predicted && coalesced ? round1(predicted.rows_s / coalesced.rows_s) : null;
      const summary = {
        model,
        raw_provider: provider,
        // Each way of running onnxruntime alone (one session; as the worker runs it); the limit is the faster.
        raw_by_runner: Object.entries(rawByRunner).map(([name, r]) => `${name}: ${r.batch1} / ${r.batchMax}`).join("; "),
        raw_batch1_rows_s: raw.batch1,
        [`raw_batch${MAX_BATCH}_rows_s`]: raw.batchMax,
        // onnxruntime's own gain from batching on this machine: what coalescing's ratio can at best approach.
        [`raw_batch${MAX_BATCH}_vs_batch1_x`]: round1(raw.batchMax / raw.batch1),
        coalescing_vs_batch1_x: coalesced && single ? round1(coalesced.rows_s / single.rows_s) : null,
        coalescing_vs_batch1_x_by_round: byRound(coalesced, single).join(" "),
        e2e_vs_raw_at_achieved_pct: coalesced?.e2e_vs_raw_pct ?? null,
        e2e_vs_raw_64_rows_per_job_pct: manyRows?.e2e_vs_raw_pct ?? null,
        ...(RUN_PREDICT
          ? {
              predict_vs_jobs_c256_x: predictVsJobs,
              predict_vs_jobs_c256_x_by_round: byRound(predicted, coalesced).join(" "),
              predict_vs_raw_at_achieved_pct: predicted?.e2e_vs_raw_pct ?? null,
              predict_c256_mean_batch: predicted?.mean_batch ?? null,
              cache_hit_p50_ms: cacheHit?.p50_ms ?? null,
            }
          : {}),
      };
      results.push(summary);
      console.log(summary);
      if (RUN_PREDICT) {
        targets.push(
          checkTarget("predict@256 rows/s vs single-row jobs@256 (x)", model, predictVsJobs, PREDICT_TARGETS.vsJobsAt256X, true),
          checkTarget("predict@256 vs raw onnxruntime at its batch (%)", model, predicted?.e2e_vs_raw_pct, PREDICT_TARGETS.vsRawPct, true),
          checkTarget("cache hit p50, one at a time (ms)", model, cacheHit?.p50_ms, PREDICT_TARGETS.cacheHitP50Ms, false),
        );
      }
    }
    if (RUN_PREDICT) {
      const [lone] = await loneIrisRun(bench);
      if (lone) {
        results.push(lone);
        targets.push(checkTarget("lone predict p50, one at a time (ms)", "iris", lone.p50_ms as number, PREDICT_TARGETS.loneIrisP50Ms, false));
      }
    }
    results.push(...targets);
    console.log("");
    const runRows = results.filter((r) => "mode" in r);
    console.table(runRows.map(({ model, mode, load, provider, rows_s, rows_s_by_round, p50_ms, p95_ms, p99_ms, mean_batch, worst_event_loop_ms, e2e_vs_raw_pct }) =>
      ({ model, mode, load, provider, rows_s, by_round: (rows_s_by_round as number[]).join(" "), p50_ms, p95_ms, p99_ms, mean_batch, worst_event_loop_ms, e2e_vs_raw_pct })));
    if (runRows.some((r) => "api_cpu_ms" in r)) {
      // Where the time goes: CPU milliseconds per row by process (the worker's other threads are onnxruntime's, mostly).
      console.log("CPU per row, ms (from /proc; the client is this load generator, on the same cores):");
      console.table(runRows.map(({ model, mode, load, api_cpu_ms, worker_loop_cpu_ms, worker_threads_cpu_ms, postgres_cpu_ms, redis_cpu_ms, client_cpu_ms }) =>
        ({ model, mode, load, api_cpu_ms, worker_loop_cpu_ms, worker_threads_cpu_ms, postgres_cpu_ms, redis_cpu_ms, client_cpu_ms })));
    }
    const predictRows = runRows.filter((r) => r.mode === "predict");
    if (predictRows.length > 0) {
      // Where a predict request's time goes: the client's mean against the API's own (routing to response,
      // and the part from validated to answered), and per onnxruntime run the batch's wait and the run.
      console.log("Predict, mean ms (client: request sent to answer read; the rest from the API's and the worker's /metrics):");
      console.table(predictRows.map(({ model, load, mean_ms, api_request_mean_ms, api_predict_mean_ms, batch_wait_mean_ms, onnx_run_mean_ms, runs }) =>
        ({ model, load, client_mean_ms: mean_ms, api_request_mean_ms, api_predict_mean_ms, batch_wait_mean_ms, onnx_run_mean_ms, runs_per_round: runs })));
    }
    console.table(results.filter((r) => !("mode" in r) && !("target" in r)));
    if (targets.length > 0) {
      console.log("Predict targets (issue 14), this run:");
      console.table(targets);
    }
    console.log(`written to ${await writeResults("batching", results)}`);
  } finally {
    await pool?.close();
    await bench.close();
  }
}

main().catch((error: unknown) => {
  console.error(`bench failed: ${(error as Error).message}`);
  process.exit(1);
});
