import type { TensorRow, TensorSpec, TensorValue } from "@coalesce/contracts";
import { elementKind, isStringInput, type ElementArray, type ElementKind } from "./elements.ts";
import { isFixedDim, perRowDims } from "./validate-row.ts";

/**
 * Rows in the binary form chunks are stored in: each input's values as the typed array onnxruntime
 * takes (float32 as 4 bytes, int64 as 8, ...), so rows go from the API to a batch tensor without
 * being written out as decimal text and parsed back (JSON did that for every number, in the API,
 * in Postgres and in the worker). Little-endian, every section 8-byte aligned:
 *
 *   u32 magic "CPR1", u32 rows, u32 inputs, u32 0
 *   u8 present[rows] (0: a row that could not be read; it has no values), padded
 *   per input, in the model's order:
 *     u32 k (the input's open per-row dimensions), u32 elements
 *     u32 dims[rows][k] (each row's size along its open dimensions), padded
 *     a fixed-size type: elements values of the input's type, row after row, padded
 *     a string input:    u32 bytes, u32 0, then `bytes` bytes: per element, row after row,
 *                        u32 length and that many bytes of UTF-8 (unaligned); padded
 *
 * Strings are length-prefixed rather than indexed by an offset table so that each row's bytes are
 * one self-delimiting run (`values`), which the result cache hashes as it hashes any row. The
 * fixed-size sections are what they were before string inputs existed, so rows stored then read
 * the same (no signature could have a string input before).
 *
 * The layout follows from the model version's input signature, which travels beside the chunk
 * (its job names the version), so both sides are given it.
 */
const MAGIC = 0x31525043;
const HEADER_BYTES = 16;
/** The u32 before each string element's UTF-8. */
const LENGTH_PREFIX_BYTES = 4;
/** onnxruntime holds each string element as a std::string (32 bytes on 64-bit platforms) beside its characters. */
const STRING_ELEMENT_BYTES = 32;
/**
 * A row with strings is weighed at least this, and otherwise at the next power of two of its
 * bytes: the weight is part of its batcher's key, so rows of slightly different text lengths still
 * batch together, while a batch of long texts stays within MAX_BATCH_BYTES (to a factor of 2).
 */
const MIN_STRING_ROW_BYTES = 4096;

const align8 = (bytes: number) => (bytes + 7) & ~7;

/** An input's per-row shape: a fixed size, or null where the model leaves the dimension open. `kind` is null for a string input. */
type InputLayout = { spec: TensorSpec; kind: ElementKind | null; rank: number; fixed: (number | null)[]; open: number };

function layoutOf(spec: TensorSpec): InputLayout {
  const fixed = spec.shape.slice(1).map((dim) => (isFixedDim(dim) ? dim : null));
  const kind = isStringInput(spec.type) ? null : elementKind(spec.type, spec.name);
  return { spec, kind, rank: fixed.length, fixed, open: fixed.filter((dim) => dim === null).length };
}

/** Calls `visit` with each string of a validated value nested `depth` deep, in row-major order. */
function forEachString(value: TensorValue, depth: number, visit: (text: string) => void): void {
  if (depth === 0) {
    visit(value as string);
    return;
  }
  for (const item of value as TensorValue[]) forEachString(item, depth - 1, visit);
}

/**
 * Packs rows (validated with `validateRow` against `inputs`; null for a row that could not be read)
 * into the stored form. Throws if a row's values do not fill its shape, rather than store shifted data.
 */
