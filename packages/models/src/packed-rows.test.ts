import type { TensorRow, TensorSpec } from "@coalesce/contracts";
import { describe, expect, it } from "vitest";
import type { ElementArray } from "./elements.ts";
import { packRows, PackedRows } from "./packed-rows.ts";
import { buildBatch, buildPackedBatch } from "./tensor.ts";
import { rowShapeKey, validateRow } from "./validate-row.ts";

/** Every input type rows can carry, a fixed and an open per-row dimension, a scalar input. */
const INPUTS: TensorSpec[] = [
  { name: "features", type: "float32", shape: ["batch", 3] },
  { name: "tokens", type: "int64", shape: ["batch", "sequence"] },
  { name: "grid", type: "float64", shape: ["batch", 2, "width"] },
  { name: "count", type: "int32", shape: ["batch"] },
  { name: "mask", type: "bool", shape: ["batch", 2] },
];

/** A typed array's elements as a plain array (numbers, or bigints for int64). */
const list = (values: ElementArray) => Array.from(values as ArrayLike<number | bigint>);

const ROWS: TensorRow[] = [
  { features: [0.1, -2.5, 3e30], tokens: [1, "9007199254740993", -7], grid: [[1.5, 2.5], [3.5, 4.5]], count: 7, mask: [true, false] },
  { features: [4, 5, 6], tokens: [42], grid: [[0.25], [1e-300]], count: -2147483648, mask: [false, false] },
  { features: [7, 8, 9], tokens: [3, 4, 5], grid: [[9, 8], [7, 6]], count: 2147483647, mask: [true, true] },
];

describe("packed rows", () => {
  it("read back as the typed values their inputs take, with their shapes and byte sizes", () => {
    for (const [i, row] of ROWS.entries()) expect(validateRow(row, INPUTS, `inputs[${i}]`)).toEqual([]);
    const packed = PackedRows.decode(packRows(ROWS, INPUTS), INPUTS);
    expect(packed.rowCount).toBe(3);
    expect(list(packed.values(0, 0))).toEqual([Math.fround(0.1), -2.5, Math.fround(3e30)]);
    // int64 beyond 2^53 stays exact.
    expect(list(packed.values(1, 0))).toEqual([1n, 9007199254740993n, -7n]);
    expect(list(packed.values(2, 1))).toEqual([0.25, 1e-300]);
    expect(list(packed.values(3, 1))).toEqual([-2147483648]);
    expect(list(packed.values(4, 0))).toEqual([1, 0]);
    expect(packed.rowDims(1, 1)).toEqual([1]);
    expect(packed.rowDims(2, 1)).toEqual([2, 1]);
    expect(packed.rowDims(3, 0)).toEqual([]);
    // 3 float32 + 3 int64 + 4 float64 + 1 int32 + 2 bool; the second row has shorter open dimensions.
    expect([0, 1, 2].map((r) => packed.rowBytes(r))).toEqual([12 + 24 + 32 + 4 + 2, 12 + 8 + 16 + 4 + 2, 12 + 24 + 32 + 4 + 2]);
  });

  it("share a shape key exactly when their JSON rows do", () => {
    const packed = PackedRows.decode(packRows(ROWS, INPUTS), INPUTS);
    const keys = ROWS.map((_, r) => packed.shapeKey(r));
    expect(keys).toEqual(ROWS.map((row) => rowShapeKey(row, INPUTS)));
    expect(keys[0]).toBe(keys[2]);
    expect(keys[0]).not.toBe(keys[1]);
    // Without open dimensions every row has the same key.
    const fixed = INPUTS.slice(0, 1);
    const fixedRows = PackedRows.decode(packRows([{ features: [1, 2, 3] }, { features: [4, 5, 6] }], fixed), fixed);
    expect([fixedRows.shapeKey(0), fixedRows.shapeKey(1)]).toEqual(["", ""]);
  });

  it("build the same batch tensors as the JSON rows, from rows of several chunks", () => {
    const first = PackedRows.decode(packRows([ROWS[0]!], INPUTS), INPUTS);
    const second = PackedRows.decode(packRows([ROWS[1]!, ROWS[2]!], INPUTS), INPUTS);
    const packed = buildPackedBatch([{ rows: first, index: 0 }, { rows: second, index: 1 }], INPUTS);
    const json = buildBatch([ROWS[0]!, ROWS[2]!], INPUTS);
    for (const input of INPUTS) {
      expect(packed[input.name]!.type).toBe(json[input.name]!.type);
      expect(packed[input.name]!.dims).toEqual(json[input.name]!.dims);
      expect(Array.from(packed[input.name]!.data as ArrayLike<unknown>)).toEqual(Array.from(json[input.name]!.data as ArrayLike<unknown>));
    }
  });

  it("keep rows that could not be read as absent, with no values", () => {
    const packed = PackedRows.decode(packRows([ROWS[0]!, null, ROWS[2]!], INPUTS), INPUTS);
    expect([packed.isPresent(0), packed.isPresent(1), packed.isPresent(2)]).toEqual([true, false, true]);
    expect(packed.values(0, 1)).toHaveLength(0);
    expect(list(packed.values(0, 2))).toEqual([7, 8, 9]);
  });

  it("read from any byte offset, as a Buffer sliced out of a pool may start", () => {
    const bytes = packRows(ROWS, INPUTS);
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    const packed = PackedRows.decode(shifted.subarray(3), INPUTS);
    expect(list(packed.values(0, 2))).toEqual([7, 8, 9]);
  });

  it("refuse bytes that are not packed rows of this signature, or are cut short", () => {
    const bytes = packRows(ROWS, INPUTS);
    expect(() => PackedRows.decode(Buffer.from("[1,2,3]"), INPUTS)).toThrow(/not the packed row format|end early/);
    expect(() => PackedRows.decode(bytes, INPUTS.slice(0, 2))).toThrow("they have 5 inputs where the model has 2");
    expect(() => PackedRows.decode(bytes.subarray(0, bytes.length - 16), INPUTS)).toThrow("end early");
    const swapped = [INPUTS[1]!, INPUTS[0]!, ...INPUTS.slice(2)];
    expect(() => PackedRows.decode(bytes, swapped)).toThrow(/open dimensions/);
  });

  it("refuse to pack a row whose values do not fill its shape", () => {
    const ragged = { ...ROWS[0]!, grid: [[1, 2], [3]] };
    expect(() => packRows([ragged], INPUTS)).toThrow("rows[0].grid has 3 values where its shape needs 4");
  });
});
