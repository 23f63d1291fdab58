import type { ChunkJob, RowError, TensorRow } from "@coalesce/contracts";
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
import { rowBytes, rowShapeKey, validateRow } from "@coalesce/models";
import type { Logger } from "pino";
import type { BatcherRegistry } from "./batch/batcher-registry.ts";
import type { ModelCache } from "./inference/model-cache.ts";
import type { WorkerMetrics } from "./metrics.ts";

/** What a batcher is handed: one row (every row of a batcher has the same model and shape). */
export type RowWork = { row: TensorRow };

/** What comes back for a row: its outputs and the size of the onnxruntime run it was part of. */
export type RowOutcome = { outputs: TensorRow; runRows: number };

/** Completed chunks, written to Postgres together with the others finishing at the same time. */
export type CompletionWriter = GroupCommit<ChunkCompletion, { status: JobStatus; latencySeconds: number | null } | null>;

/** Chunks about to be scored, read from Postgres (and their jobs marked running) together. */
export type ChunkStarter = GroupCommit<string, ChunkWork | null>;

export type ScoreChunkDeps = {
  db: Database;
  starts: ChunkStarter;
  completions: CompletionWriter;
  models: ModelCache;
  batchers: BatcherRegistry<RowWork, RowOutcome>;
  metrics: WorkerMetrics;
  /** Announces a job that this worker just finished (long-polls answer at once). */
  onJobFinished: (jobId: string) => void;
  logger: Logger;
};

/**
 * The batcher key: rows batch together when they share a model version and a per-row shape; the
 * row's byte size rides along so each batcher can hold batches to MAX_BATCH_BYTES.
 */
export function batcherKey(modelVersionId: string, shapeKey: string, bytes: number): string {
  return `${modelVersionId}|${bytes}|${shapeKey}`;
}

export function parseBatcherKey(key: string): { modelVersionId: string; rowBytes: number } {
  const [modelVersionId = "", bytes = "0"] = key.split("|", 2);
  return { modelVersionId, rowBytes: Number(bytes) };
}

/**
 * Scores the chunks of one BullMQ job, together (their rows meet in the batcher). Every chunk is
 * seen through before a failure is raised, so a retry finds the others done and skips them.
 */
export async function scoreQueueJob(deps: ScoreChunkDeps, payload: ChunkJob): Promise<void> {
  const outcomes = await Promise.allSettled(payload.chunks.map((chunk) => scoreChunk(deps, chunk.chunkId)));
  const failure = outcomes.find((outcome) => outcome.status === "rejected");
  if (failure) throw failure.reason;
}

/**
 * Scores one chunk: reads its rows from Postgres, hands them to the model version's batcher (which
 * coalesces them with other chunks' rows), and stores the per-row results with the job's counts and
 * how the rows ran. Idempotent: a chunk already done (a retry after a crash) is skipped, and so is a
 * chunk whose job ended meanwhile (cancelled, expired).
 */
export async function scoreChunk(deps: ScoreChunkDeps, chunkId: string): Promise<void> {
  const chunk = await deps.starts.add(chunkId);
  if (!chunk || chunk.done || (chunk.jobStatus !== "queued" && chunk.jobStatus !== "running")) return;
  const model = await deps.models.get(chunk.modelVersionId);

  const results: StoredRowResult[] = new Array(chunk.inputs.length);
  const groups = new Map<string, { indexes: number[]; rows: RowWork[] }>();
  chunk.inputs.forEach((row, index) => {
    const parseError = chunk.inputErrors?.[index];
    if (parseError || row === null) {
      results[index] = { error: parseError ?? { code: "invalid_row", message: "the row has no input values" } };
      return;
    }
    // Rows the API accepted are valid; this guards rows written by other paths, one row at a time.
    const issues = validateRow(row, model.version.inputs, `inputs[${chunk.firstRow + index}]`);
    if (issues.length > 0) {
      results[index] = { error: { code: "invalid_row", message: issues.map((i) => `${i.path}: ${i.message}`).join("; ") } };
      return;
    }
    const shape = rowShapeKey(row, model.version.inputs);
    let group = groups.get(shape);
    if (!group) groups.set(shape, (group = { indexes: [], rows: [] }));
    group.indexes.push(index);
    group.rows.push({ row });
  });

  const execution: ChunkExecution = { provider: model.provider, ranRows: 0, runRowsMin: null, runRowsMax: null, runRowsSum: 0 };
  await Promise.all(
    [...groups].map(async ([shape, group]) => {
      const key = batcherKey(chunk.modelVersionId, shape, rowBytes(group.rows[0]?.row ?? {}, model.version.inputs));
      const outcomes = await deps.batchers.get(key).submit(group.rows);
      outcomes.forEach((outcome, i) => {
        const index = group.indexes[i] as number;
        if (!outcome.ok) {
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
    }),
  );
  const done = await deps.completions.add({ chunkId: chunk.id, jobId: chunk.jobId, results, execution });
  const labels = { model: model.version.modelName, version: String(model.version.version), provider: model.provider };
  const failed = results.filter((result) => "error" in result).length;
  deps.metrics.rows.inc({ ...labels, outcome: "succeeded" }, results.length - failed);
  if (failed > 0) deps.metrics.rows.inc({ ...labels, outcome: "failed" }, failed);
  if (done && (done.status === "succeeded" || done.status === "failed")) {
    if (done.latencySeconds !== null) deps.metrics.jobLatency.observe(labels, done.latencySeconds);
    deps.logger.debug({ jobId: chunk.jobId, status: done.status, latencySeconds: done.latencySeconds }, "job finished");
    deps.onJobFinished(chunk.jobId);
  }
}

function inferenceError(error: Error): RowError {
  // onnxruntime's messages run to several lines of C++ context; the first says what went wrong.
  const message = error.message.split("\n")[0] ?? "inference failed";
  return { code: "inference_failed", message };
}

/**
 * Records every row of a chunk as failed, after its retries ran out, so its job can still finish.
 * Returns the job id when that finished the job.
 */
export async function failChunk(db: Database, chunkId: string, reason: string): Promise<string | null> {
  const chunk = await loadChunk(db, chunkId);
  if (!chunk || chunk.done) return null;
  const error: RowError = { code: "chunk_failed", message: reason };
  const done = await completeChunk(db, { chunkId, jobId: chunk.jobId, results: chunk.inputs.map(() => ({ error })) });
  return done && (done.status === "succeeded" || done.status === "failed") ? chunk.jobId : null;
}
