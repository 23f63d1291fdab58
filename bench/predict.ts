// Predict loads for `npm run bench`: single-row `POST /v1/models/{name}/predict` requests through
// the real API and worker, timed by the client from the request's first byte sent to the answer's
// last byte read (a predict request writes nothing to Postgres, so there are no server timestamps
// to read back). The mean batch and the time spent inside the API and the worker come from their
// own Prometheus metrics, as deltas over the load: what a scrape would show an operator.
import { PREDICT_CACHE_HEADER } from "@coalesce/contracts";
import type { Pool } from "undici";
import type { Bench } from "./harness.ts";

/** One predict load as the client saw it, in the shape of a job load's record (bench/batching.ts). */
export type PredictRecord = { provider: string; rows_s: number; latencies: number[]; batchRowsSum: number; ranRows: number; servedMs: ServedMs };

/** Which answer every request of a load must carry in Coalesce-Cache; a load that gets another fails. */
export type ExpectedCache = "hit" | "miss";

export type PredictLoad = {
  model: string;
  /** Request bodies, made before the clock starts and sent in turn. */
  bodies: string[];
  count: number;
  concurrency: number;
  /** `no-cache` to run the model on every request; absent to use the cache. */
  cacheControl?: string;
  expectCache: ExpectedCache;
};

/** Request bodies of one row each: `{"inputs": [row]}`. */
export function makePredictBodies(row: () => unknown, count: number): string[] {
  return Array.from({ length: count }, () => JSON.stringify({ inputs: [row()] }));
}

/** Sends the load's requests, `concurrency` in flight; every answer must be a 200 with one scored row. */
export async function sendPredicts(http: Pool, bench: Bench, load: PredictLoad): Promise<{ latencies: number[]; seconds: number }> {
  const headers: Record<string, string> = { ...bench.headers, "content-type": "application/json" };
  if (load.cacheControl) headers["cache-control"] = load.cacheControl;
  const path = `/v1/models/${load.model}/predict`;
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(load.concurrency, load.count) }, async () => {
      while (next < load.count) {
        const body = load.bodies[next++ % load.bodies.length] as string;
        const sent = performance.now();
        const response = await http.request({ path, method: "POST", headers, body });
        const text = await response.body.text();
        latencies.push(performance.now() - sent);
        if (response.statusCode !== 200) throw new Error(`predict ${load.model}: ${response.statusCode} ${text}`);
        const cache = response.headers[PREDICT_CACHE_HEADER.toLowerCase()];
        if (cache !== load.expectCache) throw new Error(`predict ${load.model}: ${PREDICT_CACHE_HEADER} is ${String(cache)}, expected ${load.expectCache} (is PREDICT_CACHE_TTL_S 0?)`);
        // A row's own error still answers 200: the bench counts only rows that were scored.
        if (text.includes('"error"')) throw new Error(`predict ${load.model}: a row failed: ${text}`);
      }
    }),
  );
  return { latencies, seconds: (performance.now() - started) / 1000 };
}

