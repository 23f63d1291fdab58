import type { TensorSpec } from "@coalesce/contracts";
import { describe, expect, it } from "vitest";
import { MAX_ISSUES_PER_ROW, rowShapeKey, validateRow } from "./validate-row.ts";

const IRIS: TensorSpec[] = [{ name: "features", type: "float32", shape: ["batch", 4] }];

function spec(type: string, shape: (number | string)[], name = "x"): TensorSpec[] {
  return [{ name, type, shape }];
}

describe("validateRow", () => {
  it("accepts a valid row", () => {
    expect(validateRow({ features: [5.1, 3.5, 1.4, 0.2] }, IRIS, "inputs[0]")).toEqual([]);
  });

  it("rejects a row that is not a plain object", () => {
    expect(validateRow([1, 2, 3, 4], IRIS, "inputs[3]")).toEqual([
      { path: "inputs[3]", message: "expected an object keyed by input name, got an array of 4 values" },
    ]);
    expect(validateRow(null, IRIS, "inputs[3]")[0]!.message).toBe("expected an object keyed by input name, got null");
    expect(validateRow("features", IRIS, "inputs[3]")[0]!.message).toMatch(/got the string "features"$/);
    expect(validateRow(new Map(), IRIS, "inputs[3]")).toHaveLength(1);
  });

  it("reports a missing input at its path", () => {
    expect(validateRow({}, IRIS, "inputs[17]")).toEqual([{ path: "inputs[17].features", message: "missing input" }]);
  });

  it("reports unknown keys and lists the model's inputs", () => {
    const inputs = [...IRIS, { name: "mask", type: "bool", shape: ["batch"] }];
    expect(validateRow({ features: [1, 2, 3, 4], mask: true, foo: 1 }, inputs, "inputs[2]")).toEqual([
      { path: "inputs[2].foo", message: "unknown input 'foo'; the model's inputs are: features, mask" },
    ]);
  });

  it("quotes input names that are not identifiers in paths", () => {
    expect(validateRow({}, spec("float32", ["batch", 2], "input:0"), "inputs[1]")).toEqual([
      { path: 'inputs[1]["input:0"]', message: "missing input" },
    ]);
  });

  it("reports a wrong number of values for a fixed dimension", () => {
    expect(validateRow({ features: [1, 2, 3] }, IRIS, "inputs[17]")).toEqual([
      { path: "inputs[17].features", message: "expected 4 values, got 3" },
    ]);
  });

  it("reports nesting that does not match the per-row shape", () => {
    expect(validateRow({ features: 1 }, IRIS, "r")).toEqual([
      { path: "r.features", message: "expected an array of 4 values, got 1" },
    ]);
    expect(validateRow({ features: [[1], 2, 3, 4] }, IRIS, "r")).toEqual([
      { path: "r.features[0]", message: "expected a number, got an array of 1 values" },
    ]);
    const image = spec("float32", ["batch", 2, 2]);
    expect(validateRow({ x: [1, 2] }, image, "r")).toEqual([
      { path: "r.x[0]", message: "expected an array of 2 values, got 1" },
      { path: "r.x[1]", message: "expected an array of 2 values, got 2" },
    ]);
  });

  it("treats a [batch] input as one scalar per row", () => {
    const scalar = spec("float64", ["batch"]);
    expect(validateRow({ x: 2.5 }, scalar, "r")).toEqual([]);
    expect(validateRow({ x: [2.5] }, scalar, "r")).toEqual([{ path: "r.x", message: "expected a number, got an array of 1 values" }]);
  });

  it("reports strings, booleans and null where numbers belong, with the element's path", () => {
    expect(validateRow({ features: [1, "2", true, null] }, IRIS, "inputs[17]")).toEqual([
      { path: "inputs[17].features[1]", message: 'expected a number, got the string "2"' },
      { path: "inputs[17].features[2]", message: "expected a number, got true" },
      { path: "inputs[17].features[3]", message: "expected a number, got null" },
    ]);
  });

  it("rejects non-finite numbers (only reachable from a crafted object, not JSON)", () => {
    expect(validateRow({ features: [Number.NaN, Infinity, -Infinity, 0] }, IRIS, "r")).toEqual([
      { path: "r.features[0]", message: "expected a finite number, got NaN" },
      { path: "r.features[1]", message: "expected a finite number, got Infinity" },
      { path: "r.features[2]", message: "expected a finite number, got -Infinity" },
    ]);
    expect(validateRow({ x: [Number.NaN] }, spec("float64", ["batch", 1]), "r")).toHaveLength(1);
  });

  it("rejects float32 values beyond float32's range but not float64 ones", () => {
    expect(validateRow({ x: [3.4028234663852886e38, -3.4028234663852886e38] }, spec("float32", ["b", 2]), "r")).toEqual([]);
    expect(validateRow({ x: [1e39] }, spec("float32", ["b", 1]), "r")).toEqual([
      { path: "r.x[0]", message: "1e+39 is outside the float32 range (±3.4028234663852886e+38)" },
    ]);
    expect(validateRow({ x: [1e39] }, spec("float64", ["b", 1]), "r")).toEqual([]);
  });

  it("checks int32 values are integers in range", () => {
    const int32 = spec("int32", ["b", 4]);
    expect(validateRow({ x: [0, -2147483648, 2147483647, 7] }, int32, "r")).toEqual([]);
    expect(validateRow({ x: [1.5, 2147483648, -2147483649, "3"] }, int32, "r")).toEqual([
      { path: "r.x[0]", message: "expected an integer, got 1.5" },
      { path: "r.x[1]", message: "2147483648 is outside the int32 range (-2147483648 to 2147483647)" },
      { path: "r.x[2]", message: "-2147483649 is outside the int32 range (-2147483648 to 2147483647)" },
      { path: "r.x[3]", message: 'expected an integer, got the string "3"' },
    ]);
  });

  it("accepts int64 as safe integers or decimal strings within int64 range", () => {
    const int64 = spec("int64", ["b", 6]);
    const ok = [9007199254740991, -9007199254740991, "9007199254740993", "9223372036854775807", "-9223372036854775808", "0"];
    expect(validateRow({ x: ok }, int64, "r")).toEqual([]);
  });

  it("rejects int64 values that would lose precision, are out of range or are not integers", () => {
    const bad = [9007199254740992, "9223372036854775808", "-9223372036854775809", "12a", "1.5", "", " 1", 2.5, true, "1".repeat(400)];
    const issues = validateRow({ x: bad }, spec("int64", ["b", bad.length]), "r");
    expect(issues.map((i) => i.path)).toEqual(bad.map((_, i) => `r.x[${i}]`));
    expect(issues.map((i) => i.message)).toEqual([
      "9007199254740992 is too large to be exact as a JSON number; send integers beyond ±9007199254740991 as decimal strings",
      "9223372036854775808 is outside the int64 range",
      "-9223372036854775809 is outside the int64 range",
      'expected an integer or a decimal integer string, got the string "12a"',
      'expected an integer or a decimal integer string, got the string "1.5"',
      'expected an integer or a decimal integer string, got the string ""',
      'expected an integer or a decimal integer string, got the string " 1"',
      "expected an integer, got 2.5",
      "expected an integer, got true",
      "1111111111111111111111111111111111111... is outside the int64 range",
    ]);
  });

  it("accepts only true and false for bool inputs", () => {
    const bool = spec("bool", ["b", 4]);
    expect(validateRow({ x: [true, false, true, false] }, bool, "r")).toEqual([]);
    expect(validateRow({ x: [1, 0, "true", null] }, bool, "r").map((i) => i.message)).toEqual([
      "expected true or false, got 1",
      "expected true or false, got 0",
      'expected true or false, got the string "true"',
      "expected true or false, got null",
    ]);
  });

  it("checks int8, int16, uint8 and uint16 values are integers in their type's range", () => {
    const check = (type: string, values: unknown[]) => validateRow({ x: values }, spec(type, ["b", values.length]), "inputs[3]");
    expect(check("int8", [-128, 127, 0])).toEqual([]);
    expect(check("uint8", [0, 255])).toEqual([]);
    expect(check("int16", [-32768, 32767])).toEqual([]);
    expect(check("uint16", [0, 65535])).toEqual([]);
    expect(check("int8", [200, 1.5, -129, "7"])).toEqual([
      { path: "inputs[3].x[0]", message: "200 is outside the int8 range (-128 to 127)" },
      { path: "inputs[3].x[1]", message: "expected an integer, got 1.5" },
      { path: "inputs[3].x[2]", message: "-129 is outside the int8 range (-128 to 127)" },
      { path: "inputs[3].x[3]", message: 'expected an integer, got the string "7"' },
    ]);
    expect(check("uint8", [-1, 256]).map((i) => i.message)).toEqual(["-1 is outside the uint8 range (0 to 255)", "256 is outside the uint8 range (0 to 255)"]);
    expect(check("int16", [32768]).map((i) => i.message)).toEqual(["32768 is outside the int16 range (-32768 to 32767)"]);
    expect(check("uint16", [2.5, 65536, true]).map((i) => i.message)).toEqual([
      "expected an integer, got 2.5",
      "65536 is outside the uint16 range (0 to 65535)",
      "expected an integer, got true",
    ]);
  });

  it("takes any finite float16 value within ±65504 (rounded later), and refuses the rest", () => {
    const half = spec("float16", ["b", "n"]);
    expect(validateRow({ x: [65504, -65504, 0.1, 1e-12, -0] }, half, "r")).toEqual([]);
    expect(validateRow({ x: [65505, -70000, "1", Infinity] }, half, "r")).toEqual([
      { path: "r.x[0]", message: "65505 is outside the float16 range (±65504)" },
      { path: "r.x[1]", message: "-70000 is outside the float16 range (±65504)" },
      { path: "r.x[2]", message: 'expected a number, got the string "1"' },
      { path: "r.x[3]", message: "expected a finite number, got Infinity" },
    ]);
  });

  it("takes strings of up to 64 KiB of UTF-8 for string inputs, and nothing else", () => {
    const text = spec("string", ["b", "n"]);
    const most = "é".repeat(32 * 1024);
    expect(validateRow({ x: ["", "héllo", "🙂", most, "x".repeat(65536)] }, text, "r")).toEqual([]);
    expect(validateRow({ x: [most + "a", "x".repeat(65537), 5, null, true] }, text, "inputs[2]")).toEqual([
      { path: "inputs[2].x[0]", message: "a string of 65537 bytes (UTF-8) is longer than the 65536 bytes a string element may have" },
      { path: "inputs[2].x[1]", message: "a string of 65537 bytes (UTF-8) is longer than the 65536 bytes a string element may have" },
      { path: "inputs[2].x[2]", message: "expected a string, got 5" },
      { path: "inputs[2].x[3]", message: "expected a string, got null" },
      { path: "inputs[2].x[4]", message: "expected a string, got true" },
    ]);
    // A scalar string input takes one string per row, not an array of them.
    expect(validateRow({ x: ["a"] }, spec("string", ["b"]), "r")).toEqual([{ path: "r.x", message: "expected a string, got an array of 1 values" }]);
  });

  it("refuses strings onnxruntime would not receive as sent: a NUL inside, a lone surrogate", () => {
    expect(validateRow({ x: ["a\u0000b", "\ud800x", "ok \ud83d\ude42"] }, spec("string", ["b", 3]), "r")).toEqual([
      { path: "r.x[0]", message: 'the string "a\\u0000b" holds a NUL character, which onnxruntime cannot take inside a string' },
      { path: "r.x[1]", message: 'the string "\\ud800x" holds a lone UTF-16 surrogate, which has no UTF-8 form' },
    ]);
  });

  it("accepts any positive length for symbolic dimensions but requires rectangular arrays", () => {
    const image = spec("float32", ["batch", "height", "width"]);
    expect(validateRow({ x: [[1, 2, 3]] }, image, "r")).toEqual([]);
    expect(validateRow({ x: [[1], [2], [3]] }, image, "r")).toEqual([]);
    expect(validateRow({ x: [[1, 2], [3, 4, 5], [6, 7]] }, image, "inputs[4]")).toEqual([
      { path: "inputs[4].x[1]", message: "ragged array: expected 2 values like the other arrays at this depth, got 3" },
    ]);
    expect(validateRow({ x: [] }, image, "r")).toEqual([{ path: "r.x", message: "expected at least 1 value, got an empty array" }]);
  });

  it("finds ragged arrays below fixed dimensions too", () => {
    const sequence = spec("int32", ["batch", 2, "tokens"]);
    expect(validateRow({ x: [[1, 2], [3]] }, sequence, "r")).toEqual([
      { path: "r.x[1]", message: "ragged array: expected 2 values like the other arrays at this depth, got 1" },
    ]);
  });

  it(`stops after ${MAX_ISSUES_PER_ROW} issues`, () => {
    const huge = Array.from({ length: 100_000 }, () => "nope");
    const issues = validateRow({ x: huge, y: "also wrong", z: 1 }, [...spec("float32", ["b", "n"]), ...spec("float32", ["b"], "y")], "r");
    expect(issues).toHaveLength(MAX_ISSUES_PER_ROW);
    expect(issues[0]).toEqual({ path: "r.x[0]", message: 'expected a number, got the string "nope"' });
    expect(issues.at(-1)!.path).toBe(`r.x[${MAX_ISSUES_PER_ROW - 1}]`);
  });

  it("reports issues in every input and unknown keys in one pass", () => {
    const inputs = [...spec("float32", ["b", 2], "a"), ...spec("int32", ["b"], "b")];
    expect(validateRow({ a: [1], b: 1.5, c: 0 }, inputs, "r")).toEqual([
      { path: "r.a", message: "expected 2 values, got 1" },
      { path: "r.b", message: "expected an integer, got 1.5" },
      { path: "r.c", message: "unknown input 'c'; the model's inputs are: a, b" },
    ]);
  });
});

