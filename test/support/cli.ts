import { spawn } from "node:child_process";
import path from "node:path";
import { API_MAIN, freePort, ROOT, startProcess, waitUntilReady, WORKER_MAIN, type ServiceProcess } from "../../scripts/processes.ts";
import { CoalesceApiError, type CoalesceClient } from "@coalesce/client";
import type { TensorRow } from "@coalesce/contracts";

const CLI = path.join(ROOT, "apps/cli/bin/coalesce.mjs");

/** What a run of the command left: its exit status and everything it printed. */
export type CliRun = { code: number | null; stdout: string; stderr: string };

/**
 * `coalesce ...args` as a user runs it, from the repository root, with `env` added to this
 * process' environment and `stdin` piped in (an empty stdin when it is left out).
 */
export function runCli(args: string[], env: Record<string, string>, stdin?: string): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: [stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
    if (stdin !== undefined) child.stdin?.end(stdin);
  });
}

/** The API and a worker as `npm start` runs them, on a free port, with everything they print kept. */
export type CliServices = { baseUrl: string; processes: ServiceProcess[]; output(): string };

export async function startCliServices(env: Record<string, string>): Promise<CliServices> {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const full = { ...env, PORT: String(port) };
  const processes = [startProcess("api", API_MAIN, full, "pipe"), startProcess("worker", WORKER_MAIN, full, "pipe")];
  let output = "";
  for (const service of processes) {
    service.child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    service.child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  }
  await waitUntilReady(baseUrl, processes);
  return { baseUrl, processes, output: () => output };
}

/**
 * Waits until a worker answers predictions for `model` (ready is not the same as a worker having
 * said it serves them): retries the 503 of "no worker yet", for up to 30 s.
 */
export async function waitForPredictions(client: CoalesceClient, model: Parameters<CoalesceClient["predict"]>[0], row: TensorRow): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await client.predict(model, [row], { cache: "skip" });
      return;
    } catch (error) {
      if (!(error instanceof CoalesceApiError && error.status === 503) || attempt >= 300) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
