import type { TensorRow } from "@coalesce/contracts";
import type { PackedRowRef, PackedRows } from "@coalesce/models";
import type { BatcherRegistry } from "./batcher-registry.ts";
import type { ItemResult, Lane, ShareKey } from "./batcher.ts";

/** What a batcher is handed: one row of packed rows (every row of a batcher has the same model and shape). */
export type RowWork = PackedRowRef;

/** What comes back for a row: its outputs, and the size and run time of the onnxruntime run it was part of. */
export type RowOutcome = { outputs: TensorRow; runRows: number; runMs: number };

/** The worker's batchers, one per model version and row shape (see batcherKey). */
export type RowBatchers = BatcherRegistry<RowWork, RowOutcome>;

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
 * Hands rows `indexes` of `rows` to the model version's batchers, one batcher per row shape, in
 * `lane`, and resolves with each row's outcome in the order of `indexes` once all have run. The
 * one way chunks and predict requests reach the batchers. `share` names the tenant and job the rows
 * are scored for, so batches take turns between them (see BatcherOptions.fairShare).
 */
export async function submitRows(
  batchers: RowBatchers,
  modelVersionId: string,
  rows: PackedRows,
  indexes: readonly number[],
  lane: Lane,
  share?: ShareKey,
): Promise<ItemResult<RowOutcome>[]> {
  const groups = new Map<string, number[]>();
  for (let i = 0; i < indexes.length; i++) {
    const shape = rows.shapeKey(indexes[i]!);
    const group = groups.get(shape);
    if (group) group.push(i);
    else groups.set(shape, [i]);
  }
  const outcomes = new Array<ItemResult<RowOutcome>>(indexes.length);
  await Promise.all(
    [...groups].map(async ([shape, positions]) => {
      const key = batcherKey(modelVersionId, shape, rows.rowBytes(indexes[positions[0]!]!));
      const results = await batchers.get(key).submit(
        positions.map((position) => ({ rows, index: indexes[position]! })),
        lane,
        share,
      );
      results.forEach((result, i) => (outcomes[positions[i]!] = result));
    }),
  );
  return outcomes;
}