export function packRows(rows: readonly (TensorRow | null)[], inputs: readonly TensorSpec[]): Buffer {
  const count = rows.length;
  // Pass 1: every row's open dimensions and element count, per input (and a string input's bytes).
  const plans = inputs.map((spec) => {
    const layout = layoutOf(spec);
    const dims = new Uint32Array(count * layout.open);
    const perRow = new Uint32Array(count);
    let elements = 0;
    let stringBytes = 0;
    for (let r = 0; r < count; r++) {
      const row = rows[r];
      if (!row) continue;
      const observed = layout.open > 0 ? perRowDims(row[spec.name], layout.rank) : [];
      let size = 1;
      for (let d = 0, j = 0; d < layout.rank; d++) {
        const fixed = layout.fixed[d];
        const length = fixed ?? observed[d];
        if (length === undefined) throw new Error(`rows[${r}].${spec.name} is not nested ${layout.rank} deep`);
        if (fixed === null) dims[r * layout.open + j++] = length;
        size *= length;
      }
      perRow[r] = size;
      elements += size;
      if (!layout.kind) forEachString(row[spec.name]!, layout.rank, (text) => (stringBytes += LENGTH_PREFIX_BYTES + Buffer.byteLength(text, "utf8")));
    }
    const dataBytes = layout.kind ? elements * layout.kind.bytes : 8 + stringBytes;
    return { layout, dims, perRow, elements, dataBytes };
  });

  let size = HEADER_BYTES + align8(count);
  const at = plans.map((plan) => {
    const start = size;
    size += 8 + align8(plan.dims.byteLength) + align8(plan.dataBytes);
    return start;
  });
  const buffer = new ArrayBuffer(size);
  new Uint32Array(buffer, 0, 4).set([MAGIC, count, inputs.length, 0]);
  const present = new Uint8Array(buffer, HEADER_BYTES, count);
  for (let r = 0; r < count; r++) present[r] = rows[r] ? 1 : 0;

  // Pass 2: the values, straight into typed arrays over the buffer.
  plans.forEach(({ layout, dims, perRow, elements, dataBytes }, i) => {
    const start = at[i] as number;
    new Uint32Array(buffer, start, 2).set([layout.open, elements]);
    new Uint32Array(buffer, start + 8, dims.length).set(dims);
    const dataAt = start + 8 + align8(dims.byteLength);
    if (!layout.kind) {
      packStrings(rows, layout, perRow, Buffer.from(buffer, dataAt, dataBytes));
      return;
    }
    const data = new layout.kind.Array(buffer, dataAt, elements);
    let offset = 0;
    for (let r = 0; r < count; r++) {
      const row = rows[r];
      if (!row) continue;
      const end = layout.kind.fill(row[layout.spec.name]!, layout.rank, data, offset);
      // Typed arrays drop writes past their end silently: a ragged row would shift its neighbours.
      if (end - offset !== perRow[r]) {
        throw new Error(`rows[${r}].${layout.spec.name} has ${end - offset} values where its shape needs ${perRow[r]}; rows must be validated first`);
      }
      offset = end;
    }
  });
  return Buffer.from(buffer);
}

/** A string input's section after its dims: u32 bytes, u32 0, then each element length-prefixed. */
function packStrings(rows: readonly (TensorRow | null)[], layout: InputLayout, perRow: Uint32Array, out: Buffer): void {
  out.writeUInt32LE(out.length - 8, 0);
  let at = 8;
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r];
    if (!row) continue;
    let written = 0;
    forEachString(row[layout.spec.name]!, layout.rank, (text) => {
      // Sized in pass 1, so the text fits; its length goes in front once written.
      const length = out.write(text, at + LENGTH_PREFIX_BYTES, "utf8");
      out.writeUInt32LE(length, at);
      at += LENGTH_PREFIX_BYTES + length;
      written++;
    });
    if (written !== perRow[r]) {
      throw new Error(`rows[${r}].${layout.spec.name} has ${written} values where its shape needs ${perRow[r]}; rows must be validated first`);
    }
  }
}

/**
 * One input of decoded rows: the rows' open dimensions, their values, and where each row's start
 * (`starts`, in elements). A string input's values are its UTF-8 section (`text`), each row's run
 * of it starting at `byteStarts`.
 */
type PackedInput =
  | { layout: InputLayout; dims: Uint32Array; starts: Uint32Array; data: ElementArray; text: null; byteStarts: null }
  | { layout: InputLayout; dims: Uint32Array; starts: Uint32Array; data: null; text: Buffer; byteStarts: Uint32Array };

