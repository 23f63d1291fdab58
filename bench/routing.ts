// `npm run bench:routing`: what an alias costs a request, side by side with a pinned version in one
// run. Through the real API and one real worker, iris registered twice (fixtures/iris.onnx, and the
// same file with a metadata entry appended: other bytes, so another version, the same answers):
//   1. single-row JSON jobs (POST /v1/jobs), CONCURRENCY in flight, to `iris@1` (pinned),
//      `iris@production` (an alias of one route) and `iris@canary` (90/10 over versions 1 and 2):
//      the client's accept latency (request sent to 202 read) and submissions/s;
//   2. single-row predict requests (POST /v1/models/{ref}/predict, `Cache-Control: no-store`, so
//      the model runs every time), the same three references: latency and requests/s;
//   3. the same predict load on `iris@production` and on `iris@shadowed` (version 1 with
//      `shadow: {version: 2, sample: 1}`): latency, requests/s and the rows/s the worker scores,
//      from the load's start until its last shadow row ran (the shadow's rows run after the answer).
// Each round runs every load once, in an order rotated from round to round, so a slow spell of
// this shared machine hits every case alike; a round's jobs are scored (untimed) before the next
// load starts. Prints the tables with ratios to the pinned case (and to no shadow), writes
// bench/results/routing.json. `--quick` is a shorter run; `--rounds`, `--requests` (per case and
// round) and `--concurrency` override.
import { readFile } from "node:fs/promises";
import { availableParallelism, loadavg } from "node:os";
import path from "node:path";
import { PREDICT_CACHE_HEADER } from "@coalesce/contracts";
import { Pool } from "undici";
import { freePort, ROOT, startProcess, stopProcess, WORKER_MAIN } from "../scripts/processes.ts";
import { cpuPerJob, snapshotCpu, type CpuSnapshot } from "./cpu.ts";
import { openBench, parseRoundArgs, registerModel, type Bench } from "./harness.ts";
import { scrape, warmPredict } from "./predict.ts";
import { writeResults } from "./results.ts";
import { median, percentile, round2 } from "./stats.ts";

const { rounds: ROUNDS, requests: REQUESTS, concurrency: CONCURRENCY } = parseRoundArgs();
const WARMUP_REQUESTS = 200;

const MODEL = "iris";
const PINNED = `${MODEL}@1`;
const ROUTING_CASES = [
  { name: "pinned", model: PINNED },
  { name: "alias, one route", model: `${MODEL}@production` },
  { name: "alias, 90/10 split", model: `${MODEL}@canary` },
];
const SHADOW_SAMPLE = 1;
const SHADOW_CASES = [
  { name: "alias, no shadow", model: `${MODEL}@production`, shadowSample: 0 },
  { name: "alias + shadow", model: `${MODEL}@shadowed`, shadowSample: SHADOW_SAMPLE },
];

/**
 * iris.onnx with a metadata_props entry (ModelProto field 14) appended: protobuf reads fields in
 * any order, so onnxruntime loads the same graph, and the upload is a version of its own (a file
 * the store already has would be that version again).
 */
function withMetadata(model: Uint8Array, key: string, value: string): Uint8Array {
  const utf8 = new TextEncoder();
  const field = (tag: number, bytes: Uint8Array) => {
    // One-byte lengths keep this free of a varint writer; the entry is a few bytes.
    if (bytes.length > 127) throw new Error("metadata entry too long");
    return Uint8Array.from([tag, bytes.length, ...bytes]);
  };
  const entry = Uint8Array.from([...field(0x0a, utf8.encode(key)), ...field(0x12, utf8.encode(value))]);
  const extra = field((14 << 3) | 2, entry);
  const out = new Uint8Array(model.length + extra.length);
  out.set(model);
  out.set(extra, model.length);
  return out;
}

