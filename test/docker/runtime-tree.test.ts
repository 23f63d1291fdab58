// The runtime images hold the compiled JavaScript and the production dependencies only (docker/Dockerfile,
// stages prod-deps and runtime). No Docker engine runs here, so this test assembles the same tree in a
// temporary directory, the same way (`npm ci --omit=dev --omit=optional --ignore-scripts`, then
// docker/prune-runtime.sh, then each workspace's package.json and dist/), and runs the API and a
// worker from it: a dependency that only development has (tsx, TypeScript, the prisma CLI) and that a
// process still loads fails here, not in production.
import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { Job } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, ROOT, startProcess, stopProcess, waitUntilReady, type ServiceProcess } from "../../scripts/processes.ts";
import { readFeatureCsv, readModel } from "../support/fixtures.ts";
import { createTestServices, type TestServices } from "../support/services.ts";

const run = promisify(execFile);
const KEY = "csk_runtime_0123456789abcdef";
const WORKSPACES = ["apps/api", "apps/worker", "apps/cli", "packages/client", "packages/contracts", "packages/db", "packages/models", "packages/queue", "packages/webhooks"];

let tree: string;
let services: TestServices;
let processes: ServiceProcess[] = [];
let baseUrl: string;
let output = "";

async function call<T>(method: string, route: string, body?: string | Uint8Array, type = "application/json"): Promise<T> {
  const response = await fetch(`${baseUrl}${route}`, { method, headers: { Authorization: `Bearer ${KEY}`, "Content-Type": type }, ...(body === undefined ? {} : { body }) });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}\n${output}`);
  return JSON.parse(text) as T;
}

/** Every file below `dir`, relative to it. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)));
}

beforeAll(async () => {
  tree = await mkdtemp(path.join(tmpdir(), "coalesce-runtime-"));
  await cp(path.join(ROOT, "package.json"), path.join(tree, "package.json"));
  await cp(path.join(ROOT, "package-lock.json"), path.join(tree, "package-lock.json"));
  for (const workspace of WORKSPACES) {
    await mkdir(path.join(tree, workspace), { recursive: true });
    await cp(path.join(ROOT, workspace, "package.json"), path.join(tree, workspace, "package.json"));
  }
  await run("npm", ["ci", "--omit=dev", "--omit=optional", "--ignore-scripts", "--no-audit", "--no-fund"], {
    cwd: tree,
    env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip" },
    maxBuffer: 16 * 1024 * 1024,
  });
  await run("sh", [path.join(ROOT, "docker/prune-runtime.sh")], { cwd: tree });
  for (const workspace of WORKSPACES) await cp(path.join(ROOT, workspace, "dist"), path.join(tree, workspace, "dist"), { recursive: true });
  await cp(path.join(ROOT, "apps/cli/bin"), path.join(tree, "apps/cli/bin"), { recursive: true });
  await cp(path.join(ROOT, "prisma/migrations"), path.join(tree, "prisma/migrations"), { recursive: true });

  services = await createTestServices();
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  const env = { ...services.env, PORT: String(port), BOOTSTRAP_API_KEY: KEY, NODE_ENV: "production", MAX_BATCH_DELAY_MS: "5" };
  processes = [
    startProcess("api", path.join(tree, "apps/api/dist/main.js"), env, "pipe"),
    startProcess("worker", path.join(tree, "apps/worker/dist/main.js"), env, "pipe"),
  ];
  for (const service of processes) {
    service.child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    service.child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  }
  await waitUntilReady(baseUrl, processes);
}, 240_000);

afterAll(async () => {
  await Promise.all(processes.map((service) => stopProcess(service)));
  await services?.cleanup();
  if (tree) await rm(tree, { recursive: true, force: true });
});

describe("the runtime image's tree (production dependencies and dist/ only)", () => {
  it("holds no TypeScript source, no development tool and no other database's Prisma runtime", async () => {
    for (const workspace of WORKSPACES) {
      expect((await listFiles(path.join(tree, workspace))).filter((file) => file.endsWith(".ts") || file.startsWith("src/"))).toEqual([]);
    }
    const installed = new Set(await readdir(path.join(tree, "node_modules")));
    for (const tool of ["tsx", "typescript", "prisma", "vitest", "turbo", "esbuild"]) expect(installed.has(tool), tool).toBe(false);
    expect((await readdir(path.join(tree, "node_modules/@prisma/client/runtime"))).filter((file) => /mysql|sqlite|sqlserver|cockroach/.test(file))).toEqual([]);
  });

  it("scores a job with the API and a worker run from it by plain node", async () => {
    await call("POST", "/v1/models/iris/versions", await readModel("iris"), "application/octet-stream");
    const { features } = await readFeatureCsv("iris");
    const job = await call<Job>("POST", "/v1/jobs", JSON.stringify({ model: "iris", inputs: features.slice(0, 20).map((f) => ({ features: f })) }));
    const done = await call<Job>("GET", `/v1/jobs/${job.id}?wait=30`);
    expect(done).toMatchObject({ status: "succeeded", counts: { total: 20, succeeded: 20 } });
  });

  it("answers the image's HEALTHCHECK script (0 while the API serves, 1 on a port nobody serves)", async () => {
    const script = path.join(tree, "apps/api/dist/healthcheck.js");
    await expect(run(process.execPath, [script], { env: { ...process.env, PORT: new URL(baseUrl).port } })).resolves.toBeDefined();
    await expect(run(process.execPath, [script], { env: { ...process.env, PORT: String(await freePort()) } })).rejects.toMatchObject({ code: 1 });
  });

  it("runs the CLI from it", async () => {
    const { stdout } = await run(process.execPath, [path.join(tree, "apps/cli/bin/coalesce.mjs"), "--help"]);
    expect(stdout).toContain("Usage: coalesce");
  });
});
