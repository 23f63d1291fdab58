// Private Redis Clusters, Sentinel groups and PgBouncers for the tests of test/deploy, each in a temp
// directory of its own on free ports, and the flow those tests run through the real API and worker.
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { Job } from "@coalesce/contracts";
import { API_MAIN, freePort, startProcess, stopProcess, waitUntilReady, WORKER_MAIN, type ServiceProcess } from "../../scripts/processes.ts";
import { readFeatureCsv, readModel } from "../support/fixtures.ts";
import { FIXTURES } from "../support/services.ts";

const run = promisify(execFile);

/** A binary from Debian's packages, or undefined when this machine lacks it (CI installs them). */
export function findBinary(name: string, candidates: string[] = []): string | undefined {
  for (const candidate of [...candidates, name]) {
    if (spawnSync(candidate, ["--version"], { stdio: "ignore" }).status === 0) return candidate;
  }
  return undefined;
}

type Daemon = { child: ChildProcess; exited: Promise<void> };

function daemon(command: string, args: string[], cwd: string): Daemon {
  const child = spawn(command, args, { cwd, stdio: "ignore" });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return { child, exited };
}

async function stopDaemon(d: Daemon): Promise<void> {
  if (d.child.exitCode !== null || d.child.signalCode !== null) return;
  d.child.kill("SIGTERM");
  const timer = setTimeout(() => d.child.kill("SIGKILL"), 5_000);
  await d.exited;
  clearTimeout(timer);
}

export async function redisCli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run("redis-cli", ["-p", String(port), ...args]);
  return stdout.trim();
}

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Redis that keeps nothing on disk. */
function redisArgs(port: number, extra: string[] = []): string[] {
  return ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...extra];
}

export type RedisCluster = { url: string; ports: number[]; stop(): Promise<void> };

/** Three masters, no replicas, every slot covered; `url` is the redis+cluster:// form naming all three. */
export async function startRedisCluster(): Promise<RedisCluster> {
  const dir = await mkdtemp(path.join(tmpdir(), "coalesce-cluster-"));
  const ports = [await freePort(), await freePort(), await freePort()];
  const nodes = ports.map((port) => daemon("redis-server", redisArgs(port, ["--cluster-enabled", "yes", "--cluster-config-file", `nodes-${port}.conf`, "--dir", dir]), dir));
  const stop = async () => {
    await Promise.all(nodes.map(stopDaemon));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (const port of ports) await waitFor(`cluster node ${port} up`, async () => (await redisCli(port, "ping")) === "PONG");
    await run("redis-cli", ["--cluster", "create", ...ports.map((port) => `127.0.0.1:${port}`), "--cluster-replicas", "0", "--cluster-yes"]);
    for (const port of ports) await waitFor(`cluster_state:ok on ${port}`, async () => (await redisCli(port, "cluster", "info")).includes("cluster_state:ok"));
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `redis+cluster://${ports.map((port) => `127.0.0.1:${port}`).join(",")}`, ports, stop };
}

export type SentinelGroup = { url: string; masterPort: number; replicaPort: number; sentinelPort: number; stop(): Promise<void> };

/** A master, one replica of it and one Sentinel watching them (quorum 1, so it can fail over alone). */
export async function startSentinelGroup(masterName = "coalesce"): Promise<SentinelGroup> {
  const dir = await mkdtemp(path.join(tmpdir(), "coalesce-sentinel-"));
  const [masterPort, replicaPort, sentinelPort] = [await freePort(), await freePort(), await freePort()];
  const master = daemon("redis-server", redisArgs(masterPort, ["--dir", dir]), dir);
  const replica = daemon("redis-server", redisArgs(replicaPort, ["--dir", dir, "--replicaof", "127.0.0.1", String(masterPort)]), dir);
  // Sentinel rewrites its configuration file, so it must be a file of its own it may write.
  const config = path.join(dir, "sentinel.conf");
  await writeFile(
    config,
    [
      `port ${sentinelPort}`,
      "bind 127.0.0.1",
      `dir ${dir}`,
      `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} 1`,
      `sentinel down-after-milliseconds ${masterName} 1000`,
      `sentinel failover-timeout ${masterName} 5000`,
      "",
    ].join("\n"),
  );
  const sentinel = daemon("redis-server", [config, "--sentinel"], dir);
  const stop = async () => {
    await Promise.all([sentinel, replica, master].map(stopDaemon));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor("replica in sync", async () => (await redisCli(replicaPort, "info", "replication")).includes("master_link_status:up"));
    await waitFor("sentinel knows the replica", async () => (await redisCli(sentinelPort, "sentinel", "replicas", masterName)).includes(String(replicaPort)));
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `redis+sentinel://127.0.0.1:${sentinelPort}/${masterName}`, masterPort, replicaPort, sentinelPort, stop };
}

export type Coalesce = {
  baseUrl: string;
  processes: ServiceProcess[];
  output(): string;
  call<T>(method: string, route: string, body?: string | Uint8Array, type?: string): Promise<{ status: number; headers: Headers; body: T }>;
  stop(): Promise<void>;
};