async function putAlias(bench: Bench, alias: string, body: unknown): Promise<void> {
  const response = await fetch(`${bench.baseUrl}/v1/models/${MODEL}/aliases/${alias}`, {
    method: "PUT",
    headers: { ...bench.headers, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`alias ${alias}: ${response.status} ${await response.text()}`);
}

/** One load as the client saw it: each request's latency (also by the version that answered), the wall time, the job ids. */
type Sent = { latencies: number[]; seconds: number; byVersion: Record<string, number[]>; ids: string[] };

type Load = { kind: "jobs" | "predict"; model: string; bodies: string[]; count: number };

/**
 * Sends a load, CONCURRENCY in flight, bodies made before the clock starts. Every answer must be a
 * 202 (jobs) or a 200 whose row was scored and not taken from the cache (predict): a case that
 * quietly failed would look fast.
 */
async function send(http: Pool, bench: Bench, load: Load): Promise<Sent> {
  const headers: Record<string, string> = { ...bench.headers, "content-type": "application/json" };
  if (load.kind === "predict") headers["cache-control"] = "no-store";
  const requestPath = load.kind === "jobs" ? "/v1/jobs" : `/v1/models/${load.model}/predict`;
  const expected = load.kind === "jobs" ? 202 : 200;
  const sent: Sent = { latencies: [], seconds: 0, byVersion: {}, ids: [] };
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, load.count) }, async () => {
      while (next < load.count) {
        const body = load.bodies[next++ % load.bodies.length] as string;
        const at = performance.now();
        const response = await http.request({ path: requestPath, method: "POST", headers, body });
        const text = await response.body.text();
        const latency = performance.now() - at;
        sent.latencies.push(latency);
        if (response.statusCode !== expected) throw new Error(`${load.kind} ${load.model}: ${response.statusCode} ${text}`);
        const answer = JSON.parse(text) as { id?: string; model: { version: number }; outputs?: { error?: unknown }[] };
        (sent.byVersion[answer.model.version] ??= []).push(latency);
        if (load.kind === "jobs") sent.ids.push(answer.id as string);
        else {
          if (response.headers[PREDICT_CACHE_HEADER.toLowerCase()] !== "miss") throw new Error(`predict ${load.model}: answered from the cache despite no-store`);
          if (answer.outputs?.some((row) => row.error !== undefined)) throw new Error(`predict ${load.model}: a row failed: ${text}`);
        }
      }
    }),
  );
  sent.seconds = (performance.now() - started) / 1000;
  return sent;
}

