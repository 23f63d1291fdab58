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

  it("read rows stored before string inputs existed, byte for byte as that code wrote them", () => {
    // packRows of commit 432f10c over ROWS[0], null, ROWS[1] and INPUTS.
    const stored = Buffer.from(
      "Q1BSMQMAAAAFAAAAAAAAAAEAAQAAAAAAAAAAAAYAAADNzMw9AAAgwBd2F3IAAIBAAACgQAAAwEABAAAABAAAAAMAAAAAAAAAAQAAAAAAAAABAAAAAAAAAAEAAAAAACAA+f////////8qAAAAAAAAAAEAAAAGAAAAAgAAAAAAAAABAAAAAAAAAAAAAAAAAPg/AAAAAAAABEAAAAAAAAAMQAAAAAAAABJAAAAAAAAA0D9Z8/jCH26lAQAAAAACAAAABwAAAAAAAIAAAAAABAAAAAEAAAAAAAAA",
      "base64",
    );
    expect(packRows([ROWS[0]!, null, ROWS[1]!], INPUTS)).toEqual(stored);
    const packed = PackedRows.decode(stored, INPUTS);
    expect([packed.isPresent(0), packed.isPresent(1), packed.isPresent(2)]).toEqual([true, false, true]);
    expect(list(packed.values(1, 0))).toEqual([1n, 9007199254740993n, -7n]);
    expect(list(packed.values(2, 2))).toEqual([0.25, 1e-300]);
    expect(packed.rowBytes(2)).toBe(12 + 8 + 16 + 4 + 2);
  });
});

describe("packed rows of the small integer types and float16", () => {
  const SMALL: TensorSpec[] = [
    { name: "i8", type: "int8", shape: ["batch", 2] },
    { name: "u8", type: "uint8", shape: ["batch", 2] },
    { name: "i16", type: "int16", shape: ["batch", 2] },
    { name: "u16", type: "uint16", shape: ["batch", "n"] },
    { name: "h", type: "float16", shape: ["batch", 4] },
  ];
  const rows: TensorRow[] = [
    { i8: [-128, 127], u8: [0, 255], i16: [-32768, 32767], u16: [0, 65535, 7], h: [1, -2.5, 65504, 0.1] },
    { i8: [0, -1], u8: [1, 2], i16: [3, -4], u16: [9], h: [-0, 6.0e-8, 1e-9, -65504] },
  ];

  it("are stored as onnxruntime takes them: float16 as the nearest half's bits", () => {
    for (const [i, row] of rows.entries()) expect(validateRow(row, SMALL, `inputs[${i}]`)).toEqual([]);
    const packed = PackedRows.decode(packRows(rows, SMALL), SMALL);
    expect(packed.values(0, 0)).toEqual(new Int8Array([-128, 127]));
    expect(packed.values(1, 0)).toEqual(new Uint8Array([0, 255]));
    expect(packed.values(2, 0)).toEqual(new Int16Array([-32768, 32767]));
    expect(packed.values(3, 0)).toEqual(new Uint16Array([0, 65535, 7]));
    expect(packed.values(3, 1)).toEqual(new Uint16Array([9]));
    // 0.1 rounds to 0x2e66 (0.0999755859375); 6e-8 to the smallest subnormal; 1e-9 to zero.
    expect(packed.values(4, 0)).toEqual(new Uint16Array([0x3c00, 0xc100, 0x7bff, 0x2e66]));
    expect(packed.values(4, 1)).toEqual(new Uint16Array([0x8000, 0x0001, 0x0000, 0xfbff]));
    expect([0, 1].map((r) => packed.rowBytes(r))).toEqual([2 + 2 + 4 + 6 + 8, 2 + 2 + 4 + 2 + 8]);
  });

  it("build the same batch tensors as the JSON rows", () => {
    const packed = PackedRows.decode(packRows([rows[0]!, rows[0]!], SMALL), SMALL);
    const fromPacked = buildPackedBatch([{ rows: packed, index: 0 }, { rows: packed, index: 1 }], SMALL);
    const fromJson = buildBatch([rows[0]!, rows[0]!], SMALL);
    for (const input of SMALL) {
      expect(fromPacked[input.name]!.type).toBe(input.type);
      expect(fromPacked[input.name]!.data).toEqual(fromJson[input.name]!.data);
      expect(fromPacked[input.name]!.dims).toEqual(fromJson[input.name]!.dims);
    }
  });
});

