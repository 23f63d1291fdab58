// What a worker writes to its log about batches: one debug line each, and one info summary per
// LOG_SUMMARY_INTERVAL_S (none while idle, the last one at shutdown). Read from pino's output as an
// operator's log shipper would get it, of a worker in this process on the test's own services.
import { Writable } from "node:stream";
import { findJob } from "@coalesce/db";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { loadWorkerEnv } from "../../apps/worker/src/env.ts";
import { startWorker, type RunningWorker } from "../../apps/worker/src/worker.ts";
import { submitIrisJob, useIrisWorkerSuite } from "../support/worker.ts";

type LogLine = { level: number; msg: string; [field: string]: unknown };
type Group = { model: string; version: string; lane: string; rows: number; batches: number; meanBatchRows: number; failedRows: number };
type Summary = LogLine & { seconds: number; rows: number; batches: number; meanBatchRows: number; failedRows: number; groups: Group[] };

const DEBUG = 20;
const INFO = 30;

const suite = useIrisWorkerSuite("log-summary");

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A worker whose log lines (at `level` and above) are collected as parsed JSON. */
async function loggedWorker(level: string, env: Record<string, string>): Promise<{ worker: RunningWorker; lines: LogLine[] }> {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n")) if (line) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  const worker = await startWorker(loadWorkerEnv({ ...suite.services.env, MIGRATE_ON_START: "false", ...env }), pino({ level }, stream));
  return { worker, lines };
}

async function scoreIrisJob(rows: number, chunkRows: number): Promise<void> {
  const jobId = await submitIrisJob(suite, rows, chunkRows);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const found = await findJob(suite.db, suite.tenantId, jobId);
    if (found?.status === "succeeded") return;
    if (found && found.status !== "running" && found.status !== "queued") throw new Error(`job ${jobId} ended ${found.status}`);
    if (Date.now() > deadline) throw new Error(`job ${jobId} is still ${found?.status}`);
    await sleep(25);
  }
}

const summaries = (lines: LogLine[]) => lines.filter((line) => line.msg.startsWith("batches in the last")) as Summary[];
const batchLines = (lines: LogLine[]) => lines.filter((line) => line.msg === "batch");

describe("the worker's batch log", () => {
  it("writes each batch at debug, and one info summary of them all at shutdown when the interval has not come round", async () => {
    const { worker, lines } = await loggedWorker("debug", { LOG_SUMMARY_INTERVAL_S: "3600", MAX_BATCH_ROWS: "8", WORKER_CONCURRENCY: "4" });
    try {
      await scoreIrisJob(200, 4);
      expect(summaries(lines)).toEqual([]);
    } finally {
      await worker.close();
    }
    const batches = batchLines(lines);
    expect(batches.length).toBeGreaterThanOrEqual(200 / 8);
    expect(batches.every((line) => line.level === DEBUG)).toBe(true);
    expect(batches.reduce((sum, line) => sum + (line.rows as number), 0)).toBe(200);

    const written = summaries(lines);
    expect(written).toHaveLength(1);
    const [summary] = written as [Summary];
    expect(summary).toMatchObject({ level: INFO, rows: 200, batches: batches.length, failedRows: 0 });
    expect(summary.meanBatchRows).toBeCloseTo(200 / batches.length, 1);
    expect(summary.groups).toEqual([expect.objectContaining({ model: "iris", version: "1", lane: "batch", rows: 200, batches: batches.length, failedRows: 0 })]);
    // Written after the batches, before the worker says it stopped.
    expect(lines.indexOf(summary)).toBeLessThan(lines.findIndex((line) => line.msg === "worker stopped"));
  });

  it("at LOG_LEVEL=info writes no line per batch, a summary per interval with batches in it, and nothing while idle", async () => {
    const { worker, lines } = await loggedWorker("info", { LOG_SUMMARY_INTERVAL_S: "1", MAX_BATCH_ROWS: "8", WORKER_CONCURRENCY: "4" });
    try {
      await sleep(2_200);
      expect(summaries(lines)).toEqual([]);
      await scoreIrisJob(100, 4);
      // The interval in which the job ran ends within a second.
      const deadline = Date.now() + 5_000;
      while (summaries(lines).reduce((sum, line) => sum + line.rows, 0) < 100 && Date.now() < deadline) await sleep(50);
      const afterJob = summaries(lines).length;
      expect(summaries(lines).reduce((sum, line) => sum + line.rows, 0)).toBe(100);
      await sleep(2_200);
      // Idle again: no more summaries.
      expect(summaries(lines)).toHaveLength(afterJob);
    } finally {
      await worker.close();
    }
    expect(batchLines(lines)).toEqual([]);
    expect(summaries(lines).every((line) => line.level === INFO && line.batches > 0 && line.seconds > 0)).toBe(true);
  });
});
