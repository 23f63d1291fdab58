// docker/compose.yaml and docker/Dockerfile, checked without a Docker engine: docker-compose validates
// the file, and the worker and API services' own command and environment (read from the compose file
// and the Dockerfile) run here as local processes, three workers sharing one queue, against the real
// Postgres, Redis and onnxruntime.
import { execFile, spawn, spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import type { Job, JobResults, ResultRow } from "@coalesce/contracts";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ApiEnvSchema, DEVELOPMENT_BOOTSTRAP_API_KEY, loadApiEnv } from "../../apps/api/src/env.ts";
import { WorkerEnvSchema, loadWorkerEnv } from "../../apps/worker/src/env.ts";
import { freePort, ROOT, SERVICE_NODE_ARGS, stopProcess, waitUntilReady, type ServiceProcess } from "../../scripts/processes.ts";
import { readFeatureCsv, readModel } from "../support/fixtures.ts";
import { createTestServices, type TestServices } from "../support/services.ts";
import { COMPOSE_FILE, readComposeFile, readContainerSpec, type ComposeFile, type ContainerSpec } from "./container-spec.ts";

const WORKERS = 3;
const CHUNK_ROWS = 32;
/** Node's own variables, which the images set and no env.ts reads. */
const NODE_VARIABLES = ["NODE_ENV", "NODE_OPTIONS"];

/** Only what a container would also have; the rest of the environment comes from the image and compose. */
const BASE_ENV = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp" };

/**
 * Debian's docker-compose validates compose files without a Docker engine. CI installs it (.ci/run)
 * and must run these checks; on a developer machine without it they are skipped with a hint.
 */
const HAS_DOCKER_COMPOSE = spawnSync("docker-compose", ["version"], { stdio: "ignore" }).status === 0;
const SKIP_COMPOSE_CHECKS = !HAS_DOCKER_COMPOSE && process.env.CI !== "true";
if (SKIP_COMPOSE_CHECKS) {
  console.warn("docker-compose is not installed: skipping the compose file checks (apt-get install -y docker-compose to run them)");
}

