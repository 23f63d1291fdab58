export type { InferenceSession as OrtInferenceSession, Tensor as OrtTensor } from "onnxruntime-node";
export { createModelStore, FOLDER_MODEL_FILE, hashModelFolder, type ModelFile, type ModelStore, type StagingFolder, type StoredModel } from "./model-store.ts";
export { InvalidArchiveError, storeModelArchive, unpackModelArchive, type ArchiveLimits, type UnpackedModel } from "./model-archive.ts";
export { findExternalData, MalformedModelError, type ExternalDataRef } from "./external-data.ts";
export { InvalidModelError, inspectModel, maxBatchRows } from "./inspect-model.ts";
export {
  EXECUTION_PROVIDERS,
  GRAPH_OPTIMIZATION_LEVELS,
  loadSession,
  loadSessionWithFallback,
  probeExecutionProviders,
  type ExecutionProvider,
  type FallbackSession,
  type GraphOptimizationLevel,
  type LoadSessionOptions,
} from "./session.ts";
export { MAX_ISSUES_PER_ROW, rowShapeKey, validateRow, type RowIssue } from "./validate-row.ts";
export { buildBatch, buildPackedBatch, splitOutputs, type OutputTensor, type PackedRowRef } from "./tensor.ts";
export { packRows, PackedRows } from "./packed-rows.ts";
export { DEFAULT_MODEL_STORE_DIR } from "./defaults.ts";
