import type { ChunkJob, RowError, TensorRow } from "@coalesce/contracts";
import { completeChunk, loadChunk, markJobRunning, type Database, type StoredRowResult } from "@coalesce/db";
import { rowShapeKey, validateRow } from "@coalesce/models";
import type { Logger } from "pino";
import type { BatcherRegistry } from "./batch/batcher-registry.ts";
import type { ModelCache } from "./inference/model-cache.ts";

/** What a batcher is handed: one row plus the model that must run it (same for the whole batcher). */
export type RowWork = { row: TensorRow };

export type ScoreChunkDeps = {
  db: Database;
  models: ModelCache;
  batchers: BatcherRegistry<RowWork, TensorRow>;
  logger: Logger;
};

/**
 * Scores one chunk: reads its rows from Postgres, hands them to the model version's batcher (which
 * coalesces them with other chunks' rows), and stores the per-row results with the job's counts.
 * Idempotent: a chunk already done (a retry after a crash) is skipped.
 */
export async function scoreChunk(deps: ScoreChunkDeps, payload: ChunkJob): Promise<void> {
  const chunk = await loadChunk(deps.db, payload.chunkId);
  if (!chunk || chunk.done || (chunk.jobStatus !== "queued" && chunk.jobStatus !== "running")) return;
  await markJobRunning(deps.db.prisma, chunk.jobId);
  const model = await deps.models.get(chunk.modelVersionId);

  const results: StoredRowResult[] = new Array(chunk.inputs.length);
  // Rows the API accepted are valid; this guards rows written by other paths, one row at a time.
  const groups = new Map<string, { indexes: number[]; rows: RowWork[] }>();
  chunk.inputs.forEach((row, index) => {
    const parseError = chunk.inputErrors?.[index];
    if (parseError || row === null) {
      results[index] = { error: parseError ?? { code: "invalid_row", message: "the row has no input values" } };
      return;
    }
    const issues = validateRow(row, model.version.inputs, `inputs[${chunk.firstRow + index}]`);
    if (issues.length > 0) {
      results[index] = { error: { code: "invalid_row", message: issues.map((i) => `${i.path}: ${i.message}`).join("; ") } };
      return;
    }
    const key = `${chunk.modelVersionId}|${rowShapeKey(row, model.version.inputs)}`;
    let group = groups.get(key);
    if (!group) groups.set(key, (group = { indexes: [], rows: [] }));
    group.indexes.push(index);
    group.rows.push({ row });
  });
  await Promise.all(
    [...groups].map(async ([key, group]) => {
      const outcomes = await deps.batchers.get(key).submit(group.rows);
      outcomes.forEach((outcome, i) => {
        const index = group.indexes[i] as number;
        results[index] = outcome.ok ? { outputs: outcome.value } : { error: inferenceError(outcome.error) };
      });
    }),
  );
  const status = await completeChunk(deps.db, { chunkId: chunk.id, jobId: chunk.jobId, results });
  if (status === "succeeded" || status === "failed") {
    deps.logger.info({ status }, "job finished");
  }
}

function inferenceError(error: Error): RowError {
  // onnxruntime's messages run to several lines of C++ context; the first says what went wrong.
  const message = error.message.split("\n")[0] ?? "inference failed";
  return { code: "inference_failed", message };
}

/** Records every row of a chunk as failed, after its retries ran out, so its job can still finish. */
export async function failChunk(db: Database, chunkId: string, reason: string): Promise<void> {
  const chunk = await loadChunk(db, chunkId);
  if (!chunk || chunk.done) return;
  const error: RowError = { code: "chunk_failed", message: reason };
  await completeChunk(db, { chunkId, jobId: chunk.jobId, results: chunk.inputs.map(() => ({ error })) });
}