describe("docker/compose.yaml", () => {
  it.skipIf(SKIP_COMPOSE_CHECKS)("is valid for docker-compose, and its api and worker run the image targets with the expected environment", async () => {
    let stdout: string;
    try {
      // No variables set, so every ${VAR:-default} takes its default, as on a fresh machine.
      ({ stdout } = await promisify(execFile)("docker-compose", ["-f", COMPOSE_FILE, "config"], { cwd: ROOT, env: BASE_ENV }));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        throw new Error("docker-compose is not on PATH: install it (`apt-get install -y docker-compose`); it validates compose files without a Docker engine");
      }
      throw error;
    }
    const resolved = parse(stdout) as ComposeFile;
    const { api, worker, nginx } = resolved.services;
    // The way in is nginx, published on this machine only unless PROXY_BIND says otherwise; the API
    // publishes no port, so `--scale api=N` can start several, and trusts the proxy's X-Forwarded-For.
    expect(nginx?.ports).toEqual(["127.0.0.1:80:80/tcp", "127.0.0.1:443:443/tcp"]);
    expect(nginx?.build).toMatchObject({ context: path.join(ROOT, "docker/nginx") });
    expect(api).not.toHaveProperty("ports");
    expect(api).not.toHaveProperty("container_name");
    expect(api?.environment).toMatchObject({ TRUST_PROXY: "true" });
    // nginx refuses a body past the API's own upload limit, the same number.
    expect(nginx?.environment?.COALESCE_MAX_BODY_SIZE).toBe(api?.environment?.MAX_UPLOAD_BYTES);
    expect(api?.build).toMatchObject({ context: ROOT, dockerfile: "docker/Dockerfile", target: "api" });
    expect(worker?.build).toMatchObject({ context: ROOT, dockerfile: "docker/Dockerfile", target: "worker" });
    // `--scale worker=N` needs a worker without a fixed name or host port.
    expect(worker).not.toHaveProperty("container_name");
    expect(worker).not.toHaveProperty("ports");
    expect(worker).not.toHaveProperty("deploy");

    // Our reading of the file (which the process test below relies on) agrees with docker-compose's.
    const ours = await readComposeFile();
    expect(ours.services.api?.environment).toEqual(api?.environment);
    expect(ours.services.worker?.environment).toEqual(worker?.environment);
    expect(ours.services.worker?.command).toEqual(worker?.command);

    const apiSpec = await readContainerSpec(resolved, "api");
    const workerSpec = await readContainerSpec(resolved, "worker");
    expect(apiSpec.argv).toEqual(["node", "apps/api/dist/main.js"]);
    expect(workerSpec.argv).toEqual(["node", "apps/worker/dist/main.js"]);
    for (const spec of [apiSpec, workerSpec]) {
      expect(spec.env).toMatchObject({
        DATABASE_URL: expect.stringContaining("@postgres:5432/"),
        REDIS_URL: "redis://redis:6379",
        QUEUE_PREFIX: expect.any(String),
        MODEL_STORE_DIR: "/data/models",
      });
    }
    expect(apiSpec.env).toMatchObject({ HOST: "0.0.0.0", PORT: "3000", BOOTSTRAP_API_KEY: DEVELOPMENT_BOOTSTRAP_API_KEY, NODE_ENV: "development" });
    // /metrics on a port of its own inside the compose network, never published (the API binds 0.0.0.0 in its container).
    expect(apiSpec.env).toMatchObject({ API_METRICS_PORT: "9464", METRICS_HOST: "0.0.0.0" });
    expect(JSON.stringify(resolved.services)).not.toMatch(/:9464\//);
    // Every variable is one the process reads, and each value passes its env.ts.
    expect(Object.keys(apiSpec.env).filter((key) => !(key in ApiEnvSchema.shape) && !NODE_VARIABLES.includes(key))).toEqual([]);
    expect(Object.keys(workerSpec.env).filter((key) => !(key in WorkerEnvSchema.shape) && !NODE_VARIABLES.includes(key))).toEqual([]);
    // The images run Node with the flags `npm start` passes.
    for (const spec of [apiSpec, workerSpec]) expect(spec.env.NODE_OPTIONS?.split(" ")).toEqual(SERVICE_NODE_ARGS);
    expect(() => loadApiEnv(apiSpec.env)).not.toThrow();
    expect(() => loadWorkerEnv(workerSpec.env)).not.toThrow();
    // In production (the image's own NODE_ENV) the default key is refused, and a key of one's own taken.
    expect(() => loadApiEnv({ ...apiSpec.env, NODE_ENV: "production" })).toThrow(/BOOTSTRAP_API_KEY: is the well-known development key/);
    expect(loadApiEnv({ ...apiSpec.env, NODE_ENV: "production", BOOTSTRAP_API_KEY: "csk_0123456789abcdef0123" }).NODE_ENV).toBe("production");
  });

  it.skipIf(SKIP_COMPOSE_CHECKS)("publishes the proxy on every interface only when PROXY_BIND says so, redirecting to its HTTPS port", async () => {
    const env = { ...BASE_ENV, PROXY_BIND: "0.0.0.0", PROXY_HTTP_PORT: "8080", PROXY_HTTPS_PORT: "8443" };
    const { stdout } = await promisify(execFile)("docker-compose", ["-f", COMPOSE_FILE, "config"], { cwd: ROOT, env });
    const { nginx } = (parse(stdout) as ComposeFile).services;
    expect(nginx?.ports).toEqual(["0.0.0.0:8080:80/tcp", "0.0.0.0:8443:443/tcp"]);
    expect(nginx?.environment?.COALESCE_PUBLIC_HTTPS_PORT).toBe("8443");
  });

  it.skipIf(SKIP_COMPOSE_CHECKS)("has an observability profile whose Prometheus reads deploy/prometheus/ and a healthcheck on every worker", async () => {
    const { stdout } = await promisify(execFile)("docker-compose", ["-f", COMPOSE_FILE, "--profile", "observability", "config"], { cwd: ROOT, env: BASE_ENV });
    const services = (parse(stdout) as { services: Record<string, { profiles?: string[]; volumes?: string[]; healthcheck?: { test?: string[] } }> }).services;
    expect(services.prometheus?.profiles).toEqual(["observability"]);
    expect(services.prometheus?.volumes).toEqual(
      expect.arrayContaining([
        `${path.join(ROOT, "deploy/prometheus/prometheus.compose.yml")}:/etc/prometheus/prometheus.yml:ro`,
        `${path.join(ROOT, "deploy/prometheus/rules")}:/etc/prometheus/rules:ro`,
      ]),
    );
    // It asks the worker's own metrics port, whose default is the worker's METRICS_PORT default.
    expect(services.worker?.healthcheck?.test?.join(" ")).toContain("/healthz");
    expect(loadWorkerEnv({}).METRICS_PORT).toBe(9464);
  });

  it.skipIf(SKIP_COMPOSE_CHECKS)("has a gpu profile whose worker reserves the NVIDIA devices and prefers CUDA, then WebGPU, then the CPU", async () => {
    const { stdout } = await promisify(execFile)("docker-compose", ["-f", COMPOSE_FILE, "--profile", "gpu", "config"], { cwd: ROOT, env: BASE_ENV });
    const gpu = (parse(stdout) as { services: Record<string, { build?: { target?: string }; environment?: Record<string, string>; deploy?: unknown; profiles?: string[] }> }).services["worker-gpu"];
    // Only with --profile gpu: a plain `up` starts no GPU worker.
    expect(gpu?.profiles).toEqual(["gpu"]);
    expect(gpu?.build?.target).toBe("worker-gpu");
    expect(gpu?.deploy).toMatchObject({ resources: { reservations: { devices: [{ driver: "nvidia", capabilities: ["gpu"] }] } } });
    expect(loadWorkerEnv({ ...gpu?.environment }).EXECUTION_PROVIDERS).toEqual(["cuda", "webgpu", "cpu"]);
    const dockerfile = await readFile(path.join(ROOT, "docker/Dockerfile"), "utf8");
    expect(dockerfile).toMatch(/^FROM nvidia\/cuda:12[^\n]* AS worker-gpu$/m);
    expect(dockerfile).toContain("ONNXRUNTIME_NODE_INSTALL=cuda12");
  });

  it("builds on a Dockerfile whose manifests stage covers every npm workspace", async () => {
    // The deps stage installs from the package.json files that the manifests stage copies from
    // apps/ and packages/; a workspace elsewhere would be missing from the image's node_modules.
    const { workspaces } = JSON.parse(await readFile(path.join(ROOT, "package.json"), "utf8")) as { workspaces: string[] };
    const dockerfile = await readFile(path.join(ROOT, "docker/Dockerfile"), "utf8");
    const manifests = dockerfile.slice(dockerfile.indexOf("AS manifests"), dockerfile.indexOf("AS deps"));
    expect(workspaces.filter((glob) => !/^[a-z-]+\/\*$/.test(glob) || !manifests.includes(`COPY ${glob.slice(0, -2)} `))).toEqual([]);
  });
});

