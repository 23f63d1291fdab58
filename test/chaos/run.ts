// `npm run chaos [-- --rows N] [--only a,b] [--quick]`: the fault suite. Starts private Postgres and
// Redis, the real API and worker processes, runs each fault against a job of iris rows, checks that
// every row was scored exactly once with the reference prediction, and prints a table. Exit code 1
// when any fault broke its invariant. See docs/chaos.md.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../../scripts/processes.ts";
import { startCluster, tail, type Cluster } from "./cluster.ts";
import { createClient, type ApiClient } from "./client.ts";
import { FAULTS, type Fault, type FaultOptions, type FaultResult } from "./faults.ts";
import { buildWorkload } from "./iris-job.ts";
import { until } from "./wait.ts";

/** --quick: every fault, on fewer rows with shorter outages, for CI (about 5 minutes when the faults pass). */
const QUICK = { rows: 20_000, endTimeoutMs: 90_000 };
const FULL = { rows: 100_000, endTimeoutMs: 180_000 };

type Options = { rows: number; only: string[] | null; quick: boolean; keepLogs: boolean };

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      rows: { type: "string" },
      only: { type: "string" },
      quick: { type: "boolean", default: false },
      "keep-logs": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(`usage: npm run chaos -- [--rows N] [--only ${FAULTS.map((f) => f.name).join(",")}] [--quick] [--keep-logs]`);
    process.exit(0);
  }
  const quick = values.quick ?? false;
  const rows = values.rows === undefined ? (quick ? QUICK.rows : FULL.rows) : Number(values.rows);
  if (!Number.isInteger(rows) || rows < 1 || rows > 1_000_000) throw new Error(`--rows: expected a whole number from 1 to 1000000, got ${values.rows}`);
  const only = values.only ? values.only.split(",").map((name) => name.trim()).filter(Boolean) : null;
  const unknown = (only ?? []).filter((name) => !FAULTS.some((fault) => fault.name === name));
  if (unknown.length > 0) throw new Error(`--only: no fault named ${unknown.join(", ")}; the faults are ${FAULTS.map((f) => f.name).join(", ")}`);
  return { rows, only, quick, keepLogs: values["keep-logs"] ?? false };
}

function selectFaults(options: Options): Fault[] {
  if (options.only) return FAULTS.filter((fault) => options.only?.includes(fault.name));
  return FAULTS;
}

type Outcome = { fault: Fault; result: FaultResult; seconds: number; pass: boolean };

function log(message: string): void {
  console.log(`[chaos ${new Date().toISOString().slice(11, 19)}] ${message}`);
}

/** Each fault starts from the same place: no worker running, the API answering /readyz. */
async function resetBetweenFaults(cluster: Cluster): Promise<void> {
  await cluster.stopWorkers();
  const ready = await until("the API to answer /readyz with 200 between faults", 30_000, async () => {
    const response = await fetch(`${cluster.baseUrl}/readyz`, { signal: AbortSignal.timeout(5_000) });
    return response.status === 200;
  }).catch(() => false);
  if (!ready) {
    // A fault left the API unable to serve: that fault has already failed for it; the next one gets a fresh API.
    log("the API is not ready after the last fault: restarting it");
    await cluster.signal(cluster.api(), "SIGKILL");
    await cluster.startApi();
  }
}

async function registerModel(client: ApiClient): Promise<void> {
  await client.json("POST", "/v1/models/iris/versions", {
    body: await readFile(path.join(ROOT, "fixtures/iris.onnx")),
    headers: { "Content-Type": "application/octet-stream" },
  });
}

async function runFault(fault: Fault, cluster: Cluster, client: ApiClient, context: Omit<Parameters<Fault["run"]>[0], "cluster" | "client" | "log">): Promise<Outcome> {
  log(`${fault.name}: ${fault.title}`);
  const started = performance.now();
  let result: FaultResult;
  try {
    result = await fault.run({ cluster, client, ...context, log });
  } catch (error) {
    // The suite itself could not go on with this fault (a wait gave up, a process died): that is a failure to report.
    result = { lost: null, duplicated: null, wrong: null, recoverSeconds: null, apiDuring: "-", problems: [(error as Error).message], notes: [] };
  }
  const seconds = (performance.now() - started) / 1000;
  const pass = result.problems.length === 0;
  log(`${fault.name}: ${pass ? "PASS" : "FAIL"} in ${seconds.toFixed(0)} s${pass ? "" : `: ${result.problems.join("; ")}`}`);
  return { fault, result, seconds, pass };
}

