import { isTransientError, type ChunkJob, type RowError, type TensorSpec } from "@coalesce/contracts";
import {
  completeChunk,
  loadChunk,
  type ChunkCompletion,
  type ChunkExecution,
  type ChunkWork,
  type Database,
  type GroupCommit,
  type JobStatus,
  type StoredRowResult,
} from "@coalesce/db";
import { packRows, PackedRows, validateRow } from "@coalesce/models";
import { UnrecoverableError } from "bullmq";
import type { Logger } from "pino";
import { submitRows, type RowBatchers } from "./batch/rows.ts";
import type { AliasWatch } from "./aliases/watch.ts";
import type { ModelCache } from "./inference/model-cache.ts";
import type { WorkerMetrics } from "./metrics.ts";

/** Completed chunks, written to Postgres together with the others finishing at the same time. */
export type CompletionWriter = GroupCommit<ChunkCompletion, { status: JobStatus; latencySeconds: number | null } | null>;

/**
 * A chunk about to be scored; `restarted` when BullMQ's stalled check has handed its queue job back
 * (a worker died holding it), so the start is counted (see startChunks).
 */
export type ChunkStart = { chunkId: string; restarted: boolean };

/** Chunks about to be scored, read from Postgres (and their jobs marked running) together. */
export type ChunkStarter = GroupCommit<ChunkStart, ChunkWork | null>;

export type ScoreChunkDeps = {
  db: Database;
  starts: ChunkStarter;
  completions: CompletionWriter;
  models: ModelCache;
  batchers: RowBatchers;
  metrics: WorkerMetrics;
  /** Announces a job that this worker just finished (long-polls answer at once). */
  onJobFinished: (jobId: string) => void;
  /** MAX_CHUNK_STARTS: a chunk started more often than this, its workers dying each time, is failed. */
  maxChunkStarts: number;
  /** Counts and shadows the rows of jobs that came through an alias (after they are stored). */
  watch?: AliasWatch | undefined;
  logger: Logger;
};

/**
 * Scores the chunks of one BullMQ job, together (their rows meet in the batcher). Every chunk is
 * seen through before a failure is raised, so a retry finds the others done and skips them. A
 * transient infrastructure failure of any chunk is the one raised: the queue job is then retried
 * without spending an attempt, rather than failed, so a chunk that only met an outage is never
 * recorded as failed along with a sibling that failed for a reason of its own.
 */
export async function scoreQueueJob(deps: ScoreChunkDeps, payload: ChunkJob, restarted = false): Promise<void> {
  const outcomes = await Promise.allSettled(payload.chunks.map((chunk) => scoreChunk(deps, chunk.chunkId, restarted)));
  const failures = outcomes.flatMap((outcome) => (outcome.status === "rejected" ? [outcome.reason as unknown] : []));
  if (failures.length > 0) throw failures.find(isTransientError) ?? failures[0];
}

/**
 * Scores one chunk: reads its rows from Postgres, hands them to the model version's batcher (which
 * coalesces them with other chunks' rows), and stores the per-row results with the job's counts and
 * how the rows ran. Idempotent: a chunk already done (a retry after a crash) is skipped, and so is a
 * chunk whose job ended meanwhile (cancelled, expired). A chunk whose workers kept dying while they
 * held it is failed instead of started once more (`restarted`: see ChunkStart).
 */