describe("rowShapeKey", () => {
  it("is the same for every row when all per-row dimensions are fixed", () => {
    expect(rowShapeKey({ features: [1, 2, 3, 4] }, IRIS)).toBe("");
    expect(rowShapeKey({ x: 1 }, spec("float32", ["batch"]))).toBe("");
  });

  it("separates rows whose open dimensions differ", () => {
    const image = spec("float32", ["batch", 3, "height", "width"]);
    const a = { x: [[[1, 2]], [[1, 2]], [[1, 2]]] };
    const b = { x: [[[5, 6]], [[7, 8]], [[9, 0]]] };
    const c = { x: [[[1], [2]], [[1], [2]], [[1], [2]]] };
    expect(rowShapeKey(a, image)).toBe(rowShapeKey(b, image));
    expect(rowShapeKey(a, image)).not.toBe(rowShapeKey(c, image));
  });

  it("keeps inputs apart so lengths cannot be confused across inputs", () => {
    const inputs = [...spec("int64", ["b", "n"], "ids"), ...spec("int64", ["b", "m"], "mask")];
    const one = rowShapeKey({ ids: [1, 2], mask: [1] }, inputs);
    const two = rowShapeKey({ ids: [1], mask: [1, 2] }, inputs);
    expect(one).not.toBe(two);
  });
});
