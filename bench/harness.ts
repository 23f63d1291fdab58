// What the benchmarks share: a private corner of the local services (its own schema, queue prefix
// and model store) with a real API process and an API key; dropped again at the end.
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { parseArgs } from "node:util";
import type { Job } from "@coalesce/contracts";
import { DEFAULT_DATABASE_URL } from "@coalesce/db";
import pg from "pg";
import { API_MAIN, freePort, startProcess, stopProcess, waitUntilReady, type ServiceProcess } from "../scripts/processes.ts";

export type Bench = {
  baseUrl: string;
  headers: { Authorization: string };
  /** Environment for the API and workers of this run. */
  env: Record<string, string>;
  api: ServiceProcess;
  /** A pg client on the bench's schema, for server-side timestamps. */
  db: pg.Client;
  dir: string;
  close(): Promise<void>;
};

export async function openBench(extraEnv: Record<string, string> = {}): Promise<Bench> {
  const dir = await mkdtemp(path.join(tmpdir(), "coalesce-bench-"));
  const schema = `bench_${randomBytes(4).toString("hex")}`;
  const url = new URL(process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL);
  url.searchParams.set("schema", schema);
  const port = await freePort();
  const key = `csk_bench_${randomBytes(12).toString("hex")}`;
  const env = {
    DATABASE_URL: url.toString(),
    QUEUE_PREFIX: `coalesce-bench-${schema}`,
    MODEL_STORE_DIR: path.join(dir, "models"),
    PORT: String(port),
    BOOTSTRAP_API_KEY: key,
    LOG_LEVEL: "warn",
    METRICS_PORT: "0",
    ...extraEnv,
  };
  const api = startProcess("api", API_MAIN, env);
  const baseUrl = `http://127.0.0.1:${port}`;
  await waitUntilReady(baseUrl, [api]);
  const db = new pg.Client({ connectionString: url.toString().replace(/\?.*$/, ""), options: `-c search_path="${schema}"` });
  await db.connect();
  return {
    baseUrl,
    headers: { Authorization: `Bearer ${key}` },
    env,
    api,
    db,
    dir,
    async close() {
      await stopProcess(api);
      await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await db.end();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Registers `bytes` as model `name`; `query` may set the version's batching (`max_batch_rows=1&...`). */
export async function registerModel(bench: Bench, name: string, bytes: Uint8Array, query = ""): Promise<void> {
  const response = await fetch(`${bench.baseUrl}/v1/models/${name}/versions${query ? `?${query}` : ""}`, {
    method: "POST",
    headers: { ...bench.headers, "Content-Type": "application/octet-stream" },
    body: bytes,
  });
  if (!response.ok) throw new Error(`registering ${name}: ${response.status} ${await response.text()}`);
}

/** A side-by-side bench's shape from its command line: `--rounds`, `--requests` per case and round, `--concurrency`, `--quick`. */
export type RoundArgs = { rounds: number; requests: number; concurrency: number };

/**
 * Reads `--quick` (3 rounds of 500 requests), `--rounds N`, `--requests N` and `--concurrency N`
 * (default 16); a full run is 8 rounds of 1,500 requests per case.
 */
export function parseRoundArgs(argv: string[] = process.argv.slice(2)): RoundArgs {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      rounds: { type: "string" },
      requests: { type: "string" },
      concurrency: { type: "string", default: "16" },
    },
  });
  return {
    rounds: Math.max(1, Number(values.rounds ?? (values.quick ? 3 : 8))),
    requests: Math.max(1, Number(values.requests ?? (values.quick ? 500 : 1500))),
    concurrency: Math.max(1, Number(values.concurrency)),
  };
}

/** Streams a CSV file as a job (`query`: model and CSV options); the job as accepted (202), or throws. */
export async function uploadCsvFile(baseUrl: string, headers: Record<string, string>, query: string, file: string): Promise<Job> {
  const upload = await fetch(`${baseUrl}/v1/jobs?${query}`, {
    method: "POST",
    headers: { ...headers, "Content-Type": "text/csv" },
    body: Readable.toWeb(createReadStream(file)) as ReadableStream,
    duplex: "half",
  } as RequestInit);
  const job = (await upload.json()) as Job;
  if (upload.status !== 202) throw new Error(`upload failed: ${upload.status} ${JSON.stringify(job)}`);
  return job;
}