/** Sum and count of one Prometheus histogram's series that carry every label in `labels`. */
function histogramTotals(metricsText: string, name: string, labels: Record<string, string>): { sum: number; count: number; provider: string[] } {
  const totals = { sum: 0, count: 0, provider: new Set<string>() };
  const line = new RegExp(`^${name}_(sum|count)\\{([^}]*)\\} (\\S+)$`, "gm");
  for (const [, kind, labelText = "", value] of metricsText.matchAll(line)) {
    const series = Object.fromEntries([...labelText.matchAll(/(\w+)="([^"]*)"/g)].map(([, key, v]) => [key, v]));
    if (!Object.entries(labels).every(([key, v]) => series[key] === v)) continue;
    if (kind === "sum") totals.sum += Number(value);
    else totals.count += Number(value);
    if (series.provider) totals.provider.add(series.provider);
  }
  return { sum: totals.sum, count: totals.count, provider: [...totals.provider] };
}

/** What one scrape of the API and of the worker says about predict requests and interactive batches so far. */
export type ServedTotals = {
  /** coalesce_batch_rows for the model's interactive lane: rows run and runs. */
  batchRows: { sum: number; count: number; provider: string[] };
  /** coalesce_batch_wait_seconds (oldest row's wait for its batch to fill) and coalesce_onnx_run_seconds, same lane. */
  batchWaitS: { sum: number; count: number };
  runS: { sum: number; count: number };
  /** The API's coalesce_http_request_duration_seconds for the predict route, and coalesce_predict_duration_seconds (validated to answered). */
  apiRequestS: { sum: number; count: number };
  apiPredictS: { sum: number; count: number };
};

export async function scrape(port: number | string): Promise<string> {
  const url = typeof port === "number" ? `http://127.0.0.1:${port}/metrics` : `${port}/metrics`;
  return (await fetch(url)).text();
}

/** The totals from a scrape of the worker (`workerText`) and of the API (`apiText`), for one model. */
export function servedTotals(workerText: string, apiText: string, model: string): ServedTotals {
  const lane = { model, lane: "interactive" };
  return {
    batchRows: histogramTotals(workerText, "coalesce_batch_rows", lane),
    batchWaitS: histogramTotals(workerText, "coalesce_batch_wait_seconds", lane),
    runS: histogramTotals(workerText, "coalesce_onnx_run_seconds", lane),
    apiRequestS: histogramTotals(apiText, "coalesce_http_request_duration_seconds", { route: "/v1/models/:name/predict", status: "200" }),
    apiPredictS: histogramTotals(apiText, "coalesce_predict_duration_seconds", { protocol: "v1", outcome: "ok" }),
  };
}

/**
 * Mean milliseconds over a load, by where they are spent: inside the API from routing to its
 * response (`api_request`), the part of that from validated to answered (`api_predict`: the cache,
 * the Redis stream, the worker and the reply), and per onnxruntime run the oldest row's wait for
 * its batch and the run itself. Client latency minus api_request is HTTP over loopback and the
 * client's own work.
 */
export type ServedMs = { api_request_mean_ms: number; api_predict_mean_ms: number; batch_wait_mean_ms: number; onnx_run_mean_ms: number; runs: number };

const meanDelta = (after: { sum: number; count: number }, before: { sum: number; count: number }, scale: number) =>
  after.count > before.count ? Math.round(((after.sum - before.sum) * scale * 1000) / (after.count - before.count)) / 1000 : Number.NaN;

/** A load's record: the client's timings, the batches and the time inside the services from the metrics' deltas. */
export function predictRecord(sent: { latencies: number[]; seconds: number }, before: ServedTotals, after: ServedTotals): PredictRecord {
  return {
    provider: after.batchRows.provider.join("+") || "none",
    rows_s: Math.round(sent.latencies.length / sent.seconds),
    // Hundredths of a millisecond: below what loopback HTTP can tell apart, and a readable table.
    latencies: sent.latencies.map((ms) => Math.round(ms * 100) / 100),
    batchRowsSum: after.batchRows.sum - before.batchRows.sum,
    // One run of n rows counts n rows that were each part of a batch of n: rows over runs is the mean batch.
    ranRows: after.batchRows.count - before.batchRows.count,
    servedMs: {
      api_request_mean_ms: meanDelta(after.apiRequestS, before.apiRequestS, 1000),
      api_predict_mean_ms: meanDelta(after.apiPredictS, before.apiPredictS, 1000),
      batch_wait_mean_ms: meanDelta(after.batchWaitS, before.batchWaitS, 1000),
      onnx_run_mean_ms: meanDelta(after.runS, before.runS, 1000),
      runs: after.runS.count - before.runS.count,
    },
  };
}

/** Waits until the API takes predict requests for `model` (a worker's heartbeat is seen), then warms it up. */
export async function warmPredict(http: Pool, bench: Bench, model: string, body: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await http.request({ path: `/v1/models/${model}/predict`, method: "POST", headers: { ...bench.headers, "content-type": "application/json", "cache-control": "no-store" }, body });
    const text = await response.body.text();
    if (response.statusCode === 200) break;
    // 503 until the API sees the worker's heartbeat; a 504 while the worker loads a big model.
    if ((response.statusCode !== 503 && response.statusCode !== 504) || Date.now() > deadline) throw new Error(`predict ${model} never became ready: ${response.statusCode} ${text}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  for (let i = 0; i < 20; i++) {
    const response = await http.request({ path: `/v1/models/${model}/predict`, method: "POST", headers: { ...bench.headers, "content-type": "application/json", "cache-control": "no-store" }, body });
    await response.body.text();
  }
}

/**
 * Puts each body's row in the result cache: asked once (a miss, stored after the answer leaves,
 * so not awaited by the request), then asked until the cache answers it.
 */
export async function warmCache(http: Pool, bench: Bench, model: string, bodies: string[], timeoutMs = 10_000): Promise<void> {
  await sendPredicts(http, bench, { model, bodies, count: bodies.length, concurrency: 1, expectCache: "miss" });
  const deadline = Date.now() + timeoutMs;
  for (const body of bodies) {
    for (;;) {
      const response = await http.request({ path: `/v1/models/${model}/predict`, method: "POST", headers: { ...bench.headers, "content-type": "application/json" }, body });
      await response.body.text();
      if (response.headers[PREDICT_CACHE_HEADER.toLowerCase()] === "hit") break;
      if (Date.now() > deadline) throw new Error(`predict ${model}: a row asked again is still not answered from the cache (PREDICT_CACHE_TTL_S 0, or PREDICT_CACHE_MAX_ENTRY_BYTES too small for its outputs?)`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
