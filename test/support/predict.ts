import { buildOnnxModel } from "../../packages/models/src/tiny-onnx.ts";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";

// Where the predict path keeps its requests and backlog, as the queue package names them.
export { PREDICT_GROUP, predictBacklogKey, predictStreamKey } from "@coalesce/queue";

/**
 * A worker's Prometheus sample `name` (e.g. `coalesce_batch_rows_sum`), summed over every series
 * whose labels include `labels`; 0 when there is none yet.
 */
export async function readWorkerMetric(worker: Pick<RunningWorker, "metricsPort">, name: string, labels: Record<string, string> = {}): Promise<number> {
  if (worker.metricsPort === null) throw new Error("the worker serves no /metrics: start it with METRICS_PORT=0 (a free port)");
  const text = await (await fetch(`http://127.0.0.1:${worker.metricsPort}/metrics`)).text();
  const wanted = Object.entries(labels).map(([label, value]) => `${label}="${value}"`);
  let total = 0;
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const series = match[2] ?? "";
    if (wanted.every((pair) => series.includes(pair))) total += Number(match[3]);
  }
  return total;
}

/** Polls `probe` until it is true; fails naming `what` after `timeoutMs` (a guard against a hang, not a timing check). */
export async function waitUntil(what: string, probe: () => Promise<boolean>, timeoutMs: number, pollMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/**
 * `y = a + b` over [batch, n] and [batch, m], open dimensions: each row passes validation, and one
 * whose two lengths do not broadcast fails in onnxruntime (a row's own inference error).
 */
export const addModel = buildOnnxModel({
  inputs: [
    { name: "a", type: "float32", shape: ["batch", "n"] },
    { name: "b", type: "float32", shape: ["batch", "m"] },
  ],
  outputs: [{ name: "y", type: "float32", shape: ["batch", "k"] }],
  nodes: [{ opType: "Add", inputs: ["a", "b"], outputs: ["y"] }],
});
