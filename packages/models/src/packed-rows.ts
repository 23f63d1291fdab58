import type { TensorRow, TensorSpec } from "@coalesce/contracts";
import { elementKind, type ElementArray, type ElementKind } from "./elements.ts";
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
 *     elements values of the input's type, row after row, padded
 *
 * The layout follows from the model version's input signature, which travels beside the chunk
 * (its job names the version), so both sides are given it.
 */
const MAGIC = 0x31525043;
const HEADER_BYTES = 16;

const align8 = (bytes: number) => (bytes + 7) & ~7;

/** An input's per-row shape: a fixed size, or null where the model leaves the dimension open. */
type InputLayout = { spec: TensorSpec; kind: ElementKind; rank: number; fixed: (number | null)[]; open: number };

function layoutOf(spec: TensorSpec): InputLayout {
  const fixed = spec.shape.slice(1).map((dim) => (isFixedDim(dim) ? dim : null));
  return { spec, kind: elementKind(spec.type, spec.name), rank: fixed.length, fixed, open: fixed.filter((dim) => dim === null).length };
}

/**
 * Packs rows (validated with `validateRow` against `inputs`; null for a row that could not be read)
 * into the stored form. Throws if a row's values do not fill its shape, rather than store shifted data.
 */
export function packRows(rows: readonly (TensorRow | null)[], inputs: readonly TensorSpec[]): Buffer {
  const count = rows.length;
  // Pass 1: every row's open dimensions and element count, per input.
  const plans = inputs.map((spec) => {
    const layout = layoutOf(spec);
    const dims = new Uint32Array(count * layout.open);
    const perRow = new Uint32Array(count);
    let elements = 0;
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
    }
    return { layout, dims, perRow, elements };
  });

  let size = HEADER_BYTES + align8(count);
  const at = plans.map((plan) => {
    const start = size;
    size += 8 + align8(plan.dims.byteLength) + align8(plan.elements * plan.layout.kind.bytes);
    return start;
  });
  const buffer = new ArrayBuffer(size);
  new Uint32Array(buffer, 0, 4).set([MAGIC, count, inputs.length, 0]);
  const present = new Uint8Array(buffer, HEADER_BYTES, count);
  for (let r = 0; r < count; r++) present[r] = rows[r] ? 1 : 0;

  // Pass 2: the values, straight into typed arrays over the buffer.
  plans.forEach(({ layout, dims, perRow, elements }, i) => {
    const start = at[i] as number;
    new Uint32Array(buffer, start, 2).set([layout.open, elements]);
    new Uint32Array(buffer, start + 8, dims.length).set(dims);
    const data = new layout.kind.Array(buffer, start + 8 + align8(dims.byteLength), elements);
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

/** One input of decoded rows: the rows' open dimensions, their values, and where each row's start. */
type PackedInput = { layout: InputLayout; dims: Uint32Array; data: ElementArray; starts: Uint32Array };

/** Rows read back from the stored form: each row's values are views into one buffer, never copied. */
export class PackedRows {
  readonly rowCount: number;
  readonly #present: Uint8Array;
  readonly #inputs: PackedInput[];

  private constructor(rowCount: number, present: Uint8Array, inputs: PackedInput[]) {
    this.rowCount = rowCount;
    this.#present = present;
    this.#inputs = inputs;
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
    const decoded = inputs.map((spec) => {
      const layout = layoutOf(spec);
      const [open, elements = 0] = words(offset, 2);
      if (open !== layout.open) fail(`input '${spec.name}' has ${open} open dimensions where the model has ${layout.open}`);
      const dims = words(offset + 8, rowCount * layout.open);
      const dataAt = offset + 8 + align8(dims.byteLength);
      if (dataAt + elements * layout.kind.bytes > source.byteLength) fail("they end early");
      const data = new layout.kind.Array(buffer, base + dataAt, elements);
      const starts = new Uint32Array(rowCount + 1);
      for (let r = 0; r < rowCount; r++) {
        let size = present[r] ? 1 : 0;
        for (let d = 0, j = 0; d < layout.rank; d++) size *= layout.fixed[d] ?? (dims[r * layout.open + j++] as number);
        starts[r + 1] = (starts[r] as number) + size;
      }
      if (starts[rowCount] !== elements) fail(`input '${spec.name}' holds ${elements} values where its rows' shapes need ${starts[rowCount]}`);
      offset = dataAt + align8(elements * layout.kind.bytes);
      return { layout, dims, data, starts };
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

  /** Bytes the row adds to a batch's input tensors: what MAX_BATCH_BYTES is weighed in. */
  rowBytes(row: number): number {
    let bytes = 0;
    for (const { layout, starts } of this.#inputs) bytes += ((starts[row + 1] as number) - (starts[row] as number)) * layout.kind.bytes;
    return bytes;
  }

  /** The row's values of input `input` (by its position in the signature), row-major. */
  values(input: number, row: number): ElementArray {
    const { data, starts } = this.#inputs[input] as PackedInput;
    return data.subarray(starts[row], starts[row + 1]);
  }

  /** The row's shape for input `input`, without the batch dimension. */
  rowDims(input: number, row: number): number[] {
    const { layout, dims } = this.#inputs[input] as PackedInput;
    let j = 0;
    return layout.fixed.map((fixed) => fixed ?? (dims[row * layout.open + j++] as number));
  }
}
