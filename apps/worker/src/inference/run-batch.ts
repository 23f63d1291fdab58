import type { TensorRow } from "@coalesce/contracts";
import { buildPackedBatch, splitOutputs, type PackedRowRef } from "@coalesce/models";
import type { LoadedModel } from "./model-cache.ts";

/** One onnxruntime run over stacked rows; outputs come back split per row, in order. */
export async function runBatch(model: LoadedModel, rows: readonly PackedRowRef[]): Promise<TensorRow[]> {
  const feeds = buildPackedBatch(rows, model.version.inputs);
  const results = await model.session.run(feeds);
  return splitOutputs(results, model.version.outputs, rows.length);
}
