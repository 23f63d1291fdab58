import pino from "pino";
import { loadWorkerEnv } from "../../apps/worker/src/env.ts";
import { startWorker, type RunningWorker } from "../../apps/worker/src/worker.ts";
import type { TestServices } from "./services.ts";

/** A worker in this process on the test's own services; `env` overrides its settings. */
export function startTestWorker(services: TestServices, env: Record<string, string> = {}): Promise<RunningWorker> {
  return startWorker(loadWorkerEnv({ ...services.env, MIGRATE_ON_START: "false", ...env }), pino({ level: "silent" }));
}