describe(`the compose worker service, as ${WORKERS} processes sharing one queue`, () => {
  let services: TestServices;
  let compose: ComposeFile;
  let baseUrl: string;
  let key: string;
  const processes: ServiceProcess[] = [];
  const output = new Map<string, string>();

  /** Runs a container spec here: its WORKDIR is the repository root, `node` this Node. */
  function startContainerProcess(name: string, spec: ContainerSpec, env: Record<string, string>): ServiceProcess {
    const [command, ...args] = spec.argv;
    const child = spawn(command === "node" ? process.execPath : (command as string), args, {
      cwd: ROOT,
      env: { ...BASE_ENV, ...spec.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    output.set(name, "");
    const collect = (chunk: Buffer) => output.set(name, (output.get(name) ?? "") + chunk.toString());
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const service = { name, child, exited };
    processes.push(service);
    return service;
  }

  function logs(): string {
    return [...output].map(([name, text]) => `--- ${name}\n${text.split("\n").slice(-20).join("\n")}`).join("\n");
  }

  async function waitForLine(service: ServiceProcess, text: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(output.get(service.name) ?? "").includes(text)) {
      if (service.child.exitCode !== null) throw new Error(`${service.name} exited with code ${service.child.exitCode}\n${logs()}`);
      if (Date.now() > deadline) throw new Error(`${service.name} did not log ${text} within ${timeoutMs} ms\n${logs()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async function call<T>(method: string, route: string, body?: string | Uint8Array, type = "application/json"): Promise<T> {
    const response = await fetch(`${baseUrl}${route}`, {
      method,
      headers: { Authorization: `Bearer ${key}`, "Content-Type": type },
      ...(body === undefined ? {} : { body }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
    return JSON.parse(text) as T;
  }

  beforeAll(async () => {
    services = await createTestServices();
    compose = await readComposeFile();
    const workerSpec = await readContainerSpec(compose, "worker");
    const apiSpec = await readContainerSpec(compose, "api");
    // The compose services' addresses exist only inside compose's network: use this test's own.
    // debug: the test reads each worker's per-batch lines (at info a worker writes a summary per interval).
    const own = { ...services.env, LOG_LEVEL: "debug" };
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    key = apiSpec.env.BOOTSTRAP_API_KEY as string; // compose's development default
    // Its metrics port too: 9464 inside a container is this machine's here (a worker's default).
    startContainerProcess("api", apiSpec, { ...own, HOST: "127.0.0.1", PORT: String(port), API_METRICS_PORT: "0", METRICS_HOST: "127.0.0.1", CHUNK_ROWS: String(CHUNK_ROWS) });
    const workers = Array.from({ length: WORKERS }, (_, i) => startContainerProcess(`worker-${i + 1}`, workerSpec, own));
    await waitUntilReady(baseUrl, processes, 90_000);
    // Every worker consumes before the job arrives, so they all get the chance to take chunks.
    await Promise.all(workers.map((worker) => waitForLine(worker, '"msg":"worker ready"', 90_000)));
  }, 180_000);

  afterAll(async () => {
    await Promise.all(processes.map((service) => stopProcess(service)));
    await services?.cleanup();
  });

  it("scores every row of the digits set exactly once, with the chunks spread over the workers", async () => {
    await call("POST", "/v1/models/digits/versions", await readModel("digits"), "application/octet-stream");
    const { features } = await readFeatureCsv("digits");
    const job = await call<Job>("POST", "/v1/jobs", JSON.stringify({ model: "digits", inputs: features.map((f) => ({ features: f })) }));

    const deadline = Date.now() + 90_000;
    let done = job;
    while (!["succeeded", "failed", "cancelled"].includes(done.status)) {
      if (Date.now() > deadline) throw new Error(`job ${job.id} still ${done.status}\n${logs()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      done = await call<Job>("GET", `/v1/jobs/${job.id}`);
    }
    expect(done).toMatchObject({ status: "succeeded", counts: { total: features.length, succeeded: features.length, failed: 0 } });

    const rows: ResultRow[] = [];
    for (let cursor: string | null = "0"; cursor !== null; ) {
      const page: JobResults = await call<JobResults>("GET", `/v1/jobs/${job.id}/results?limit=1000&cursor=${cursor}`);
      rows.push(...page.data);
      cursor = page.next_cursor;
    }
    expect(rows.map((row) => row.index)).toEqual(features.map((_, i) => i));
    expect(rows.filter((row) => !("outputs" in row) || "error" in row)).toEqual([]);

    // completeChunk marks a chunk done (attempts + 1) only once; a second scoring would show as a retry.
    const url = new URL(services.databaseUrl);
    url.searchParams.delete("schema");
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    const { rows: chunks } = await client
      .query<{ status: string; attempts: number; row_count: number }>(
        `SELECT status, attempts, row_count FROM "${services.schema}".job_chunks WHERE job_id = $1`,
        [job.id],
      )
      .finally(() => client.end());
    expect(chunks).toHaveLength(Math.ceil(features.length / CHUNK_ROWS));
    expect(chunks.filter((chunk) => chunk.status !== "done" || chunk.attempts !== 1)).toEqual([]);

    // One "batch" log line per onnxruntime run: together they ran each row once, in more than one process.
    const batchRows = new Map<string, number>();
    for (const [name, text] of output) {
      if (!name.startsWith("worker-")) continue;
      const batches = text.split("\n").filter((line) => line.includes('"msg":"batch"'));
      batchRows.set(name, batches.reduce((sum, line) => sum + (JSON.parse(line) as { rows: number }).rows, 0));
    }
    expect([...batchRows.values()].reduce((sum, n) => sum + n, 0)).toBe(features.length);
    expect([...batchRows.values()].filter((n) => n > 0).length, `rows per worker: ${JSON.stringify([...batchRows])}`).toBeGreaterThanOrEqual(2);
  }, 120_000);

  it("stops every process cleanly on SIGTERM", async () => {
    const codes = await Promise.all(
      processes.map(async (service) => {
        await stopProcess(service);
        return [service.name, service.child.exitCode] as const;
      }),
    );
    expect(Object.fromEntries(codes)).toEqual(Object.fromEntries(processes.map((service) => [service.name, 0])));
  }, 60_000);
});
