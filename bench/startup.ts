// `npm run bench:startup`: what the build step changed for a process starting and sitting idle, side
// by side in one run. Each round starts the API, then the worker, once from the TypeScript sources
// under tsx (how every process ran before the build step; `npm run dev` still does) and once compiled
// (`node dist/main.js`, as `npm start` and the images run them), in an order that alternates between
// rounds. Cold start: from spawn until the API's /healthz (the worker's /metrics) first answers, with
// migrations already applied (MIGRATE_ON_START=false) so that only loading the code and connecting
// count. Idle RSS: the process' resident memory (from /proc) after IDLE_MS with nothing to do. Prints
// medians per case and the compiled/tsx ratio; writes bench/results/startup.json.
// `--rounds N` (default 5).
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_DATABASE_URL, migrate } from "@coalesce/db";
import { freePort, ROOT, startProcess, stopProcess, type ServiceProcess } from "../scripts/processes.ts";
import { writeResults } from "./results.ts";
import { median } from "./stats.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" } } });
const ROUNDS = Math.max(1, Number(values.rounds));
const IDLE_MS = 5_000;
const KEY = "csk_bench_startup_0123456789";

type Mode = "tsx" | "compiled";
type Role = "api" | "worker";
const ENTRIES: Record<Role, Record<Mode, string>> = {
  api: { tsx: "apps/api/src/main.ts", compiled: "apps/api/dist/main.js" },
  worker: { tsx: "apps/worker/src/main.ts", compiled: "apps/worker/dist/main.js" },
};
type Sample = { startMs: number; rssMb: number };

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
  return kb / 1024;
}

async function firstAnswer(url: string, service: ServiceProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (service.child.exitCode !== null) throw new Error(`${service.name} exited with code ${service.child.exitCode}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function measure(role: Role, mode: Mode, env: Record<string, string>): Promise<Sample> {
  const port = await freePort();
  const extra: Record<string, string> = role === "api" ? { PORT: String(port), API_METRICS_PORT: "0" } : { METRICS_PORT: String(port) };
  const url = role === "api" ? `http://127.0.0.1:${port}/healthz` : `http://127.0.0.1:${port}/metrics`;
  const started = performance.now();
  const service = startProcess(role, path.join(ROOT, ENTRIES[role][mode]), { ...env, ...extra }, "ignore");
  try {
    await firstAnswer(url, service);
    const startMs = performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
    return { startMs, rssMb: await rssMb(service.child.pid as number) };
  } finally {
    await stopProcess(service);
  }
}


async function main(): Promise<void> {
  const schema = `bench_startup_${process.pid}`;
  const base = process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
  const url = new URL(base);
  url.searchParams.set("schema", schema);
  const databaseUrl = url.toString();
  await migrate({ databaseUrl });
  const env = {
    DATABASE_URL: databaseUrl,
    QUEUE_PREFIX: `coalesce-bench-startup-${process.pid}`,
    BOOTSTRAP_API_KEY: KEY,
    MIGRATE_ON_START: "false",
    LOG_LEVEL: "warn",
  };
  const samples = new Map<string, Sample[]>();
  for (let round = 0; round < ROUNDS; round++) {
    const order: Mode[] = round % 2 === 0 ? ["tsx", "compiled"] : ["compiled", "tsx"];
    for (const role of ["api", "worker"] as const) {
      for (const mode of order) {
        const sample = await measure(role, mode, env);
        samples.set(`${role} ${mode}`, [...(samples.get(`${role} ${mode}`) ?? []), sample]);
        console.error(`round ${round + 1}/${ROUNDS} ${role} ${mode}: start ${sample.startMs.toFixed(0)} ms, idle RSS ${sample.rssMb.toFixed(0)} MB`);
      }
    }
  }
  const rows = [...samples].map(([name, list]) => ({ name, startMs: median(list.map((s) => s.startMs)), rssMb: median(list.map((s) => s.rssMb)) }));
  console.log(`\nmedians of ${ROUNDS} rounds (cold start to first answer; RSS after ${IDLE_MS / 1000} s idle)`);
  console.log("| process | tsx start | compiled start | ratio | tsx idle RSS | compiled idle RSS | ratio |");
  console.log("|---|---|---|---|---|---|---|");
  for (const role of ["api", "worker"] as const) {
    const tsx = rows.find((row) => row.name === `${role} tsx`) as (typeof rows)[number];
    const compiled = rows.find((row) => row.name === `${role} compiled`) as (typeof rows)[number];
    console.log(
      `| ${role} | ${tsx.startMs.toFixed(0)} ms | ${compiled.startMs.toFixed(0)} ms | ${(compiled.startMs / tsx.startMs).toFixed(2)}x | ` +
        `${tsx.rssMb.toFixed(0)} MB | ${compiled.rssMb.toFixed(0)} MB | ${(compiled.rssMb / tsx.rssMb).toFixed(2)}x |`,
    );
  }
  await writeResults("startup", { rounds: ROUNDS, idleMs: IDLE_MS, rows });
  const pg = await import("pg");
  const client = new pg.default.Client({ connectionString: base });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await client.end();
}

await main();
