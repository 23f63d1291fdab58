// How jobs ran, made visible: execution provider (with fallback), batch sizes on each job, the
// MAX_BATCH_BYTES cap, /readyz's workers and both /metrics endpoints.
import type { Job, JobResults } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { waitForJob } from "../support/http.ts";
import { useIrisSuite } from "../support/iris-suite.ts";
import { startTestWorker } from "../support/worker.ts";

const suite = useIrisSuite("execution");

async function submit(rows: number[][], priority?: "interactive" | "batch"): Promise<Job> {
  const response = await suite.api.app.request("/v1/jobs", {
    method: "POST",
    headers: { Authorization: suite.auth, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "iris", priority, inputs: rows.map((f) => ({ features: f })) }),
  });
  expect(response.status).toBe(202);
  return (await response.json()) as Job;
}


describe("execution providers", () => {
  it("falls back from a provider that cannot start to the next, and says which one ran", async () => {
    // webgpu has no adapter on a machine without a GPU; where one is present it runs on it.
    const worker = await startTestWorker(suite.services, { EXECUTION_PROVIDERS: "webgpu,cpu" });
    try {
      expect(["webgpu", "cpu"]).toContain(worker.provider);
      const job = await waitForJob(suite.api, suite.auth, (await submit(suite.features.slice(0, 5))).id);
      expect(job.status).toBe("succeeded");
      expect(job.execution.provider).toBe(worker.provider);
    } finally {
      await worker.close();
    }
  });

  it("refuses to start when no listed provider can run, naming each reason", async () => {
    await expect(startTestWorker(suite.services, { EXECUTION_PROVIDERS: "cuda" })).rejects.toThrow(/no execution provider could open the model \(cuda: /);
  });
});

describe("a running worker", () => {
  let worker: RunningWorker;
  beforeAll(async () => {
    worker = await startTestWorker(suite.services, { MAX_BATCH_ROWS: "64", MAX_BATCH_DELAY_MS: "20" });
  });
  afterAll(async () => {
    await worker?.close();
  });

  it("records on each job the sizes of the runs its rows were part of", async () => {
    const big = await waitForJob(suite.api, suite.auth, (await submit(suite.features)).id);
    expect(big.execution.provider).toBe("cpu");
    expect(big.execution.batch_rows).toMatchObject({ max: 64 });
    expect(big.execution.batch_rows?.min).toBeGreaterThanOrEqual(1);
    expect(big.execution.batch_rows?.mean).toBeGreaterThan(1);

    // Single-row jobs submitted together share runs: their batch sizes show the coalescing.
    const singles = await Promise.all(suite.features.slice(0, 12).map((f) => submit([f])));
    const done = await Promise.all(singles.map((job) => waitForJob(suite.api, suite.auth, job.id)));
    expect(Math.max(...done.map((job) => job.execution.batch_rows?.max ?? 0))).toBeGreaterThan(1);
  });

  it("is listed by /readyz with its provider", async () => {
    const ready = (await (await suite.api.app.request("/readyz")).json()) as { workers: { provider: string }[] };
    expect(ready.workers.map((w) => w.provider)).toContain("cpu");
  });

  it("serves Prometheus metrics: batch sizes, wait and run time, rows, latency, queue, event loop", async () => {
    await waitForJob(suite.api, suite.auth, (await submit(suite.features.slice(0, 3), "batch")).id);
    const text = await (await fetch(`http://127.0.0.1:${worker.metricsPort}/metrics`)).text();
    for (const name of [
      "coalesce_batch_rows_bucket",
      "coalesce_batch_wait_seconds_bucket",
      "coalesce_onnx_run_seconds_bucket",
      "coalesce_rows_scored_total",
      "coalesce_job_latency_seconds_bucket",
      "coalesce_queue_jobs",
      'coalesce_worker_provider_info{provider="cpu"} 1',
      "nodejs_eventloop_lag_p99_seconds",
    ]) {
      expect(text).toContain(name);
    }
    // By lane too: the batch-priority job's runs are the batch lane's, the earlier small jobs' the interactive lane's.
    expect(text).toMatch(/coalesce_batch_rows_count\{model="iris",version="1",provider="cpu",lane="batch"\} [1-9]/);
    expect(text).toMatch(/coalesce_batch_rows_count\{model="iris",version="1",provider="cpu",lane="interactive"\} [1-9]/);
    expect(text).toMatch(/coalesce_job_latency_seconds_count\{model="iris",version="1",provider="cpu",lane="interactive"\} [1-9]/);
  });

  it("the API serves its own metrics", async () => {
    const response = await suite.api.app.request("/metrics");
    expect(response.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await response.text();
    expect(text).toMatch(/coalesce_http_request_duration_seconds_count\{method="POST",route="\/v1\/jobs",status="202"\} [1-9]/);
    expect(text).toMatch(/coalesce_jobs_created_total\{format="json"\} [1-9]/);
    expect(text).toContain('coalesce_workers{provider="cpu"} 1');
    expect(text).toContain('coalesce_queue_jobs{queue="predict",state="waiting"}');
  });
});

describe("coalescing", () => {
  it("gives the same results as running every row alone", async () => {
    const resultsWith = async (env: Record<string, string>) => {
      const worker = await startTestWorker(suite.services, env);
      try {
        const job = await waitForJob(suite.api, suite.auth, (await submit(suite.features)).id);
        const page = (await (await suite.api.app.request(`/v1/jobs/${job.id}/results?limit=1000`, { headers: { Authorization: suite.auth } })).json()) as JobResults;
        return { job, rows: page.data };
      } finally {
        await worker.close();
      }
    };
    const alone = await resultsWith({ MAX_BATCH_ROWS: "1" });
    const coalesced = await resultsWith({ MAX_BATCH_ROWS: "256", MAX_BATCH_DELAY_MS: "20" });
    expect(alone.job.execution.batch_rows).toEqual({ min: 1, mean: 1, max: 1 });
    expect(coalesced.job.execution.batch_rows?.max).toBeGreaterThan(1);
    expect(coalesced.rows.map((row) => row.outputs?.label)).toEqual(alone.rows.map((row) => row.outputs?.label));
    let worst = 0;
    coalesced.rows.forEach((row, i) => {
      const a = alone.rows[i]?.outputs?.probabilities as number[];
      (row.outputs?.probabilities as number[]).forEach((p, k) => (worst = Math.max(worst, Math.abs(p - (a[k] as number)))));
    });
    // Bit for bit, on this model: batching changes nothing a user can see.
    expect(worst).toBe(0);

    // Nor does running the model as several instances, batches side by side.
    const instances = await resultsWith({ MODEL_INSTANCES: "3", MAX_BATCH_ROWS: "8", MAX_BATCH_DELAY_MS: "0" });
    expect(instances.job.status).toBe("succeeded");
    expect(instances.job.execution.batch_rows?.max).toBeLessThanOrEqual(8);
    expect(instances.rows).toEqual(coalesced.rows);
  });
});

describe("MAX_BATCH_BYTES", () => {
  it("caps the rows of a run by their input bytes", async () => {
    // An iris row is 4 float32 = 16 bytes: 64 bytes allows 4 rows per run.
    const worker = await startTestWorker(suite.services, { MAX_BATCH_BYTES: "64", MAX_BATCH_DELAY_MS: "20" });
    try {
      const job = await waitForJob(suite.api, suite.auth, (await submit(suite.features.slice(0, 40))).id);
      expect(job.status).toBe("succeeded");
      expect(job.execution.batch_rows?.max).toBe(4);
    } finally {
      await worker.close();
    }
  });
});