function printTable(outcomes: Outcome[]): void {
  const show = (n: number | null) => (n === null ? "?" : String(n));
  const header = ["fault", "rows lost", "rows duplicated", "wrong predictions", "seconds to recover", "API during fault", "verdict"];
  const rows = outcomes.map(({ fault, result, pass }) => [
    fault.name,
    show(result.lost),
    show(result.duplicated),
    show(result.wrong),
    result.recoverSeconds === null ? "-" : result.recoverSeconds.toFixed(1),
    result.apiDuring,
    pass ? "PASS" : "FAIL",
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  console.log("");
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const row of rows) console.log(line(row));
  console.log("");
  for (const { fault, result, pass, seconds } of outcomes) {
    console.log(`${fault.name} (${seconds.toFixed(0)} s): ${fault.title}`);
    for (const problem of result.problems) console.log(`  FAIL  ${problem}`);
    for (const note of result.notes) console.log(`  note  ${note}`);
    if (pass && result.notes.length === 0) console.log("  ok");
  }
  console.log("");
  console.log("seconds to recover: from the kill, or from the dependency/receiver coming back, until the job moves again");
  console.log("  (api-kill-upload: until the interrupted upload's job has ended; webhook-down: until the delivery arrived).");
}

async function printLogTails(cluster: Cluster): Promise<void> {
  for (const file of cluster.logFiles()) {
    console.log(`--- last lines of ${file}`);
    for (const line of await tail(file, 8)) console.log(`  ${line.length > 400 ? `${line.slice(0, 400)}...` : line}`);
  }
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  const faults = selectFaults(options);
  const preset = options.quick ? QUICK : FULL;
  const faultOptions: FaultOptions = { quick: options.quick, endTimeoutMs: preset.endTimeoutMs };
  const startedAt = new Date();
  const started = performance.now();
  const root = await mkdtemp(path.join(tmpdir(), "coalesce-chaos-"));
  let cluster: Cluster | null = null;
  let interrupted = false;

  // Once only: an interrupt may arrive while the run is already cleaning up.
  let cleaning: Promise<void> | null = null;
  const cleanUp = (keepLogs: boolean) =>
    (cleaning ??= (async () => {
      await cluster?.close().catch((error: unknown) => console.error(`stopping the cluster: ${(error as Error).message}`));
      if (!keepLogs) return rm(root, { recursive: true, force: true });
      // Only the logs are kept: the database files and the model store are of no use after the run.
      await rm(path.join(root, "postgres", "data"), { recursive: true, force: true });
      await rm(path.join(root, "models"), { recursive: true, force: true });
    })());
  // Ctrl-C (or a CI timeout's SIGTERM): stop everything this run started before leaving.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      interrupted = true;
      log(`${signal}: stopping every process and instance this run started`);
      void cleanUp(false).then(() => process.exit(130));
    });
  }

  log(`${faults.map((f) => f.name).join(", ")} on ${options.rows} rows${options.quick ? " (--quick)" : ""}; files in ${root}`);
  const workload = await buildWorkload(options.rows);
  const outcomes: Outcome[] = [];
  try {
    cluster = await startCluster(root);
    log(`Postgres on ${cluster.postgres.port}, Redis on ${cluster.redis.port}; starting the API`);
    await cluster.startApi();
    const client = createClient(cluster.baseUrl, cluster.key);
    await registerModel(client);
    for (const fault of faults) {
      if (interrupted) break;
      await resetBetweenFaults(cluster);
      outcomes.push(await runFault(fault, cluster, client, { workload, options: faultOptions }));
    }
  } catch (error) {
    log(`the suite could not run: ${(error as Error).message}`);
    if (cluster) await printLogTails(cluster);
    await cleanUp(true);
    console.log(`logs kept in ${path.join(root, "logs")} and ${root}/postgres, ${root}/redis`);
    return 1;
  }
  printTable(outcomes);
  const failed = outcomes.filter((outcome) => !outcome.pass);
  const total = ((performance.now() - started) / 1000).toFixed(0);
  console.log(`${outcomes.length - failed.length}/${outcomes.length} faults passed; started ${startedAt.toISOString()}, took ${total} s`);
  const keep = failed.length > 0 || options.keepLogs;
  if (failed.length > 0 && cluster) await printLogTails(cluster);
  await cleanUp(keep);
  if (keep) console.log(`logs kept in ${root} (logs/, postgres/postgres.log, redis/redis.log)`);
  return failed.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`chaos: ${(error as Error).message}`);
    process.exit(1);
  },
);