/** Waits until every job of a load has ended, so the next load starts on a worker with nothing queued. */
async function waitForJobs(bench: Bench, ids: string[], timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await bench.db.query<{ open: string; failed: string }>(
      `SELECT count(*) FILTER (WHERE status NOT IN ('succeeded', 'failed')) AS open, count(*) FILTER (WHERE status = 'failed') AS failed
         FROM jobs WHERE id = ANY($1)`,
      [ids],
    );
    if (Number(rows[0]?.failed) > 0) throw new Error(`${rows[0]?.failed} jobs failed`);
    if (Number(rows[0]?.open) === 0) return;
    if (Date.now() > deadline) throw new Error(`${rows[0]?.open} jobs still open after ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The sum of a metric's series (a counter, or a histogram's `_sum`) whose labels include every one of `labels`. */
function sumSeries(metricsText: string, name: string, labels: Record<string, string>): number {
  let total = 0;
  const line = new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, "gm");
  for (const [, labelText = "", value] of metricsText.matchAll(line)) {
    const series = Object.fromEntries([...labelText.matchAll(/(\w+)="([^"]*)"/g)].map(([, key, v]) => [key, v]));
    if (Object.entries(labels).every(([key, v]) => series[key] === v)) total += Number(value);
  }
  return total;
}

/** Rows the worker has scored for the model (every version and lane: a shadow's rows run in the batch lane), and shadow rows it skipped. */
async function workerRows(metricsPort: number): Promise<{ scored: number; skipped: number }> {
  const text = await scrape(metricsPort);
  return {
    scored: sumSeries(text, "coalesce_batch_rows_sum", { model: MODEL }),
    skipped: sumSeries(text, "coalesce_shadow_skipped_rows_total", { model: MODEL }),
  };
}

/**
 * Waits until the worker has scored (or skipped) `rows` more rows than `before`; returns when, or
 * null past the timeout. Polled every 20 ms, a few percent of a round's load.
 */
async function waitForRows(metricsPort: number, before: { scored: number; skipped: number }, rows: number, timeoutMs = 30_000): Promise<number | null> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const now = await workerRows(metricsPort);
    if (now.scored - before.scored + (now.skipped - before.skipped) >= rows) return performance.now();
    if (performance.now() > deadline) return null;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

type Pids = { api: number | undefined; worker: number | undefined };

/** One case's rounds: the client's records, CPU per request, and (shadow loads) the worker's rows/s. */
type Entry = { sent: Sent[]; cpu: Record<string, number>[]; workerRowsS: number[]; modelRowsPerRequest: number[]; undrained: number };
const newEntry = (): Entry => ({ sent: [], cpu: [], workerRowsS: [], modelRowsPerRequest: [], undrained: 0 });



const round3 = (value: number) => Math.round(value * 1000) / 1000;

type Stats = { p50_ms: number; p95_ms: number; mean_ms: number; per_s: number; per_s_by_round: number[]; p50_by_round: number[]; versions: string; p50_by_version: string };

function statsOf(entry: Entry): Stats {
  const latencies = entry.sent.flatMap((s) => s.latencies).sort((a, b) => a - b);
  const byVersion: Record<string, number[]> = {};
  for (const s of entry.sent) for (const [version, ms] of Object.entries(s.byVersion)) (byVersion[version] ??= []).push(...ms);
  const total = latencies.length;
  return {
    p50_ms: round3(percentile(latencies, 50)),
    p95_ms: round3(percentile(latencies, 95)),
    mean_ms: round3(latencies.reduce((sum, l) => sum + l, 0) / latencies.length),
    per_s: Math.round(median(entry.sent.map((s) => s.latencies.length / s.seconds))),
    per_s_by_round: entry.sent.map((s) => Math.round(s.latencies.length / s.seconds)),
    p50_by_round: entry.sent.map((s) => round3(percentile([...s.latencies].sort((a, b) => a - b), 50))),
    // The split as the answers reported it: a 90/10 alias must come out near 90/10.
    versions: Object.entries(byVersion).map(([version, ms]) => `v${version} ${Math.round((100 * ms.length) / total)}%`).join(" "),
    // A split's latency by the version that answered: where a canary's cost lies.
    p50_by_version: Object.entries(byVersion).map(([version, ms]) => `v${version} ${percentile(ms.sort((a, b) => a - b), 50).toFixed(2)}`).join(" "),
  };
}

/** CPU ms per request of the parts that matter here, averaged over the rounds. */
function cpuOf(entry: Entry, parts: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of parts) {
    const values = entry.cpu.map((c) => c[part]).filter((v): v is number => v !== undefined);
    if (values.length > 0) out[part] = round2(values.reduce((sum, v) => sum + v, 0) / values.length);
  }
  return out;
}

const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
/** Each round's own ratio: both sides of a round ran minutes apart at most, usually seconds. */
const ratiosByRound = (a: number[], b: number[]) => a.map((value, i) => (value / (b[i] ?? Number.NaN)).toFixed(2)).join(" ");

function compareRouting(kind: string, runs: Map<string, Entry>): Record<string, unknown>[] {
  const pinned = statsOf(runs.get(`${kind}|pinned`) ?? newEntry());
  return ROUTING_CASES.map(({ name, model }) => {
    const entry = runs.get(`${kind}|${name}`) ?? newEntry();
    const stats = statsOf(entry);
    return {
      load: kind === "jobs" ? `single-row jobs, c=${CONCURRENCY}` : `predict, c=${CONCURRENCY}`,
      case: name,
      model,
      p50_ms: stats.p50_ms,
      p95_ms: stats.p95_ms,
      mean_ms: stats.mean_ms,
      per_s: stats.per_s,
      per_s_by_round: stats.per_s_by_round.join(" "),
      p50_vs_pinned: ratio(stats.p50_ms, pinned.p50_ms),
      p95_vs_pinned: ratio(stats.p95_ms, pinned.p95_ms),
      per_s_vs_pinned: ratio(stats.per_s, pinned.per_s),
      p50_vs_pinned_by_round: ratiosByRound(stats.p50_by_round, pinned.p50_by_round),
      // The median of the rounds' own ratios: a slow spell that hit one round moves it least.
      p50_vs_pinned_round_median: `${median(stats.p50_by_round.map((p50, i) => p50 / (pinned.p50_by_round[i] ?? Number.NaN))).toFixed(2)}x`,
      // The routing's own cost per request: what the alias adds to the pinned case's latency.
      overhead_p50_us: Math.round((stats.p50_ms - pinned.p50_ms) * 1000),
      overhead_mean_us: Math.round((stats.mean_ms - pinned.mean_ms) * 1000),
      ...cpuOf(entry, ["api_cpu_ms", "worker_loop_cpu_ms", "worker_threads_cpu_ms", "postgres_cpu_ms"]),
      versions: stats.versions,
      p50_ms_by_version: stats.p50_by_version,
    };
  });
}

function compareShadow(runs: Map<string, Entry>): Record<string, unknown>[] {
  const [plain, shadowed] = SHADOW_CASES.map(({ name }) => runs.get(`shadow|${name}`) ?? newEntry()) as [Entry, Entry];
  const base = statsOf(plain);
  const baseRowsS = median(plain.workerRowsS);
  const baseCpu = cpuOf(plain, ["worker_loop_cpu_ms", "worker_threads_cpu_ms"]);
  return SHADOW_CASES.map(({ name, model }, i) => {
    const entry = i === 0 ? plain : shadowed;
    const stats = statsOf(entry);
    const rowsS = median(entry.workerRowsS);
    const cpu = cpuOf(entry, ["api_cpu_ms", "worker_loop_cpu_ms", "worker_threads_cpu_ms"]);
    const workerCpu = (cpu.worker_loop_cpu_ms ?? 0) + (cpu.worker_threads_cpu_ms ?? 0);
    return {
      load: `predict, c=${CONCURRENCY}`,
      case: name,
      model,
      p50_ms: stats.p50_ms,
      p95_ms: stats.p95_ms,
      requests_s: stats.per_s,
      // Rows onnxruntime ran per request answered: 1 without a shadow, 1 + sample with one.
      model_rows_per_request: round2(median(entry.modelRowsPerRequest)),
      worker_rows_s: Math.round(rowsS),
      worker_rows_s_by_round: entry.workerRowsS.map(Math.round).join(" "),
      p50_vs_no_shadow: ratio(stats.p50_ms, base.p50_ms),
      p95_vs_no_shadow: ratio(stats.p95_ms, base.p95_ms),
      requests_s_vs_no_shadow: ratio(stats.per_s, base.per_s),
      worker_rows_s_vs_no_shadow: ratio(rowsS, baseRowsS),
      ...cpu,
      worker_cpu_ms_per_request_vs_no_shadow: ratio(workerCpu, (baseCpu.worker_loop_cpu_ms ?? 0) + (baseCpu.worker_threads_cpu_ms ?? 0)),
      undrained_rounds: entry.undrained,
    };
  });
}

/** The order of a round's cases: rotated each round, so no case always runs first (or after the heaviest). */
function rotated<T>(items: T[], round: number): T[] {
  const k = round % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

async function main(): Promise<void> {
  const cores = availableParallelism();
  const [loadBefore = 0] = loadavg();
  console.log(`routing bench: ${ROUNDS} rounds x ${REQUESTS} requests per case, ${CONCURRENCY} in flight; load average ${loadBefore.toFixed(2)} on ${cores} cores`);
  if (loadBefore > cores) console.log("the machine is busy (load average above its cores): expect noisy numbers, or run again when it is quiet");

  const bench = await openBench();
  // Enough connections for the load; undici's request API costs the load generator the least CPU of Node's clients.
  const http = new Pool(bench.baseUrl, { connections: Math.max(CONCURRENCY, 16) });
  const metricsPort = await freePort();
  // LOG_LEVEL warn (bench.env): the benches measure the service, not its logging.
  const worker = startProcess("worker", WORKER_MAIN, { ...bench.env, METRICS_PORT: String(metricsPort) });
  const results: Record<string, unknown>[] = [];
  try {
    const iris = new Uint8Array(await readFile(path.join(ROOT, "fixtures/iris.onnx")));
    await registerModel(bench, MODEL, iris);
    await registerModel(bench, MODEL, withMetadata(iris, "coalesce.bench", "copy"));
    await putAlias(bench, "production", { version: 1 });
    await putAlias(bench, "canary", { routes: [{ version: 1, weight: 90 }, { version: 2, weight: 10 }] });
    await putAlias(bench, "shadowed", { version: 1, shadow: { version: 2, sample: SHADOW_SAMPLE } });

    const csv = (await readFile(path.join(ROOT, "fixtures/iris.csv"), "utf8")).trim().split("\n").slice(1);
    // row_id, the four features, target.
    const rows = csv.map((line) => ({ features: line.split(",").slice(1, 5).map(Number) }));
    const jobBodies = (model: string) => rows.map((row) => JSON.stringify({ model, inputs: [row] }));
    const predictBodies = rows.map((row) => JSON.stringify({ inputs: [row] }));

    const plan = [
      ...ROUTING_CASES.map(({ name, model }) => ({ key: `jobs|${name}`, load: { kind: "jobs" as const, model, bodies: jobBodies(model), count: REQUESTS }, shadowSample: 0 })),
      ...ROUTING_CASES.map(({ name, model }) => ({ key: `predict|${name}`, load: { kind: "predict" as const, model, bodies: predictBodies, count: REQUESTS }, shadowSample: 0 })),
      ...SHADOW_CASES.map(({ name, model, shadowSample }) => ({ key: `shadow|${name}`, load: { kind: "predict" as const, model, bodies: predictBodies, count: REQUESTS }, shadowSample })),
    ];
    const pids: Pids = { api: bench.api.child.pid, worker: worker.child.pid };

    // Warm up every case: the worker's heartbeat, both versions loaded, the JIT, each alias looked up once.
    await warmPredict(http, bench, PINNED, predictBodies[0] as string);
    for (const { load, shadowSample } of plan) {
      const before = await workerRows(metricsPort);
      const sent = await send(http, bench, { ...load, count: WARMUP_REQUESTS });
      if (load.kind === "jobs") await waitForJobs(bench, sent.ids);
      else await waitForRows(metricsPort, before, WARMUP_REQUESTS * (1 + shadowSample));
    }

    const runs = new Map<string, Entry>();
    for (let round = 0; round < ROUNDS; round++) {
      // Jobs, then predict, then the shadow pair: each group's cases in a rotated order.
      const groups = ["jobs", "predict", "shadow"].map((group) => rotated(plan.filter((p) => p.key.startsWith(`${group}|`)), round));
      for (const { key, load, shadowSample } of groups.flat()) {
        const entry = runs.get(key) ?? newEntry();
        runs.set(key, entry);
        const rowsBefore = await workerRows(metricsPort);
        const cpuBefore: CpuSnapshot | null = await snapshotCpu(pids);
        const started = performance.now();
        const sent = await send(http, bench, load);
        let line = `round ${round + 1}/${ROUNDS} ${key}: ${Math.round(sent.latencies.length / sent.seconds)}/s`;
        if (key.startsWith("shadow|")) {
          // Until the last shadow row ran: the shadow's work is part of what the worker sustains.
          const drained = await waitForRows(metricsPort, rowsBefore, load.count * (1 + shadowSample));
          const rowsAfter = await workerRows(metricsPort);
          entry.cpu.push(cpuPerJob(cpuBefore, await snapshotCpu(pids), load.count));
          const scored = rowsAfter.scored - rowsBefore.scored;
          if (drained === null) entry.undrained++;
          entry.workerRowsS.push(scored / (((drained ?? performance.now()) - started) / 1000));
          entry.modelRowsPerRequest.push(scored / load.count);
          line += `, worker ${Math.round(entry.workerRowsS.at(-1) ?? 0)} rows/s${drained === null ? " (not drained in 30 s)" : ""}`;
        } else {
          entry.cpu.push(cpuPerJob(cpuBefore, await snapshotCpu(pids), load.count));
          // The jobs' scoring is not timed; it only must not spill into the next load.
          if (load.kind === "jobs") await waitForJobs(bench, sent.ids);
          else await waitForRows(metricsPort, rowsBefore, load.count);
        }
        entry.sent.push(sent);
        console.log(line);
      }
    }

    const [loadAfter = 0] = loadavg();
    const jobs = compareRouting("jobs", runs);
    const predicts = compareRouting("predict", runs);
    const shadows = compareShadow(runs);
    results.push(...jobs, ...predicts, ...shadows);
    console.log("");
    // For jobs the worker's CPU is what it spent scoring earlier jobs while these were accepted.
    console.log(`Routing (client-side latency, request sent to answer read; per_s is the median over ${ROUNDS} rounds; CPU is ms per request, from /proc):`);
    console.table([...jobs, ...predicts].map(({ load, case: name, p50_ms, p95_ms, mean_ms, per_s, p50_vs_pinned, p95_vs_pinned, per_s_vs_pinned, overhead_p50_us, overhead_mean_us, api_cpu_ms, worker_loop_cpu_ms, versions }) =>
      ({ load, case: name, p50_ms, p95_ms, mean_ms, per_s, p50_vs_pinned, p95_vs_pinned, per_s_vs_pinned, overhead_p50_us, overhead_mean_us, api_cpu_ms, worker_loop_cpu_ms, versions })));
    console.log("Per round, p50 / pinned p50 and requests/s; p50 by the version that answered:");
    console.table([...jobs, ...predicts].map(({ load, case: name, p50_vs_pinned_by_round, p50_vs_pinned_round_median, per_s_by_round, p50_ms_by_version }) =>
      ({ load, case: name, p50_vs_pinned_by_round, p50_vs_pinned_round_median, per_s_by_round, p50_ms_by_version })));
    console.log(`Shadow (sample ${SHADOW_SAMPLE}): worker rows/s from the load's start until its last shadow row ran; worker CPU ms per request answered:`);
    console.table(shadows.map(({ case: name, p50_ms, p95_ms, requests_s, model_rows_per_request, worker_rows_s, worker_rows_s_by_round, p50_vs_no_shadow, p95_vs_no_shadow, requests_s_vs_no_shadow, worker_rows_s_vs_no_shadow, worker_loop_cpu_ms, worker_threads_cpu_ms, worker_cpu_ms_per_request_vs_no_shadow }) =>
      ({ case: name, p50_ms, p95_ms, requests_s, model_rows_per_request, worker_rows_s, worker_rows_s_by_round, p50_vs_no_shadow, p95_vs_no_shadow, requests_s_vs_no_shadow, worker_rows_s_vs_no_shadow, worker_loop_cpu_ms, worker_threads_cpu_ms, worker_cpu_ms_per_request_vs_no_shadow })));
    for (const row of [...jobs, ...predicts].filter((r) => r.case !== "pinned")) {
      console.log(`${row.load}: ${row.case} / pinned p50 ${row.p50_vs_pinned} (median of the rounds' ${row.p50_vs_pinned_round_median}), p95 ${row.p95_vs_pinned}, ${row.per_s_vs_pinned} the rate; overhead ${row.overhead_p50_us} us at p50 (${row.overhead_mean_us} us mean)`);
    }
    const [, shadowed] = shadows;
    if (shadowed) console.log(`shadow / no shadow: p50 ${shadowed.p50_vs_no_shadow}, p95 ${shadowed.p95_vs_no_shadow}, requests/s ${shadowed.requests_s_vs_no_shadow}, worker rows/s ${shadowed.worker_rows_s_vs_no_shadow}, worker CPU per request ${shadowed.worker_cpu_ms_per_request_vs_no_shadow}`);
    console.log(`load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after, on ${cores} cores`);
    results.push({ rounds: ROUNDS, requests_per_case_and_round: REQUESTS, concurrency: CONCURRENCY, cores, load_average_before: round2(loadBefore), load_average_after: round2(loadAfter) });
    console.log(`written to ${await writeResults("routing", results)}`);
  } finally {
    await http.close();
    await stopProcess(worker);
    await bench.close();
  }
}

main().catch((error: unknown) => {
  console.error(`bench failed: ${(error as Error).message}`);
  process.exit(1);
});
