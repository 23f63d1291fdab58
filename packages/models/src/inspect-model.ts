import * as ort from "onnxruntime-node";
import { INPUT_TENSOR_TYPES, type ModelSignature, type TensorSpec } from "@coalesce/contracts";
import { buildSessionOptions } from "./session.ts";

/** The uploaded bytes cannot serve batch predictions. `message` is written for the user who uploaded them. */
export class InvalidModelError extends Error {
  override readonly name = "InvalidModelError";
}

const SUPPORTED_INPUT_TYPES: ReadonlySet<string> = new Set(INPUT_TENSOR_TYPES);

/**
 * Loads the model (its bytes, or the path of its .onnx file when it keeps data in files beside it)
 * once to prove ONNX Runtime accepts it and reads its signature. Rejects models
 * this service cannot feed: non-tensor values, input element types rows cannot carry, and inputs
 * without a leading batch dimension.
 */
export async function inspectModel(model: Uint8Array | string): Promise<ModelSignature> {
  // ORT's own message for empty input ("Model data pointer is null") would only confuse a user.
  if (typeof model !== "string" && model.byteLength === 0) throw new InvalidModelError("the file is empty, not an ONNX model");

  let session: ort.InferenceSession;
  try {
    // A path, not bytes, for a model with external data: ORT finds its data files beside the path.
    session = typeof model === "string" ? await ort.InferenceSession.create(model, buildSessionOptions()) : await ort.InferenceSession.create(model, buildSessionOptions());
  } catch (error) {
    throw new InvalidModelError(`the file is not a loadable ONNX model: ${firstLine(error)}`, { cause: error });
  }
  try {
    const signature = {
      inputs: session.inputMetadata.map((m) => toTensorSpec(m, "input")),
      outputs: session.outputMetadata.map((m) => toTensorSpec(m, "output")),
    };
    for (const input of signature.inputs) checkInput(input);
    return signature;
  } finally {
    await session.release();
  }
}

/**
 * The most rows one run of this model may take: 1 when some input fixes its batch dimension to 1
 * (common in exported models), otherwise unbounded.
 */
export function maxBatchRows(signature: ModelSignature): number {
  return signature.inputs.some((input) => input.shape[0] === 1) ? 1 : Infinity;
}

function toTensorSpec(metadata: ort.InferenceSession.ValueMetadata, role: "input" | "output"): TensorSpec {
  if (!metadata.isTensor) {
    throw new InvalidModelError(
      `${role} '${metadata.name}' is not a tensor (sequences and maps are not supported); every input and output must be a tensor`,
    );
  }
  // ORT reports a dimension with neither a size nor a name as "" and keeps named ones as written.
  return { name: metadata.name, type: metadata.type, shape: [...metadata.shape] };
}

function checkInput(input: TensorSpec): void {
  if (!SUPPORTED_INPUT_TYPES.has(input.type)) {
    throw new InvalidModelError(
      `input '${input.name}' has element type ${input.type}; supported input types are ${INPUT_TENSOR_TYPES.join(", ")}`,
    );
  }
  const batchDim = input.shape[0];
  if (batchDim === undefined) {
    // ORT reports an undeclared shape as [] too, so this also covers inputs of unknown rank.
    throw new InvalidModelError(
      `input '${input.name}' has no batch dimension (it is a scalar or its shape is not declared); the first dimension of every input must be the batch dimension`,
    );
  }
  if (typeof batchDim === "number" && batchDim !== 1 && batchDim !== -1) {
    throw new InvalidModelError(
      `input '${input.name}' has shape [${input.shape.join(", ")}], with its first dimension fixed to ${batchDim}; the first dimension of every input must be the batch dimension (symbolic, or 1)`,
    );
  }
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n", 1)[0]?.trim() || "unknown error";
}
