// The Open Inference Protocol (KServe V2) speaks in whole tensors: one per input, the batch as its
// first dimension, data flat or nested. The predict engine speaks in rows. These functions convert
// between the two and nothing else (no I/O), so the routes stay thin and the rules are unit-tested.
import type { PredictRowResult, TensorRow, TensorSpec, TensorValue } from "@coalesce/contracts";
import { validateRow } from "@coalesce/models";

/** A request the model cannot take as sent; answered 400 `{"error": message}`. */
export class V2RequestError extends Error {
  override readonly name = "V2RequestError";
}

/** ONNX Runtime's element type names -> the protocol's tensor data types. */
const V2_DATATYPES: Readonly<Record<string, string>> = {
  bool: "BOOL",
  uint8: "UINT8",
  uint16: "UINT16",
  uint32: "UINT32",
  uint64: "UINT64",
  int8: "INT8",
  int16: "INT16",
  int32: "INT32",
  int64: "INT64",
  float16: "FP16",
  float32: "FP32",
  float64: "FP64",
  string: "BYTES",
};

/**
 * The protocol's data type for one of our tensor types. ONNX Runtime knows a few types the
 * protocol's table lacks (int4, uint4); those are named the same way, upper-cased, rather than
 * making the whole model's metadata unreadable.
 */
export function toV2Datatype(type: string): string {
  return V2_DATATYPES[type] ?? type.toUpperCase();
}

/** A shape as the protocol writes it: -1 for the batch dimension and for every dimension of unknown size. */
export function toV2Shape(shape: readonly (number | string)[]): number[] {
  return shape.map((dim, d) => (d === 0 || typeof dim !== "number" || dim < 0 ? -1 : dim));
}

/** One input or output in a model metadata answer. */
export type V2TensorMetadata = { name: string; datatype: string; shape: number[] };

export function toV2TensorMetadata(spec: TensorSpec): V2TensorMetadata {
  return { name: spec.name, datatype: toV2Datatype(spec.type), shape: toV2Shape(spec.shape) };
}

/** One input tensor of an inference request, after the body's schema has checked its fields' types. */
export type V2InputTensor = { name: string; shape: number[]; datatype: string; data: unknown };

/** Enough to fix a request without answering pages of errors for a wholly wrong one. */
const MAX_REPORTED_ISSUES = 5;

/**
 * Turns a request's input tensors into rows, one per index of the batch (first) dimension, each
 * value nested to the model input's per-row shape, exactly as a JSON job's rows are; then checks
 * every element as a job's rows are checked (validateRow). Throws a V2RequestError naming the
 * input (and the element) for anything that does not fit: an unknown, missing or repeated input,
 * another datatype than the model's, a shape that does not fit the model's, data whose element
 * count or nesting does not match the shape, inputs that disagree on the batch size, or more rows
 * than `maxRows`.
 */
export function rowsFromV2Inputs(tensors: readonly V2InputTensor[], specs: readonly TensorSpec[], maxRows: number): TensorRow[] {
  const byName = new Map<string, V2InputTensor>();
  const modelInputs = specs.map((spec) => spec.name).join(", ");
  for (const tensor of tensors) {
    if (byName.has(tensor.name)) throw new V2RequestError(`input '${tensor.name}' is given twice`);
    if (!specs.some((spec) => spec.name === tensor.name)) {
      throw new V2RequestError(`unknown input '${tensor.name}'; the model's inputs are: ${modelInputs}`);
    }
    byName.set(tensor.name, tensor);
  }
  const missing = specs.filter((spec) => !byName.has(spec.name)).map((spec) => `'${spec.name}'`);
  if (missing.length > 0) throw new V2RequestError(`missing input ${missing.join(", ")}; the model's inputs are: ${modelInputs}`);

  const inputs = specs.map((spec) => {
    const tensor = byName.get(spec.name)!;
    checkDatatypeAndShape(tensor, spec);
    return { spec, tensor, elements: flattenData(tensor) };
  });

  const batch = inputs[0]?.tensor.shape[0] ?? 0;
  const other = inputs.find(({ tensor }) => tensor.shape[0] !== batch);
  if (other) {
    throw new V2RequestError(
      `the inputs disagree on the batch size (their first dimension): '${inputs[0]!.spec.name}' has ${batch}, '${other.spec.name}' has ${other.tensor.shape[0]}`,
    );
  }
  if (batch === 0) throw new V2RequestError("the batch size (the inputs' first dimension) is 0; send at least one row");
  if (batch > maxRows) {
    throw new V2RequestError(`a request takes at most ${maxRows} rows (PREDICT_MAX_ROWS), got a batch of ${batch}; submit a job for more`);
  }

  for (const { spec, tensor, elements } of inputs) {
    if (arraysToBuild(tensor.shape, elements.length) === null) {
      throw new V2RequestError(
        `input '${spec.name}' has shape [${tensor.shape.join(", ")}]: its dimensions describe far more arrays than its ${elements.length} elements fill (a dimension of 0 beside a huge one?)`,
      );
    }
  }
  const rows: TensorRow[] = Array.from({ length: batch }, () => ({}));
  for (const { spec, tensor, elements } of inputs) {
    const rowDims = tensor.shape.slice(1);
    const perRow = product(rowDims);
    for (let r = 0; r < batch; r++) rows[r]![spec.name] = nestElements(elements, rowDims, r * perRow);
  }
  checkElements(rows, specs);
  return rows;
}

