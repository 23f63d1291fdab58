import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { InvalidModelError, inspectModel, maxBatchRows } from "./inspect-model.ts";
import { buildIdentityModel, buildOnnxModel } from "./tiny-onnx.ts";
import { loadFixture } from "./testing/fixtures.ts";

async function fixtureBytes(name: "iris" | "digits"): Promise<Uint8Array> {
  return readFile((await loadFixture(name)).modelPath);
}

async function invalidMessage(bytes: Uint8Array): Promise<string> {
  const error: unknown = await inspectModel(bytes).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(InvalidModelError);
  return (error as InvalidModelError).message;
}

describe("inspectModel", () => {
  it("reads the iris signature", async () => {
    const signature = await inspectModel(await fixtureBytes("iris"));
    expect(signature).toEqual({
      inputs: [{ name: "features", type: "float32", shape: ["batch", 4] }],
      outputs: [
        { name: "probabilities", type: "float32", shape: ["batch", 3] },
        { name: "label", type: "int64", shape: ["batch"] },
      ],
    });
    expect(maxBatchRows(signature)).toBe(Infinity);
  });

  it("reads the digits signature", async () => {
    expect(await inspectModel(await fixtureBytes("digits"))).toEqual({
      inputs: [{ name: "features", type: "float32", shape: ["batch", 64] }],
      outputs: [
        { name: "probabilities", type: "float32", shape: ["batch", 10] },
        { name: "label", type: "int64", shape: ["batch"] },
      ],
    });
  });

  it("accepts every input type rows can carry", async () => {
    for (const type of ["float32", "float64", "int32", "int64", "bool"] as const) {
      const signature = await inspectModel(buildIdentityModel(type, ["n", 2]));
      expect(signature.inputs).toEqual([{ name: "x", type, shape: ["n", 2] }]);
    }
  });

  it("treats an unnamed first dimension as the batch dimension (ORT reports it as '')", async () => {
    const signature = await inspectModel(buildIdentityModel("float32", [null, 3]));
    expect(signature.inputs[0]!.shape).toEqual(["", 3]);
    expect(maxBatchRows(signature)).toBe(Infinity);
  });

  it("accepts a batch dimension fixed to 1, limiting batches to one row", async () => {
    const signature = await inspectModel(buildIdentityModel("float32", [1, 3]));
    expect(signature.inputs[0]!.shape).toEqual([1, 3]);
    expect(maxBatchRows(signature)).toBe(1);
  });

  it("rejects random bytes as not loadable, quoting ONNX Runtime", async () => {
    expect(await invalidMessage(randomBytes(512))).toMatch(/^the file is not a loadable ONNX model: \S/);
  });

  it("rejects an empty file", async () => {
    expect(await invalidMessage(new Uint8Array())).toBe("the file is empty, not an ONNX model");
  });

  it("rejects a well-formed protobuf whose graph ONNX Runtime cannot load", async () => {
    const bytes = buildOnnxModel({
      inputs: [{ name: "x", type: "float32", shape: ["n"] }],
      outputs: [{ name: "y", type: "float32", shape: ["n"] }],
      nodes: [{ opType: "NoSuchOp", inputs: ["x"], outputs: ["y"] }],
    });
    expect(await invalidMessage(bytes)).toMatch(/^the file is not a loadable ONNX model: .*NoSuchOp/);
  });

  it("rejects an input type rows cannot carry", async () => {
    expect(await invalidMessage(buildIdentityModel("uint32", ["n"]))).toBe(
      "input 'x' has element type uint32; supported input types are float32, float64, float16, int8, int16, int32, int64, uint8, uint16, bool, string",
    );
    expect(await invalidMessage(buildIdentityModel("uint64", ["n"]))).toMatch(/element type uint64/);
  });

  it("accepts the small integer types, float16 and string as inputs", async () => {
    for (const type of ["int8", "int16", "uint8", "uint16", "float16", "string"] as const) {
      const signature = await inspectModel(buildIdentityModel(type, ["batch", "n"]));
      expect(signature.inputs).toEqual([{ name: "x", type, shape: ["batch", "n"] }]);
      expect(signature.outputs).toEqual([{ name: "y", type, shape: ["batch", "n"] }]);
    }
  });

  it("rejects inputs without a batch dimension", async () => {
    expect(await invalidMessage(buildIdentityModel("float32", []))).toMatch(/^input 'x' has no batch dimension/);
    expect(await invalidMessage(buildIdentityModel("float32", null))).toMatch(/^input 'x' has no batch dimension/);
    expect(await invalidMessage(buildIdentityModel("float32", [3, 4]))).toBe(
      "input 'x' has shape [3, 4], with its first dimension fixed to 3; the first dimension of every input must be the batch dimension (symbolic, or 1)",
    );
  });

  it("rejects non-tensor inputs and outputs", async () => {
    const sequenceOut = buildOnnxModel({
      inputs: [{ name: "x", type: "float32", shape: ["n"] }],
      outputs: [{ name: "s", kind: "sequence", type: "float32" }],
      nodes: [{ opType: "SequenceConstruct", inputs: ["x"], outputs: ["s"] }],
    });
    expect(await invalidMessage(sequenceOut)).toMatch(/^output 's' is not a tensor/);

    const sequenceIn = buildOnnxModel({
      inputs: [{ name: "s", kind: "sequence", type: "float32" }],
      outputs: [{ name: "n", type: "int64", shape: [] }],
      nodes: [{ opType: "SequenceLength", inputs: ["s"], outputs: ["n"] }],
    });
    expect(await invalidMessage(sequenceIn)).toMatch(/^input 's' is not a tensor/);
  });
});

describe("maxBatchRows", () => {
  it("is 1 when any input fixes its batch dimension to 1", () => {
    expect(
      maxBatchRows({
        inputs: [
          { name: "a", type: "float32", shape: ["batch", 2] },
          { name: "b", type: "float32", shape: [1, 2] },
        ],
        outputs: [],
      }),
    ).toBe(1);
    expect(maxBatchRows({ inputs: [{ name: "a", type: "float32", shape: [-1, 2] }], outputs: [] })).toBe(Infinity);
  });
});
