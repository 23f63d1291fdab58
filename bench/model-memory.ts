// `npm run bench:models`: what many models cost a worker. Registers `--models` (50) small distinct
// models (4 -> 8 -> 3 perceptrons, about 1 KB each) through a real API, then for each setting
// starts a real worker process, scores a one-row job on each model in turn and reads the worker's
// resident memory and thread count (/proc/<pid>/status, Linux) when it started and after the
// last model, with MAX_LOADED_MODELS=0 (no limit: every version stays loaded) and then with
// MAX_LOADED_MODELS=8, side by side. `--settings` picks others, e.g. `0,8,8:MALLOC_ARENA_MAX=2`
// (a setting is MAX_LOADED_MODELS, then any VAR=VALUE for the worker, colon-separated).
// Prints a table and writes bench/results/model-memory.json.
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import type { Job } from "@coalesce/contracts";
import { buildRandomMlp } from "@coalesce/models/tiny-onnx";
import { startProcess, stopProcess, WORKER_MAIN, type ServiceProcess } from "../scripts/processes.ts";
import { openBench, registerModel, type Bench } from "./harness.ts";
import { writeResults } from "./results.ts";

const { values: args } = parseArgs({
  options: {
    models: { type: "string", default: "50" },
    settings: { type: "string", default: "0,8" },
  },
});
const MODELS = Number(args.models);
if (!Number.isInteger(MODELS) || MODELS < 1) throw new Error(`--models: expected a positive integer, got '${args.models}'`);
const SETTINGS = args.settings.split(",").map((setting) => {
  const [limit = "", ...vars] = setting.split(":");
  if (!/^\d+$/.test(limit)) throw new Error(`--settings: expected MAX_LOADED_MODELS[:VAR=VALUE...], got '${setting}'`);
  const env: Record<string, string> = { MAX_LOADED_MODELS: limit };
  for (const pair of vars) {
    const [name, value] = pair.split("=", 2);
    if (!name || value === undefined) throw new Error(`--settings: expected VAR=VALUE, got '${pair}'`);
    env[name] = value;
  }
  return { label: setting, env };
});

type Sample = { rssMb: number; threads: number };
type Run = {
  setting: string;
  start: Sample;
  after: Sample;
  loaded: number;
  unloads: number;
  loadSecondsMean: number;
  jobMsMean: number;
};

/** VmRSS and Threads of a live process, from /proc (Linux). */
async function sample(pid: number): Promise<Sample> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? Number.NaN);
  return { rssMb: Math.round(field("VmRSS") / 102.4) / 10, threads: field("Threads") };
}

/** A metric's total over its series, from a worker's /metrics text. */
function metricOf(text: string, name: string): number {
  let total = 0;
  for (const match of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))) total += Number(match[1]);
  return total;
}

async function startWorker(bench: Bench, env: Record<string, string>): Promise<{ worker: ServiceProcess; metricsPort: number }> {
  // Defaults otherwise (one instance, onnxruntime's own thread count), as a worker runs out of the box.
  const worker = startProcess("worker", WORKER_MAIN, { ...bench.env, LOG_LEVEL: "info", ...env }, "pipe");
  worker.child.stderr?.resume();
  let output = "";
  const metricsPort = await new Promise<number>((resolve, reject) => {
    worker.child.once("exit", (code) => reject(new Error(`the worker exited with code ${code} before it was ready:\n${output.slice(-2000)}`)));
    worker.child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const match = /"metricsPort":(\d+)/.exec(output);
      if (match) resolve(Number(match[1]));
      if (output.length > 1e6) output = output.slice(-1e4);
    });
  });
  // Ready once it says so (its queue consumer and heartbeat run after /metrics is served).
  while (!output.includes('"worker ready"')) await new Promise((resolve) => setTimeout(resolve, 50));
  worker.child.stdout?.removeAllListeners("data");
  worker.child.stdout?.resume();
  return { worker, metricsPort };
}

async function scoreOneRow(bench: Bench, model: string): Promise<void> {
  const response = await fetch(`${bench.baseUrl}/v1/jobs`, {
    method: "POST",
    headers: { ...bench.headers, "Content-Type": "application/json" },
    body: JSON.stringify({ model, inputs: [{ x: [1, 2, 3, 4] }] }),
  });
  if (response.status !== 202) throw new Error(`submitting to ${model}: ${response.status} ${await response.text()}`);
  const { id } = (await response.json()) as Job;
  for (;;) {
    const job = (await (await fetch(`${bench.baseUrl}/v1/jobs/${id}?wait=30`, { headers: bench.headers })).json()) as Job;
    if (job.status === "succeeded") return;
    if (job.status !== "queued" && job.status !== "running") throw new Error(`job on ${model} ended ${job.status}: ${JSON.stringify(job.error)}`);
  }
}

async function measure(bench: Bench, setting: (typeof SETTINGS)[number], names: string[]): Promise<Run> {
  const { worker, metricsPort } = await startWorker(bench, setting.env);
  try {
    const pid = worker.child.pid!;
    const start = await sample(pid);
    const began = performance.now();
    for (const name of names) await scoreOneRow(bench, name);
    const jobMsMean = (performance.now() - began) / names.length;
    // Released sessions end their threads asynchronously: give them a moment to be gone.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const after = await sample(pid);
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    return {
      setting: setting.label,
      start,
      after,
      loaded: metricOf(text, "coalesce_models_loaded"),
      unloads: metricOf(text, "coalesce_model_unloads_total"),
      loadSecondsMean: metricOf(text, "coalesce_model_load_seconds_sum") / Math.max(1, metricOf(text, "coalesce_model_load_seconds_count")),
      jobMsMean,
    };
  } finally {
    await stopProcess(worker);
  }
}

const bench = await openBench();
try {
  const names = Array.from({ length: MODELS }, (_, i) => `mem${i}`);
  for (const [i, name] of names.entries()) await registerModel(bench, name, buildRandomMlp([4, 8, 3], 1000 + i));
  const runs: Run[] = [];
  for (const setting of SETTINGS) {
    const run = await measure(bench, setting, names);
    runs.push(run);
    console.log(`MAX_LOADED_MODELS=${setting.label}: done`);
  }
  const rows: [string, (run: Run) => string][] = [
    ["RSS at start (MB)", (run) => run.start.rssMb.toFixed(1)],
    [`RSS after ${MODELS} models (MB)`, (run) => run.after.rssMb.toFixed(1)],
    ["RSS per model (MB)", (run) => ((run.after.rssMb - run.start.rssMb) / MODELS).toFixed(2)],
    ["threads at start", (run) => String(run.start.threads)],
    [`threads after ${MODELS} models`, (run) => String(run.after.threads)],
    ["models loaded after", (run) => String(run.loaded)],
    ["unloads", (run) => String(run.unloads)],
    ["mean model load (ms)", (run) => (run.loadSecondsMean * 1000).toFixed(1)],
    ["mean one-row job (ms)", (run) => run.jobMsMean.toFixed(1)],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  console.log(`\n${MODELS} models, a one-row job on each in turn, one worker per setting:`);
  console.log(`${"MAX_LOADED_MODELS".padEnd(width)}  ${runs.map((run) => run.setting.padStart(22)).join("")}`);
  for (const [label, value] of rows) console.log(`${label.padEnd(width)}  ${runs.map((run) => value(run).padStart(22)).join("")}`);
  console.log(`\nwrote ${await writeResults("model-memory", { models: MODELS, runs })}`);
} finally {
  await bench.close();
}
