// Starting the API and worker as real processes, for `npm start`, the demo and end-to-end tests.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";

export const ROOT = path.resolve(import.meta.dirname, "..");
/**
 * The services run compiled, as in production: `npm run build` writes each app's dist/ (npm start, test and demo
 * build first). COALESCE_FROM_SOURCE=1 runs their TypeScript under tsx instead, for the dev loop (`npm run
 * dev`); COALESCE_API_MAIN / COALESCE_WORKER_MAIN name any other entry point.
 */
const FROM_SOURCE = process.env.COALESCE_FROM_SOURCE === "1";
export const API_MAIN = process.env.COALESCE_API_MAIN ?? path.join(ROOT, FROM_SOURCE ? "apps/api/src/main.ts" : "apps/api/dist/main.js");
export const WORKER_MAIN = process.env.COALESCE_WORKER_MAIN ?? path.join(ROOT, FROM_SOURCE ? "apps/worker/src/main.ts" : "apps/worker/dist/main.js");
/** Node flags that run the repository's TypeScript: tsx, and the packages' exports resolved to their src/. */
export const SOURCE_NODE_ARGS = ["--conditions=@coalesce/source", "--import", "tsx"];

export type ServiceProcess = { name: string; child: ChildProcess; exited: Promise<number | null> };

/**
 * Node flags the API and worker run with (package.json's start:api/start:worker and the Docker images
 * pass the same). A larger young generation: with a few hundred requests or chunks in flight, most
 * of what a request allocates is still alive at each scavenge of V8's default 16 MB semi-space, so
 * garbage collection took about a third of the API's CPU under load; at 32 MB it takes a fraction.
 */
export const SERVICE_NODE_ARGS = ["--max-semi-space-size=32"];

/** Runs an entry point (compiled JavaScript, or TypeScript under tsx) with extra environment; output goes to `stdio`. */
export function startProcess(
  name: string,
  entry: string,
  env: Record<string, string>,
  stdio: "inherit" | "pipe" | "ignore" = "inherit",
): ServiceProcess {
  // e.g. COALESCE_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the services.
  const nodeArgs = [...SERVICE_NODE_ARGS, ...(process.env.COALESCE_NODE_ARGS?.split(" ").filter(Boolean) ?? [])];
  const loader = entry.endsWith(".ts") ? SOURCE_NODE_ARGS : [];
  if (!existsSync(entry)) throw new Error(`${entry} does not exist: run \`npm run build\` first (or set COALESCE_FROM_SOURCE=1)`);
  const child = spawn(process.execPath, [...nodeArgs, ...loader, entry], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", stdio, stdio],
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { name, child, exited };
}

/** SIGTERM, then wait (SIGKILL after `graceMs`). */
export async function stopProcess(service: ServiceProcess, graceMs = 15_000): Promise<void> {
  if (service.child.exitCode !== null || service.child.signalCode !== null) return;
  service.child.kill("SIGTERM");
  const timer = setTimeout(() => service.child.kill("SIGKILL"), graceMs);
  await service.exited;
  clearTimeout(timer);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Polls GET /readyz until it answers 200; fails early if a process dies. */
export async function waitUntilReady(baseUrl: string, services: ServiceProcess[], timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const service of services) {
      if (service.child.exitCode !== null) throw new Error(`${service.name} exited with code ${service.child.exitCode}`);
    }
    try {
      const response = await fetch(`${baseUrl}/readyz`);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${baseUrl} was not ready within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