export async function scoreChunk(deps: ScoreChunkDeps, chunkId: string, restarted = false): Promise<void> {
  const chunk = await deps.starts.add({ chunkId, restarted });
  if (!chunk || chunk.done || (chunk.jobStatus !== "queued" && chunk.jobStatus !== "running")) return;
  // Its first start, and one more per worker that died holding it.
  const starts = chunk.restarts + 1;
  if (starts > deps.maxChunkStarts) {
    // Before the model is touched: running these rows is what is suspected of killing the workers.
    const reason = `started ${starts} times without finishing; every worker that took it died (a crash in the model?)`;
    deps.logger.error({ chunkId, jobId: chunk.jobId, starts, maxChunkStarts: deps.maxChunkStarts }, `chunk failed: ${reason}`);
    const finishedJob = await failChunk(deps.db, chunk.id, reason);
    if (finishedJob) deps.onJobFinished(finishedJob);
    return;
  }
  const model = await deps.models.get(chunk.modelVersionId);

  const results: StoredRowResult[] = new Array(chunk.rowCount);
  const rows = readRows(chunk, model.version.inputs, results);
  const toRun: number[] = [];
  for (let index = 0; index < chunk.rowCount; index++) {
    if (results[index]) continue;
    const parseError = chunk.inputErrors?.[index];
    if (parseError || !rows.isPresent(index)) {
      results[index] = { error: parseError ?? { code: "invalid_row", message: "the row has no input values" } };
      continue;
    }
    toRun.push(index);
  }

  const execution: ChunkExecution = { provider: model.provider, ranRows: 0, runRowsMin: null, runRowsMax: null, runRowsSum: 0 };
  // A batch that could not run for an infrastructure reason says nothing about its rows.
  let unavailable: Error | undefined;
  const outcomes = await submitRows(deps.batchers, chunk.modelVersionId, rows, toRun, chunk.jobPriority, { tenant: chunk.tenantId, job: chunk.jobId });
  outcomes.forEach((outcome, i) => {
    const index = toRun[i]!;
    if (!outcome.ok) {
      if (isTransientError(outcome.error)) unavailable ??= outcome.error;
      results[index] = { error: inferenceError(outcome.error) };
      return;
    }
    results[index] = { outputs: outcome.value.outputs };
    const runRows = outcome.value.runRows;
    execution.ranRows++;
    execution.runRowsSum += runRows;
    execution.runRowsMin = Math.min(execution.runRowsMin ?? runRows, runRows);
    execution.runRowsMax = Math.max(execution.runRowsMax ?? runRows, runRows);
  });
  if (unavailable) throw unavailable;
  const done = await deps.completions.add({ chunkId: chunk.id, jobId: chunk.jobId, results, execution });
  // Only the completion that counted (null: another worker's, taking the chunk over, got there first).
  if (chunk.alias && done) deps.watch?.observe({ alias: chunk.alias, modelVersionId: chunk.modelVersionId, version: model.version.version, rows, indexes: toRun, outcomes });
  const labels = { model: model.version.modelName, version: String(model.version.version), provider: model.provider };
  const failed = results.filter((result) => "error" in result).length;
  deps.metrics.rows.inc({ ...labels, outcome: "succeeded" }, results.length - failed);
  if (failed > 0) deps.metrics.rows.inc({ ...labels, outcome: "failed" }, failed);
  if (done && (done.status === "succeeded" || done.status === "failed")) {
    deps.metrics.jobsFinished.inc({ lane: chunk.jobPriority, status: done.status });
    if (done.latencySeconds !== null) deps.metrics.jobLatency.observe({ ...labels, lane: chunk.jobPriority }, done.latencySeconds);
    deps.logger.debug({ jobId: chunk.jobId, status: done.status, latencySeconds: done.latencySeconds }, "job finished");
    deps.onJobFinished(chunk.jobId);
  }
}

/**
 * A chunk's rows, packed. Rows the API stored are packed already (and were validated before they
 * were); a chunk stored as JSON rows (written before rows were packed) is validated row by row here,
 * each invalid row's error put in `results`, and the rest packed.
 */
function readRows(chunk: ChunkWork, inputs: readonly TensorSpec[], results: StoredRowResult[]): PackedRows {
  if (chunk.packedInputs) {
    let rows: PackedRows;
    try {
      rows = PackedRows.decode(chunk.packedInputs, inputs);
    } catch (error) {
      // The bytes will not read any better on a retry.
      throw new UnrecoverableError((error as Error).message);
    }
    if (rows.rowCount !== chunk.rowCount) throw new UnrecoverableError(`stored rows cannot be read: ${rows.rowCount} rows where the chunk has ${chunk.rowCount}`);
    return rows;
  }
  const valid = (chunk.inputs ?? []).map((row, index) => {
    if (row === null || chunk.inputErrors?.[index]) return null;
    const issues = validateRow(row, inputs, `inputs[${chunk.firstRow + index}]`);
    if (issues.length === 0) return row;
    results[index] = { error: { code: "invalid_row", message: issues.map((i) => `${i.path}: ${i.message}`).join("; ") } };
    return null;
  });
  return PackedRows.decode(packRows(valid, inputs), inputs);
}

export function inferenceError(error: Error): RowError {
  // onnxruntime's messages run to several lines of C++ context; the first says what went wrong.
  const message = error.message.split("\n")[0] ?? "inference failed";
  return { code: "inference_failed", message };
}

/**
 * Records every row of a chunk as failed, after it failed for a reason of its own (its stored rows
 * cannot be read, its attempts ran out on a non-transient error, it was started MAX_CHUNK_STARTS
 * times and every worker holding it died), so its job can still finish. Never called for an
 * infrastructure failure: not for an outage of Postgres or Redis (the chunk is held back), nor for
 * BullMQ's stall limit (a stall is a worker lost, not the chunk's fault; the reconciler brings such
 * a queue job back). Returns the job id when that finished the job.
 */
export async function failChunk(db: Database, chunkId: string, reason: string): Promise<string | null> {
  const chunk = await loadChunk(db, chunkId);
  if (!chunk || chunk.done) return null;
  const error: RowError = { code: "chunk_failed", message: reason };
  const done = await completeChunk(db, { chunkId, jobId: chunk.jobId, results: Array.from({ length: chunk.rowCount }, () => ({ error })) });
  return done && (done.status === "succeeded" || done.status === "failed") ? chunk.jobId : null;
}
