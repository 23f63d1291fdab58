import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findExternalData, MalformedModelError } from "./external-data.ts";
import { buildOnnxModelWithExternalData, buildRandomMlp } from "./tiny-onnx.ts";

const FIXTURES = join(import.meta.dirname, "../../../fixtures");

describe("findExternalData", () => {
  it("lists each external tensor with its location, offset and length", () => {
    const { model } = buildOnnxModelWithExternalData(
      {
        inputs: [{ name: "x", type: "float32", shape: ["batch", 2] }],
        outputs: [{ name: "y", type: "float32", shape: ["batch", 2] }],
        nodes: [{ opType: "Add", inputs: ["x", "b"], outputs: ["y"] }],
        initializers: [{ name: "inline", dims: [2], data: Float32Array.from([1, 2]) }],
      },
      [
        { name: "b", dims: [2], data: Float32Array.from([3, 4]), location: "data/b.bin" },
        { name: "c", dims: [3], data: Float32Array.from([5, 6, 7]), location: "data/b.bin" },
      ],
    );
    expect(findExternalData(model)).toEqual([
      { tensor: "b", location: "data/b.bin", offset: 0, length: 8 },
      { tensor: "c", location: "data/b.bin", offset: 8, length: 12 },
    ]);
  });

  it("finds none in models that keep their data inline", async () => {
    expect(findExternalData(new Uint8Array(await readFile(join(FIXTURES, "iris.onnx"))))).toEqual([]);
    expect(findExternalData(buildRandomMlp([4, 8, 2]))).toEqual([]);
  });

  it("throws MalformedModelError on bytes that are not a protobuf message", () => {
    const model = buildRandomMlp([4, 8, 2]);
    expect(() => findExternalData(model.subarray(0, model.byteLength - 7))).toThrow(MalformedModelError);
    expect(() => findExternalData(new TextEncoder().encode("this is not an onnx model"))).toThrow(MalformedModelError);
  });
});