function checkDatatypeAndShape(tensor: V2InputTensor, spec: TensorSpec): void {
  const datatype = toV2Datatype(spec.type);
  if (tensor.datatype !== datatype) {
    throw new V2RequestError(`input '${spec.name}' has datatype ${tensor.datatype}, but the model takes ${datatype}`);
  }
  const expected = toV2Shape(spec.shape);
  const fits = tensor.shape.length === expected.length && expected.every((dim, d) => dim === -1 || tensor.shape[d] === dim);
  if (!fits) {
    throw new V2RequestError(
      `input '${spec.name}' has shape [${tensor.shape.join(", ")}], which does not fit the model's [${expected.join(", ")}] (-1: any size; the first dimension is the batch)`,
    );
  }
}

/**
 * The tensor's elements in row-major order. `data` may be flat, or nested exactly as the shape
 * says (the protocol allows both); nesting of any other form is refused rather than guessed at.
 * The walk goes no deeper than the shape's rank, so hostile nesting costs nothing.
 */
function flattenData(tensor: V2InputTensor): unknown[] {
  const { name, shape, data } = tensor;
  if (!Array.isArray(data)) throw new V2RequestError(`input '${name}': data must be an array (flat, or nested as the shape [${shape.join(", ")}])`);
  const count = product(shape);
  const nested = data.some((item) => Array.isArray(item));
  if (!nested) {
    if (data.length !== count) {
      throw new V2RequestError(`input '${name}' has ${data.length} elements in data, but its shape [${shape.join(", ")}] holds ${count}`);
    }
    return data;
  }
  const elements: unknown[] = [];
  const misfit = () =>
    new V2RequestError(`input '${name}': nested data must follow the shape [${shape.join(", ")}] exactly at every level, or be flat`);
  const walk = (value: unknown, depth: number): void => {
    if (depth === shape.length) {
      if (Array.isArray(value)) throw misfit();
      elements.push(value);
      return;
    }
    if (!Array.isArray(value) || value.length !== shape[depth]) throw misfit();
    for (const item of value) walk(item, depth + 1);
  };
  walk(data, 0);
  return elements;
}

/** Arrays a shape may describe beyond what its elements fill: empty tensors of a sensible size. */
const MAX_EMPTY_ARRAYS = 65_536;

/**
 * How many arrays splitting a tensor of `shape` into nested rows builds (one per prefix of the shape,
 * the last dimension's excepted), or null when that is more than its `elements` justify. A dimension
 * of 0 makes the element count 0 whatever the others say: `[1, 30000000, 0]` is 80 bytes of JSON that
 * would build 30 million arrays (seconds and gigabytes) before any check ran.
 */
function arraysToBuild(shape: readonly number[], elements: number): number | null {
  const bound = 2 * elements + MAX_EMPTY_ARRAYS;
  let arrays = 0;
  let level = 1;
  for (let d = 0; d < shape.length - 1; d++) {
    level *= shape[d]!;
    arrays += level;
    if (arrays > bound) return null;
  }
  return arrays;
}

/** One row's value: `dims` nested arrays of the elements from `offset` (the element itself when there are no dims). */
function nestElements(elements: readonly unknown[], dims: readonly number[], offset: number): TensorValue {
  if (dims.length === 0) return elements[offset] as TensorValue;
  const [length, ...inner] = dims as [number, ...number[]];
  const size = product(inner);
  const out: TensorValue[] = new Array<TensorValue>(length);
  for (let i = 0; i < length; i++) out[i] = nestElements(elements, inner, offset + i * size);
  return out;
}

/**
 * Every element checked as a job's rows are (validateRow, so both paths accept exactly the same
 * values). Each value is checked under a one-letter stand-in name so the issue's path is `.v`
 * followed by the indices inside the row, which read back as the element's place in the tensor:
 * `input 'features' [3][2]` is batch row 3, element 2.
 */
function checkElements(rows: readonly TensorRow[], specs: readonly TensorSpec[]): void {
  const messages: string[] = [];
  let total = 0;
  for (const spec of specs) {
    const standIn = [{ ...spec, name: "v" }];
    rows.forEach((row, r) => {
      for (const issue of validateRow({ v: row[spec.name] }, standIn, "")) {
        total++;
        if (messages.length < MAX_REPORTED_ISSUES) messages.push(`input '${spec.name}' [${r}]${issue.path.slice(2)}: ${issue.message}`);
      }
    });
  }
  if (total > 0) throw new V2RequestError(messages.join("; ") + (total > messages.length ? ` (and ${total - messages.length} more)` : ""));
}

