// `npm run bench:providers`: onnxruntime alone on each execution provider, through the worker's own
// code path: the model opens with loadSessionWithFallback in the order given (as a worker's model
// cache does), and every timed run goes buildPackedBatch -> session.run -> splitOutputs on rows
// packed as chunks store them (as runBatch does). For each provider: whether it opened (or why not), rows/s at each batch size
// (whole path and session.run alone) and the largest difference of its outputs from the CPU
// provider's on the same rows. Needs no Postgres or Redis. Models: a weight-heavy 64 -> 4096 ->
// 4096 -> 10 perceptron generated here with random weights ("heavy", 68 MB, never written to disk),
// and the fixtures mlp_wide and digits.
//   npm run bench:providers -- --providers cpu,webgpu,cuda --batches 1,32,256 --seconds 2
// Prints a table and writes bench/results/providers.json.
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import type { ModelSignature, TensorRow, TensorSpec, TensorValue } from "@coalesce/contracts";
import {
  buildBatch,
  buildPackedBatch,
  EXECUTION_PROVIDERS,
  inspectModel,
  loadSessionWithFallback,
  packRows,
  PackedRows,
  probeExecutionProviders,
  splitOutputs,
  type FallbackSession,
  type OrtInferenceSession,
} from "@coalesce/models";
import { buildRandomMlp } from "@coalesce/models/tiny-onnx";
import * as ort from "onnxruntime-node";
import { ROOT } from "../scripts/processes.ts";
import { writeResults } from "./results.ts";

const { values: args } = parseArgs({
  options: {
    providers: { type: "string", default: process.env.EXECUTION_PROVIDERS ?? "cpu,webgpu" },
    batches: { type: "string", default: "1,32,256" },
    seconds: { type: "string", default: "2" },
    models: { type: "string", default: "heavy,mlp_wide,digits" },
  },
});
const PROVIDERS = splitList(args.providers);
const BATCHES = splitList(args.batches).map(Number);
const SECONDS = Number(args.seconds);
const KNOWN: ReadonlySet<string> = new Set(EXECUTION_PROVIDERS);
for (const provider of PROVIDERS) {
  if (!KNOWN.has(provider)) throw new Error(`--providers: unknown provider '${provider}' (known: ${EXECUTION_PROVIDERS.join(", ")})`);
}
if (BATCHES.some((b) => !Number.isInteger(b) || b < 1)) throw new Error(`--batches: expected positive integers, got '${args.batches}'`);
if (!(SECONDS > 0)) throw new Error(`--seconds: expected a positive number, got '${args.seconds}'`);

function splitList(value: string): string[] {
  return value.split(",").map((s) => s.trim()).filter(Boolean);
}

async function loadModel(name: string): Promise<Uint8Array> {
  if (name === "heavy") return buildRandomMlp([64, 4096, 4096, 10]);
  return new Uint8Array(await readFile(path.join(ROOT, "fixtures", `${name}.onnx`)));
}

/** `count` rows of random values in the shape of `inputs` (per-row dimensions must be fixed). */
function randomRows(inputs: readonly TensorSpec[], count: number): TensorRow[] {
  const valueOf = (spec: TensorSpec, dims: readonly (number | string)[]): TensorValue => {
    const [size, ...rest] = dims;
    if (size === undefined) return spec.type === "bool" ? Math.random() < 0.5 : spec.type.startsWith("float") ? Math.random() : Math.floor(Math.random() * 10);
    if (typeof size !== "number") throw new Error(`input '${spec.name}' has a symbolic per-row dimension '${size}'; the benchmark needs fixed ones`);
    return Array.from({ length: size }, () => valueOf(spec, rest));
  };
  return Array.from({ length: count }, () => Object.fromEntries(inputs.map((spec) => [spec.name, valueOf(spec, spec.shape.slice(1))])));
}

/** Every value of the rows as a number, in order: what two providers' outputs are compared by. */
function flatten(rows: readonly TensorRow[]): number[] {
  const out: number[] = [];
  const walk = (value: TensorValue): void => {
    if (Array.isArray(value)) for (const v of value) walk(v);
    else out.push(Number(value));
  };
  for (const row of rows) for (const value of Object.values(row)) walk(value);
  return out;
}

function maxAbsDiff(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) return Number.NaN;
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

type Measurement = {
  model: string;
  provider: string;
  batch: number;
  /** Rows/s through buildPackedBatch, session.run and splitOutputs: what a worker gets at this batch size. */
  rows_s: number;
  /** Rows/s counting session.run alone. */
  run_rows_s: number;
  ms_per_run: number;
  runs: number;
  max_abs_diff_vs_cpu: number;
};