describe("packed rows with string inputs", () => {
  const TEXT: TensorSpec[] = [
    { name: "words", type: "string", shape: ["batch", "n"] },
    { name: "score", type: "float32", shape: ["batch"] },
    { name: "lang", type: "string", shape: ["batch"] },
  ];
  const long = "é".repeat(32 * 1024); // 64 KiB of UTF-8, the most an element may hold
  const rows: (TensorRow | null)[] = [
    { words: ["", "héllo", "🙂 ok"], score: 0.5, lang: "fr" },
    null,
    { words: ["a\tb\r\n"], score: -1, lang: long },
    { words: ["x", "y", "z"], score: 2, lang: "" },
  ];

  it("read back each row's strings exactly, beside the fixed-size inputs", () => {
    for (const [i, row] of rows.entries()) if (row) expect(validateRow(row, TEXT, `inputs[${i}]`)).toEqual([]);
    const packed = PackedRows.decode(packRows(rows, TEXT), TEXT);
    expect(packed.rowCount).toBe(4);
    expect(packed.isPresent(1)).toBe(false);
    expect(packed.strings(0, 0)).toEqual(["", "héllo", "🙂 ok"]);
    expect(packed.strings(0, 1)).toEqual([]);
    expect(packed.strings(0, 2)).toEqual(["a\tb\r\n"]);
    expect(packed.strings(2, 2)).toEqual([long]);
    expect(packed.strings(2, 3)).toEqual([""]);
    expect(list(packed.values(1, 3))).toEqual([2]);
    expect(packed.rowDims(0, 0)).toEqual([3]);
    expect(packed.shapeKey(0)).toBe(packed.shapeKey(3));
    expect(packed.shapeKey(0)).not.toBe(packed.shapeKey(2));
    expect(() => packed.strings(1, 0)).toThrow("input 'score' has element type float32, not string");
  });

  it("give each row's strings as self-delimiting bytes, so rows of equal text split otherwise differ", () => {
    const spec: TensorSpec[] = [{ name: "s", type: "string", shape: ["batch", 2] }];
    const packed = PackedRows.decode(packRows([{ s: ["ab", "c"] }, { s: ["a", "bc"] }], spec), spec);
    expect(packed.values(0, 0)).not.toEqual(packed.values(0, 1));
    expect(packed.values(0, 0)).toHaveLength(2 * 4 + 3);
  });

  it("weigh rows with strings in powers of two from 4 KiB, so rows of similar text share a batcher", () => {
    const packed = PackedRows.decode(packRows(rows, TEXT), TEXT);
    expect(packed.rowBytes(0)).toBe(4096);
    expect(packed.rowBytes(3)).toBe(4096);
    // 64 KiB of text plus its std::string, and the other inputs: the next power of two.
    expect(packed.rowBytes(2)).toBe(128 * 1024);
  });

  it("build string tensors equal to the JSON rows', from rows of several chunks", () => {
    const first = PackedRows.decode(packRows([rows[0]!], TEXT), TEXT);
    const second = PackedRows.decode(packRows(rows.slice(1), TEXT), TEXT);
    const packed = buildPackedBatch([{ rows: first, index: 0 }, { rows: second, index: 2 }], TEXT);
    const json = buildBatch([rows[0]!, rows[3]!], TEXT);
    for (const input of TEXT) {
      expect(packed[input.name]!.type).toBe(input.type);
      expect(packed[input.name]!.dims).toEqual(json[input.name]!.dims);
      expect(Array.from(packed[input.name]!.data as ArrayLike<unknown>)).toEqual(Array.from(json[input.name]!.data as ArrayLike<unknown>));
    }
    expect(packed.words!.data).toEqual(["", "héllo", "🙂 ok", "x", "y", "z"]);
    expect(packed.lang!.data).toEqual(["fr", ""]);
  });

  it("refuse a string section whose lengths run past its end, and rows of another shape in one batch", () => {
    const spec: TensorSpec[] = [{ name: "s", type: "string", shape: ["batch", "n"] }];
    const bytes = packRows([{ s: ["abc", "de"] }], spec);
    const corrupt = Buffer.from(bytes);
    // The first element's length prefix: header 16, present 8, k/elements 8, dims 8, bytes/0 8.
    corrupt.writeUInt32LE(1000, 48);
    expect(() => PackedRows.decode(corrupt, spec)).toThrow("a string section ends early");
    expect(() => PackedRows.decode(bytes.subarray(0, bytes.length - 8), spec)).toThrow("end early");
    const packed = PackedRows.decode(packRows([{ s: ["a"] }, { s: ["b", "c"] }], spec), spec);
    expect(() => buildPackedBatch([{ rows: packed, index: 0 }, { rows: packed, index: 1 }], spec)).toThrow("rows[1].s has 2 values where the batch needs 1");
  });
});