/** Rows read back from the stored form: each row's values are views into one buffer, never copied. */
export class PackedRows {
  readonly rowCount: number;
  readonly #present: Uint8Array;
  readonly #inputs: PackedInput[];
  readonly #hasStrings: boolean;

  private constructor(rowCount: number, present: Uint8Array, inputs: PackedInput[]) {
    this.rowCount = rowCount;
    this.#present = present;
    this.#inputs = inputs;
    this.#hasStrings = inputs.some((input) => input.text !== null);
  }

  /**
   * Reads what `packRows` wrote for the same `inputs`. Throws (naming what is wrong) on bytes that
   * are not such rows, or not for this signature, instead of reading values out of place.
   */
  static decode(bytes: Uint8Array, inputs: readonly TensorSpec[]): PackedRows {
    // Typed-array views need aligned offsets; a Buffer may be a slice of a shared pool.
    const source = bytes.byteOffset % 8 === 0 ? bytes : new Uint8Array(bytes);
    const buffer = source.buffer as ArrayBuffer;
    const base = source.byteOffset;
    const fail = (why: string): never => {
      throw new Error(`stored rows cannot be read: ${why}`);
    };
    const words = (offset: number, length: number) => {
      if (offset + length * 4 > source.byteLength) fail("they end early");
      return new Uint32Array(buffer, base + offset, length);
    };
    const [magic, rowCount = 0, inputCount] = words(0, 4);
    if (magic !== MAGIC) fail("not the packed row format");
    if (inputCount !== inputs.length) fail(`they have ${inputCount} inputs where the model has ${inputs.length}`);
    if (HEADER_BYTES + rowCount > source.byteLength) fail("they end early");
    const present = new Uint8Array(buffer, base + HEADER_BYTES, rowCount);
    let offset = HEADER_BYTES + align8(rowCount);
    const decoded = inputs.map((spec): PackedInput => {
      const layout = layoutOf(spec);
      const [open, elements = 0] = words(offset, 2);
      if (open !== layout.open) fail(`input '${spec.name}' has ${open} open dimensions where the model has ${layout.open}`);
      const dims = words(offset + 8, rowCount * layout.open);
      const dataAt = offset + 8 + align8(dims.byteLength);
      const starts = new Uint32Array(rowCount + 1);
      for (let r = 0; r < rowCount; r++) {
        let size = present[r] ? 1 : 0;
        for (let d = 0, j = 0; d < layout.rank; d++) size *= layout.fixed[d] ?? (dims[r * layout.open + j++] as number);
        starts[r + 1] = (starts[r] as number) + size;
      }
      if (starts[rowCount] !== elements) fail(`input '${spec.name}' holds ${elements} values where its rows' shapes need ${starts[rowCount]}`);
      if (!layout.kind) {
        const [textBytes = 0] = words(dataAt, 2);
        if (dataAt + 8 + textBytes > source.byteLength) fail("they end early");
        const text = Buffer.from(buffer, base + dataAt + 8, textBytes);
        const byteStarts = stringRowStarts(text, starts, fail);
        if (byteStarts[rowCount] !== textBytes) fail(`input '${spec.name}' holds ${textBytes} bytes of strings where its elements take ${byteStarts[rowCount]}`);
        offset = dataAt + align8(8 + textBytes);
        return { layout, dims, starts, data: null, text, byteStarts };
      }
      if (dataAt + elements * layout.kind.bytes > source.byteLength) fail("they end early");
      const data = new layout.kind.Array(buffer, base + dataAt, elements);
      offset = dataAt + align8(elements * layout.kind.bytes);
      return { layout, dims, starts, data, text: null, byteStarts: null };
    });
    return new PackedRows(rowCount, present, decoded);
  }

  /** False for a row that could not be read (its error is stored beside the chunk). */
  isPresent(row: number): boolean {
    return this.#present[row] === 1;
  }

