import * as ort from "onnxruntime-node";
import type { TensorRow, TensorSpec, TensorValue } from "@coalesce/contracts";
import { elementKind, fillStrings, isStringInput, type ElementArray } from "./elements.ts";
import type { PackedRows } from "./packed-rows.ts";
import { isFixedDim, perRowDims } from "./validate-row.ts";
import { shortestFloat32 } from "./float32-text.ts";

/**
 * Stacks rows into one tensor per input, shaped `[rows.length, ...per-row dims]`. The rows must
 * have passed `validateRow` and share one `rowShapeKey`; a row whose element count does not fit
 * the batch still throws rather than run on shifted data.
 */
export function buildBatch(rows: readonly TensorRow[], inputs: readonly TensorSpec[]): Record<string, ort.Tensor> {
  if (rows.length === 0) throw new Error("cannot build a batch of 0 rows");
  const feeds: Record<string, ort.Tensor> = {};
  for (const input of inputs) feeds[input.name] = buildInputTensor(rows, input);
  return feeds;
}

function buildInputTensor(rows: readonly TensorRow[], input: TensorSpec): ort.Tensor {
  const kind = isStringInput(input.type) ? null : elementKind(input.type, input.name);
  const rank = Math.max(0, input.shape.length - 1);
  const observed = perRowDims(rows[0]![input.name], rank);
  const rowDims: number[] = [];
  for (let d = 0; d < rank; d++) {
    const dim = input.shape[d + 1];
    const size = isFixedDim(dim) ? dim : observed[d];
    if (size === undefined) throw new Error(`rows[0].${input.name} is not nested ${rank} deep`);
    rowDims.push(size);
  }
  let perRow = 1;
  for (const size of rowDims) perRow *= size;
  const data: ElementArray | string[] = kind ? new kind.Array(rows.length * perRow) : new Array<string>(rows.length * perRow);
  let offset = 0;
  for (let r = 0; r < rows.length; r++) {
    const value = rows[r]![input.name];
    if (value === undefined) throw new Error(`rows[${r}] has no input '${input.name}'`);
    const end = kind ? kind.fill(value, rank, data as ElementArray, offset) : fillStrings(value, rank, data as string[], offset);
    // Typed arrays silently drop out-of-range writes, so a misfit row would otherwise shift or
    // zero-fill its neighbours' data without any error.
    if (end !== offset + perRow) {
      throw new Error(`rows[${r}].${input.name} has ${end - offset} values where the batch needs ${perRow}; rows must be validated and grouped by rowShapeKey`);
    }
    offset = end;
  }
  return new ort.Tensor(input.type as ort.Tensor.Type, data, [rows.length, ...rowDims]);
}

/** One row of a chunk's packed rows: what the worker's batchers carry. */
export type PackedRowRef = { rows: PackedRows; index: number };

/**
 * buildBatch for packed rows: each input's tensor is the rows' values copied one after the other
 * (no per-element work; a string input's elements are decoded from UTF-8 one by one, as a string
 * tensor must be made of strings). The rows must share one `shapeKey`; a row of another shape throws.
 */
export function buildPackedBatch(items: readonly PackedRowRef[], inputs: readonly TensorSpec[]): Record<string, ort.Tensor> {
  if (items.length === 0) throw new Error("cannot build a batch of 0 rows");
  const first = items[0]!;
  const feeds: Record<string, ort.Tensor> = {};
  inputs.forEach((input, i) => {
    const rowDims = first.rows.rowDims(i, first.index);
    const perRow = rowDims.reduce((product, size) => product * size, 1);
    if (isStringInput(input.type)) {
      feeds[input.name] = new ort.Tensor("string", buildPackedStrings(items, i, input.name, perRow), [items.length, ...rowDims]);
      return;
    }
    const kind = elementKind(input.type, input.name);
    const data = new kind.Array(items.length * perRow);
    items.forEach(({ rows, index }, r) => {
      const values = rows.values(i, index);
      if (values.length !== perRow) throw new Error(`rows[${r}].${input.name} has ${values.length} values where the batch needs ${perRow}; rows must be grouped by shapeKey`);
      (data as Float32Array).set(values as Float32Array, r * perRow);
    });
    feeds[input.name] = new ort.Tensor(input.type as ort.Tensor.Type, data, [items.length, ...rowDims]);
  });
  return feeds;
}

