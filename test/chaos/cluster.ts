// The system under test, for the fault suite: private Postgres and Redis, the real API process and
// worker processes against them, each process logging to a file of its own in `logDir`.
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, open, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { API_MAIN, freePort, startProcess, WORKER_MAIN, type ServiceProcess } from "../../scripts/processes.ts";
import { startPostgres, startRedis, type PostgresInstance, type RedisInstance } from "./instances.ts";
import { GiveUp, until } from "./wait.ts";

export type ChaosProcess = ServiceProcess & { logFile: string; pid: number };

export type Cluster = {
  baseUrl: string;
  key: string;
  logDir: string;
  postgres: PostgresInstance;
  redis: RedisInstance;
  /** The API process now serving (replaced by restartApi). */
  api(): ChaosProcess;
  startApi(): Promise<ChaosProcess>;
  /** Starts a worker and waits until it has said hello in Redis (it then takes work). */
  startWorker(env?: Record<string, string>): Promise<ChaosProcess>;
  workers(): ChaosProcess[];
  /** Stops every worker (SIGTERM, SIGKILL after a grace), e.g. between faults. */
  stopWorkers(): Promise<void>;
  /** kill -9 or SIGTERM; resolves when the process has exited. */
  signal(service: ChaosProcess, signal: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
  /** Every log file the run wrote (processes and instances). */
  logFiles(): string[];
  close(): Promise<void>;
};

/** The tenant's key, made at the API's start (BOOTSTRAP_API_KEY). */
const KEY = `csk_chaos_${randomBytes(12).toString("hex")}`;

/**
 * Settings of every API and worker process. Short intervals where the defaults are minutes (how
 * often the reconciler looks for chunks Redis lost, webhook retries, the upload sweep) so a fault
 * resolves within the suite's time. A version of the code without one of these settings ignores it
 * (the env schemas drop unknown variables), so the suite runs against older code too.
 */
export function serviceSettings(extra: Record<string, string>): Record<string, string> {
  return {
    LOG_LEVEL: "info",
    METRICS_PORT: "0",
    MIGRATE_ON_START: "true",
    RECONCILE_INTERVAL_MS: "5000",
    // A dead worker's chunks go to a live one within this (the issue asks for 5 s).
    STALLED_TAKEOVER_MS: "5000",
    // Uploads whose API process died: looked for every 2 s, ended after 10 s without a sign of life.
    UPLOAD_SWEEP_MS: "2000",
    UPLOAD_STALE_MS: "10000",
    WEBHOOK_ALLOW_HTTP: "true",
    WEBHOOK_ALLOWLIST: "127.0.0.0/8",
    WEBHOOK_RETRY_SCHEDULE: "2s,5s,10s,15s,20s,30s,30s,30s,60s",
    WEBHOOK_POLL_MS: "250",
    ...extra,
  };
}

export async function startCluster(root: string): Promise<Cluster> {
  const logDir = path.join(root, "logs");
  await mkdir(logDir, { recursive: true });
  const modelStoreDir = path.join(root, "models");
  await mkdir(modelStoreDir, { recursive: true });
  const postgres = await startPostgres(root);
  let redis: RedisInstance | null = null;
  const services: ChaosProcess[] = [];
  let api: ChaosProcess | null = null;
  const counters = new Map<string, number>();

  try {
    redis = await startRedis(root);
    const port = await freePort();
    const baseUrl = `http://127.0.0.1:${port}`;
    const env = serviceSettings({
      DATABASE_URL: postgres.url("coalesce"),
      REDIS_URL: redis.url,
      QUEUE_PREFIX: "chaos",
      MODEL_STORE_DIR: modelStoreDir,
      PORT: String(port),
      BOOTSTRAP_API_KEY: KEY,
    });

    let closed = false;
    const launch = (role: "api" | "worker", extra: Record<string, string>): ChaosProcess => {
      // A fault still under way after an interrupt must not start what close() has just stopped.
      if (closed) throw new GiveUp(`not starting a ${role}: the run is stopping`);
      const n = (counters.get(role) ?? 0) + 1;
      counters.set(role, n);
      const name = `${role}-${n}`;
      const logFile = path.join(logDir, `${name}.log`);
      const started = startProcess(name, role === "api" ? API_MAIN : WORKER_MAIN, { ...env, ...extra }, "pipe");
      const log = createWriteStream(logFile);
      started.child.stdout?.pipe(log, { end: false });
      started.child.stderr?.pipe(log, { end: false });
      void started.exited.then(() => setTimeout(() => log.end(), 100));
      const service = { ...started, logFile, pid: started.child.pid ?? 0 };
      services.push(service);
      return service;
    };

    const readyz = async (): Promise<{ status: number; workers: { id: string }[] }> => {
      const response = await fetch(`${baseUrl}/readyz`, { signal: AbortSignal.timeout(5_000) });
      const body = (await response.json()) as { workers?: { id: string }[] };
      return { status: response.status, workers: body.workers ?? [] };
    };

    const startApi = async () => {
      const service = launch("api", {});
      api = service;
      await until(`${service.name} to answer GET /readyz with 200`, 120_000, async () => {
        if (service.child.exitCode !== null) throw new GiveUp(`${service.name} exited with code ${service.child.exitCode}; see ${service.logFile}`);
        return (await readyz()).status === 200;
      });
      return service;
    };

    const cluster: Cluster = {
      baseUrl,
      key: KEY,
      logDir,
      postgres,
      redis,
      api: () => {
        if (!api) throw new Error("the API is not started");
        return api;
      },
      startApi,
      async startWorker(extra = {}) {
        const service = launch("worker", extra);
        // The worker's heartbeat id is host:pid:time; it is up once /readyz lists its pid.
        await until(`${service.name} (pid ${service.pid}) to appear in GET /readyz workers`, 120_000, async () => {
          if (service.child.exitCode !== null) throw new GiveUp(`${service.name} exited with code ${service.child.exitCode}; see ${service.logFile}`);
          return (await readyz()).workers.some((worker) => worker.id.split(":")[1] === String(service.pid));
        });
        return service;
      },
      workers: () => services.filter((service) => service.name.startsWith("worker-") && isRunning(service)),
      async stopWorkers() {
        await Promise.all(cluster.workers().map((worker) => cluster.signal(worker, "SIGTERM", 30_000)));
      },
      async signal(service, signal, timeoutMs = 30_000) {
        if (!isRunning(service)) return service.child.exitCode;
        service.child.kill(signal);
        const timer = setTimeout(() => service.child.kill("SIGKILL"), timeoutMs);
        const code = await service.exited;
        clearTimeout(timer);
        return code;
      },
      logFiles: () => [postgres.logFile, redis?.logFile ?? "", ...services.map((service) => service.logFile)].filter(Boolean),
      async close() {
        closed = true;
        await stopAll(services);
        await redis?.close();
        await postgres.close();
      },
    };
    return cluster;
  } catch (error) {
    await stopAll(services);
    await redis?.close();
    await postgres.close();
    throw error;
  }
}

function isRunning(service: ServiceProcess): boolean {
  return service.child.exitCode === null && service.child.signalCode === null;
}

/** SIGTERM to all, SIGKILL whatever is left after 20 s: nothing the suite started outlives it. */
async function stopAll(processes: ChaosProcess[]): Promise<void> {
  await Promise.all(
    processes.filter(isRunning).map(async (service) => {
      service.child.kill("SIGTERM");
      const timer = setTimeout(() => service.child.kill("SIGKILL"), 20_000);
      await service.exited;
      clearTimeout(timer);
    }),
  );
}

/** A log file's size now: a fault reads the lines written after it (see linesSince). */
export async function logOffset(file: string): Promise<number> {
  return stat(file).then((info) => info.size, () => 0);
}

/** The lines a log file gained since `offset`. */
export async function linesSince(file: string, offset: number): Promise<string[]> {
  const handle = await open(file, "r").catch(() => null);
  if (!handle) return [];
  try {
    const { size } = await handle.stat();
    if (size <= offset) return [];
    const buffer = Buffer.alloc(size - offset);
    await handle.read(buffer, 0, buffer.length, offset);
    return buffer.toString("utf8").split("\n").filter((line) => line.length > 0);
  } finally {
    await handle.close();
  }
}

/** The last `count` lines of a log file, for a failure report. */
export async function tail(file: string, count: number): Promise<string[]> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.split("\n").filter((line) => line.length > 0).slice(-count);
}
