import type { TensorRow } from "@coalesce/contracts";
import { buildBatch, splitOutputs } from "@coalesce/models";
import type { LoadedModel } from "./model-cache.ts";

/** One onnxruntime run over stacked rows; outputs come back split per row, in order. */
export async function runBatch(model: LoadedModel, rows: TensorRow[]): Promise<TensorRow[]> {
  const feeds = buildBatch(rows, model.version.inputs);
  const results = await model.session.run(feeds);
  return splitOutputs(results, model.version.outputs, rows.length);
}