/** API and worker processes on `env`, ready; their output is kept for failure messages. */
export async function startCoalesce(env: Record<string, string>, key: string): Promise<Coalesce> {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const full = { ...env, PORT: String(port), BOOTSTRAP_API_KEY: key, LOG_LEVEL: "info", MAX_BATCH_DELAY_MS: "20" };
  const processes = [startProcess("api", API_MAIN, full, "pipe"), startProcess("worker", WORKER_MAIN, full, "pipe")];
  let output = "";
  for (const service of processes) {
    service.child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    service.child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  }
  const stop = () => Promise.all(processes.map((service) => stopProcess(service))).then(() => undefined);
  try {
    await waitUntilReady(baseUrl, processes);
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${output}`);
  }
  return {
    baseUrl,
    processes,
    output: () => output,
    async call<T>(method: string, route: string, body?: string | Uint8Array, type = "application/json") {
      const response = await fetch(`${baseUrl}${route}`, {
        method,
        headers: { Authorization: `Bearer ${key}`, "Content-Type": type },
        ...(body === undefined ? {} : { body }),
      });
      const text = await response.text();
      if (response.status >= 500) throw new Error(`${method} ${route}: ${response.status} ${text}\n${output}`);
      return { status: response.status, headers: response.headers, body: (text ? JSON.parse(text) : null) as T };
    },
    stop,
  };
}

export async function waitForJob(coalesce: Coalesce, id: string, timeoutMs = 60_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body: job } = await coalesce.call<Job>("GET", `/v1/jobs/${id}`);
    if (["succeeded", "failed", "cancelled"].includes(job.status)) return job;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${job.status} after ${timeoutMs} ms\n${coalesce.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Registers iris (once per call), then a JSON job and a CSV job; returns both finished. */
export async function runIrisJobs(coalesce: Coalesce): Promise<{ json: Job; csv: Job; rows: number }> {
  const upload = await coalesce.call("POST", "/v1/models/iris/versions", await readModel("iris"), "application/octet-stream");
  if (upload.status !== 201 && upload.status !== 200) throw new Error(`model upload: ${upload.status} ${JSON.stringify(upload.body)}`);
  const { features } = await readFeatureCsv("iris");
  const json = await coalesce.call<Job>("POST", "/v1/jobs", JSON.stringify({ model: "iris", inputs: features.map((f) => ({ features: f })) }));
  if (json.status !== 202 && json.status !== 201) throw new Error(`JSON job: ${json.status} ${JSON.stringify(json.body)}`);
  const csvBytes = await readFile(path.join(FIXTURES, "iris.csv"));
  const csv = await coalesce.call<Job>("POST", "/v1/jobs?model=iris&id_column=row_id&ignore=target", csvBytes, "text/csv");
  if (csv.status !== 202 && csv.status !== 201) throw new Error(`CSV job: ${csv.status} ${JSON.stringify(csv.body)}`);
  return { json: await waitForJob(coalesce, json.body.id), csv: await waitForJob(coalesce, csv.body.id), rows: features.length };
}

export type PgBouncer = { port: number; url(schema: string): string; stop(): Promise<void> };

/**
 * PgBouncer in transaction pooling mode in front of the test Postgres, as the postgres user (it
 * refuses to run as root). `search_path` is set by its connect_query, as a deployment would: a
 * startup parameter does not pass it.
 */
export async function startPgBouncer(binary: string, databaseUrl: string, schema: string): Promise<PgBouncer> {
  const upstream = new URL(databaseUrl);
  const dir = await mkdtemp(path.join(tmpdir(), "coalesce-pgbouncer-"));
  const port = await freePort();
  const user = decodeURIComponent(upstream.username) || "postgres";
  const database = upstream.pathname.replace(/^\//, "");
  const connectQuery = `SET search_path TO "${schema}"; SET random_page_cost = 1.1`;
  await writeFile(path.join(dir, "users.txt"), `"${user}" ""\n`);
  await writeFile(
    path.join(dir, "pgbouncer.ini"),
    [
      "[databases]",
      `coalesce = host=${upstream.hostname} port=${upstream.port || 5432} dbname=${database} connect_query='${connectQuery}'`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "unix_socket_dir =",
      "auth_type = trust",
      `auth_file = ${path.join(dir, "users.txt")}`,
      "pool_mode = transaction",
      // Fewer server connections than the processes' pools hold: transactions must share them.
      "default_pool_size = 6",
      "max_client_conn = 500",
      `logfile = ${path.join(dir, "pgbouncer.log")}`,
      "",
    ].join("\n"),
  );
  await run("chown", ["-R", "postgres", dir]).catch(() => undefined);
  const asRoot = process.getuid?.() === 0;
  const command = asRoot ? "runuser" : binary;
  const args = asRoot ? ["-u", "postgres", "--", binary, path.join(dir, "pgbouncer.ini")] : [path.join(dir, "pgbouncer.ini")];
  const bouncer = daemon(command, args, dir);
  const stop = async () => {
    await stopDaemon(bouncer);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor("PgBouncer listening", async () => {
      const { default: pg } = await import("pg");
      const client = new pg.Client({ host: "127.0.0.1", port, user, database: "coalesce" });
      await client.connect();
      await client.query("SELECT 1");
      await client.end();
      return true;
    });
  } catch (error) {
    const log = await readFile(path.join(dir, "pgbouncer.log"), "utf8").catch(() => "");
    await stop();
    throw new Error(`${(error as Error).message}\n${log}`);
  }
  return { port, url: (s) => `postgresql://${user}@127.0.0.1:${port}/coalesce?schema=${s}&pgbouncer=true`, stop };
}