function product(dims: readonly number[]): number {
  let size = 1;
  for (const dim of dims) size *= dim;
  return size;
}

/**
 * The model outputs a request asks for, in the order it asks (all of the model's, in its order, when
 * it names none). Checked before the model runs, so a misspelt name costs no inference.
 */
export function selectOutputs(specs: readonly TensorSpec[], requested: readonly { name: string }[] | undefined): TensorSpec[] {
  if (!requested || requested.length === 0) return [...specs];
  const seen = new Set<string>();
  return requested.map(({ name }) => {
    if (seen.has(name)) throw new V2RequestError(`output '${name}' is requested twice`);
    seen.add(name);
    const spec = specs.find((candidate) => candidate.name === name);
    if (!spec) throw new V2RequestError(`unknown output '${name}'; the model's outputs are: ${specs.map((s) => s.name).join(", ")}`);
    return spec;
  });
}

/** One output tensor of an inference answer; `data` flat, row-major. */
export type V2OutputTensor = { name: string; datatype: string; shape: number[]; data: unknown[] };

/**
 * Stacks the rows' outputs back into one tensor per output, the batch as the first dimension.
 *
 * A row whose inference failed has no values to put in its place, and one tensor cannot hold a
 * hole, so any failed row fails the whole request with that row's message (as Triton answers a
 * model execution error): a V2RequestError, answered 400, never a 500. Rows whose values for one
 * output differ in shape (a model whose output size depends on the input, run in separate batches)
 * cannot be stacked either, and are refused the same way.
 */
export function stackOutputs(results: readonly PredictRowResult[], outputs: readonly TensorSpec[]): V2OutputTensor[] {
  const failed = results.flatMap((result, index) => ("error" in result ? [{ index, error: result.error }] : []));
  if (failed.length > 0) {
    const { index, error } = failed[0]!;
    const more = failed.length - 1;
    const others = more > 0 ? ` (and ${more} more row${more === 1 ? "" : "s"} failed)` : "";
    throw new V2RequestError(`row ${index}: ${error.message}${others}`);
  }
  const rows = results.map((result) => (result as { outputs: TensorRow }).outputs);
  return outputs.map((spec) => {
    const data: unknown[] = [];
    let rowDims: number[] | undefined;
    rows.forEach((row, r) => {
      const value = row[spec.name];
      const dims = valueDims(value);
      if (!rowDims) rowDims = dims;
      else if (dims.length !== rowDims.length || dims.some((size, d) => size !== rowDims![d])) {
        throw new V2RequestError(
          `output '${spec.name}' has shape [${rowDims.join(", ")}] for row 0 but [${dims.join(", ")}] for row ${r}; rows of different shapes cannot be stacked into one tensor (request them one at a time)`,
        );
      }
      pushElements(value, data);
    });
    return { name: spec.name, datatype: toV2Datatype(spec.type), shape: [rows.length, ...(rowDims ?? [])], data };
  });
}

/** The lengths of a row's value along its first elements (the worker split it from a rectangular tensor). */
function valueDims(value: unknown): number[] {
  const dims: number[] = [];
  for (let current = value; Array.isArray(current); current = current[0]) {
    dims.push(current.length);
    if (current.length === 0) break;
  }
  return dims;
}

function pushElements(value: unknown, out: unknown[]): void {
  if (!Array.isArray(value)) {
    out.push(value);
    return;
  }
  for (const item of value) pushElements(item, out);
}

/** The body of a successful inference answer. */
export type V2InferResponse = { model_name: string; model_version: string; id?: string | undefined; outputs: V2OutputTensor[] };

const DECIMAL_INTEGER = /^-?[0-9]+$/;

/**
 * The answer's JSON text. Written by hand for INT64 and UINT64 data: rows carry integers beyond
 * ±(2^53 - 1) as decimal strings, and the protocol wants JSON integers, which JSON.stringify can
 * only write from a number (rounded). Every other value goes through JSON.stringify, which also
 * writes NaN as null, as job results do.
 */
export function writeInferResponse(response: V2InferResponse): string {
  const head = JSON.stringify({ model_name: response.model_name, model_version: response.model_version, ...(response.id !== undefined ? { id: response.id } : {}) });
  const outputs = response.outputs.map((output) => {
    const meta = JSON.stringify({ name: output.name, datatype: output.datatype, shape: output.shape });
    const exact = output.datatype === "INT64" || output.datatype === "UINT64";
    const data = exact ? `[${output.data.map(writeInteger).join(",")}]` : JSON.stringify(output.data);
    return `${meta.slice(0, -1)},"data":${data}}`;
  });
  return `${head.slice(0, -1)},"outputs":[${outputs.join(",")}]}`;
}

function writeInteger(value: unknown): string {
  if (typeof value === "string" && DECIMAL_INTEGER.test(value)) return value;
  return JSON.stringify(value) ?? "null";
}