function buildPackedStrings(items: readonly PackedRowRef[], input: number, name: string, perRow: number): string[] {
  const data = new Array<string>(items.length * perRow);
  items.forEach(({ rows, index }, r) => {
    const count = rows.readStrings(input, index, data, r * perRow);
    if (count !== perRow) throw new Error(`rows[${r}].${name} has ${count} values where the batch needs ${perRow}; rows must be grouped by shapeKey`);
  });
  return data;
}

/** What splitOutputs reads of an output: an onnxruntime tensor, or one passed back from another thread. */
export type OutputTensor = Pick<ort.Tensor, "type" | "data" | "dims">;

/**
 * Splits a run's outputs along the batch dimension into one row of JSON values per input row,
 * nested to each output's remaining dimensions (a plain value where the output is `[batch]`).
 * int64/uint64 values beyond ±(2^53 - 1) become decimal strings, since JSON numbers would round them;
 * float32 values become the shortest number that reads back to the same float32 (shortestFloat32).
 */
export function splitOutputs(
  results: Readonly<Record<string, OutputTensor>>,
  outputs: readonly TensorSpec[],
  rowCount: number,
): TensorRow[] {
  const rows: TensorRow[] = [];
  for (let r = 0; r < rowCount; r++) rows.push({});
  for (const output of outputs) {
    const tensor = results[output.name];
    if (tensor === undefined) throw new Error(`the model run returned no output '${output.name}'`);
    const dims = tensor.dims;
    if (dims[0] !== rowCount) {
      throw new Error(
        `output '${output.name}' has shape [${dims.join(", ")}] for a batch of ${rowCount} rows: the model does not keep the batch dimension as the first dimension of this output, so its results cannot be split into rows`,
      );
    }
    const rowDims = dims.slice(1);
    let perRow = 1;
    for (const size of rowDims) perRow *= size;
    const read = readerFor(tensor, output.name);
    for (let r = 0; r < rowCount; r++) {
      rows[r]![output.name] = rowDims.length === 0 ? read(r) : nest(read, rowDims, 0, r * perRow, perRow);
    }
  }
  return rows;
}

type Reader = (index: number) => TensorValue;

/** Builds the nested arrays for `size` elements from `offset`, following `dims` from `depth`. */
function nest(read: Reader, dims: readonly number[], depth: number, offset: number, size: number): TensorValue[] {
  const length = dims[depth]!;
  const out: TensorValue[] = new Array<TensorValue>(length);
  if (depth === dims.length - 1) {
    for (let i = 0; i < length; i++) out[i] = read(offset + i);
    return out;
  }
  const childSize = length === 0 ? 0 : size / length;
  for (let i = 0; i < length; i++) out[i] = nest(read, dims, depth + 1, offset + i * childSize, childSize);
  return out;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = -MAX_SAFE;

function readerFor(tensor: OutputTensor, name: string): Reader {
  switch (tensor.type) {
    case "float32": {
      // The shortest text of the float32 rather than of the double it arrives as (float32-text.ts).
      const data = tensor.data as ArrayLike<number>;
      return (i) => shortestFloat32(data[i]!);
    }
    case "float64":
    case "int8":
    case "uint8":
    case "int16":
    case "uint16":
    case "int32":
    case "uint32": {
      const data = tensor.data as ArrayLike<number>;
      return (i) => data[i]!;
    }
    case "float16": {
      // Without a global Float16Array (Node 20), ORT hands back the raw half-precision bits.
      const data = tensor.data as ArrayLike<number>;
      return data instanceof Uint16Array ? (i) => halfToNumber(data[i]!) : (i) => data[i]!;
    }
    case "int64":
    case "uint64": {
      const data = tensor.data as ArrayLike<bigint>;
      return (i) => {
        const n = data[i]!;
        return n >= MIN_SAFE && n <= MAX_SAFE ? Number(n) : n.toString();
      };
    }
    case "bool": {
      const data = tensor.data as ArrayLike<number>;
      return (i) => data[i] !== 0;
    }
    case "string": {
      const data = tensor.data as readonly string[];
      return (i) => data[i]!;
    }
    default:
      throw new Error(`output '${name}' has element type ${tensor.type}, which cannot be returned as JSON`);
  }
}

function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}