  /**
   * Equal for two rows exactly when they can be stacked into one batch (as `rowShapeKey` for JSON
   * rows): the sizes of every dimension the model leaves open; "" when it leaves none open.
   */
  shapeKey(row: number): string {
    let key = "";
    this.#inputs.forEach(({ layout }, i) => {
      if (layout.open > 0) key += `${i}:${this.rowDims(i, row).join("x")};`;
    });
    return key;
  }

  /**
   * Bytes the row adds to a batch's input tensors: what MAX_BATCH_BYTES is weighed in. Exact for
   * fixed-size inputs; a row with strings is weighed as MIN_STRING_ROW_BYTES says.
   */
  rowBytes(row: number): number {
    let bytes = 0;
    for (const { layout, starts, byteStarts } of this.#inputs) {
      const elements = (starts[row + 1] as number) - (starts[row] as number);
      if (layout.kind) bytes += elements * layout.kind.bytes;
      else bytes += elements * (STRING_ELEMENT_BYTES - LENGTH_PREFIX_BYTES) + (byteStarts![row + 1] as number) - (byteStarts![row] as number);
    }
    return this.#hasStrings ? Math.max(MIN_STRING_ROW_BYTES, 2 ** Math.ceil(Math.log2(bytes))) : bytes;
  }

  /**
   * The row's values of input `input` (by its position in the signature), row-major. For a string
   * input, the row's stored bytes (each element's u32 length and UTF-8): read them with `strings`.
   */
  values(input: number, row: number): ElementArray {
    const { data, starts, text, byteStarts } = this.#inputs[input] as PackedInput;
    if (text) return text.subarray(byteStarts[row], byteStarts[row + 1]);
    return data.subarray(starts[row], starts[row + 1]);
  }

  /** The row's strings of string input `input`, row-major. */
  strings(input: number, row: number): string[] {
    const { starts } = this.#inputs[input] as PackedInput;
    const out = new Array<string>((starts[row + 1] as number) - (starts[row] as number));
    this.readStrings(input, row, out, 0);
    return out;
  }

  /** Writes the row's strings of string input `input` into `out` from `offset`; returns how many it wrote. */
  readStrings(input: number, row: number, out: string[], offset: number): number {
    const { layout, text, byteStarts } = this.#inputs[input] as PackedInput;
    if (!text) throw new Error(`input '${layout.spec.name}' has element type ${layout.spec.type}, not string`);
    const end = byteStarts[row + 1] as number;
    let count = 0;
    for (let at = byteStarts[row] as number; at < end; count++) {
      const length = text.readUInt32LE(at);
      at += LENGTH_PREFIX_BYTES;
      out[offset + count] = text.toString("utf8", at, at + length);
      at += length;
    }
    return count;
  }

  /** The row's shape for input `input`, without the batch dimension. */
  rowDims(input: number, row: number): number[] {
    const { layout, dims } = this.#inputs[input] as PackedInput;
    let j = 0;
    return layout.fixed.map((fixed) => fixed ?? (dims[row * layout.open + j++] as number));
  }
}

/**
 * Where each row's run of a string section starts, found by walking the length prefixes (every
 * element is checked to lie inside the section, so reading a row later cannot run past it).
 */
function stringRowStarts(text: Buffer, starts: Uint32Array, fail: (why: string) => never): Uint32Array {
  const rowCount = starts.length - 1;
  const byteStarts = new Uint32Array(rowCount + 1);
  let at = 0;
  for (let r = 0; r < rowCount; r++) {
    for (let e = starts[r] as number; e < (starts[r + 1] as number); e++) {
      if (at + LENGTH_PREFIX_BYTES > text.length) fail("a string section ends early");
      at += LENGTH_PREFIX_BYTES + text.readUInt32LE(at);
      if (at > text.length) fail("a string section ends early");
    }
    byteStarts[r + 1] = at;
  }
  return byteStarts;
}