/** Runs `rows` through the worker's path for about SECONDS, after one untimed run (the output returned). */
async function measure(session: OrtInferenceSession, signature: ModelSignature, jsonRows: TensorRow[]) {
  const packed = PackedRows.decode(packRows(jsonRows, signature.inputs), signature.inputs);
  const rows = jsonRows.map((_, index) => ({ rows: packed, index }));
  const runOnce = async () => splitOutputs(await session.run(buildPackedBatch(rows, signature.inputs)), signature.outputs, rows.length);
  const outputs = await runOnce(); // also compiles WebGPU's shaders for this shape
  let runs = 0;
  let runMs = 0;
  const started = performance.now();
  while (performance.now() - started < SECONDS * 1000) {
    const feeds = buildPackedBatch(rows, signature.inputs);
    const before = performance.now();
    const results = await session.run(feeds);
    runMs += performance.now() - before;
    splitOutputs(results, signature.outputs, rows.length);
    runs++;
  }
  const totalMs = performance.now() - started;
  return {
    outputs,
    rows_s: Math.round((runs * rows.length * 1000) / totalMs),
    run_rows_s: Math.round((runs * rows.length * 1000) / runMs),
    ms_per_run: Math.round((runMs / runs) * 1000) / 1000,
    runs,
  };
}

type ModelReport = {
  model: string;
  /** What a worker with EXECUTION_PROVIDERS in this order would run the model on, and what it skipped. */
  fallback: Omit<FallbackSession, "session">;
  /** Providers of the list that could not open the model, each with onnxruntime's reason. */
  unavailable: { provider: string; reason: string }[];
};

async function benchModel(name: string, measurements: Measurement[]): Promise<ModelReport> {
  const bytes = await loadModel(name);
  const signature = await inspectModel(bytes);
  const chain = await loadSessionWithFallback(bytes, PROVIDERS);
  const report: ModelReport = { model: name, fallback: { provider: chain.provider, skipped: chain.skipped }, unavailable: [...chain.skipped] };
  console.log(`${name}: ${PROVIDERS.join(",")} opened on ${chain.provider}${chain.skipped.map((s) => `; skipped ${s.provider}: ${s.reason}`).join("")}`);

  // The providers after the one the fallback chose get their own attempt; CPU is always there as the reference.
  const sessions = new Map<string, OrtInferenceSession>([[chain.provider, chain.session]]);
  const tried = new Set([chain.provider, ...chain.skipped.map((s) => s.provider)]);
  // A probe with CPU behind it names the reason a provider cannot start without throwing.
  for (const provider of [...PROVIDERS.filter((p) => !tried.has(p)), ...(sessions.has("cpu") ? [] : ["cpu"])]) {
    const probe = await probeExecutionProviders([provider, "cpu"]);
    if (probe.provider === provider) {
      sessions.set(provider, (await loadSessionWithFallback(bytes, [provider])).session);
      continue;
    }
    report.unavailable.push(...probe.skipped);
    for (const s of probe.skipped) console.log(`${name}: ${s.provider} unavailable: ${s.reason}`);
  }
  const reference = sessions.get("cpu");
  if (!reference) throw new Error("the CPU provider could not open the model, so there is nothing to compare with");

  try {
    for (const batch of BATCHES) {
      const rows = randomRows(signature.inputs, batch);
      const expected = flatten(splitOutputs(await reference.run(buildBatch(rows, signature.inputs)), signature.outputs, batch));
      for (const provider of PROVIDERS) {
        const session = sessions.get(provider);
        if (!session) continue;
        const { outputs, ...timing } = await measure(session, signature, rows);
        const row = { model: name, provider, batch, ...timing, max_abs_diff_vs_cpu: maxAbsDiff(flatten(outputs), expected) };
        measurements.push(row);
        console.log(
          `${name} ${provider} batch ${batch}: ${row.rows_s.toLocaleString("en")} rows/s (session.run alone ${row.run_rows_s.toLocaleString("en")}), ${row.ms_per_run} ms/run, max |diff| vs cpu ${row.max_abs_diff_vs_cpu.toExponential(1)}`,
        );
      }
    }
  } finally {
    await Promise.all([...sessions.values()].map((s) => s.release()));
  }
  return report;
}

async function main(): Promise<void> {
  const supported = ort.listSupportedBackends();
  console.log(`onnxruntime-node ${ort.env.versions.node}; bundled providers: ${supported.filter((b) => b.bundled).map((b) => b.name).join(", ")}`);
  const measurements: Measurement[] = [];
  const models: ModelReport[] = [];
  for (const name of splitList(args.models)) models.push(await benchModel(name, measurements));

  console.log("");
  console.table(measurements);
  for (const { model, fallback, unavailable } of models) {
    console.log(`${model}: the worker's fallback over ${PROVIDERS.join(",")} ends on ${fallback.provider}`);
    for (const { provider, reason } of unavailable) console.log(`  ${provider} unavailable: ${reason}`);
  }
  const file = await writeResults("providers", {
    machine: { platform: `${os.platform()} ${os.arch()}`, cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version },
    onnxruntime: ort.env.versions.node,
    supported,
    providers: PROVIDERS,
    seconds: SECONDS,
    models,
    measurements,
  });
  console.log(`written to ${file}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
