import { readFile } from "node:fs/promises";
import * as ort from "onnxruntime-node";
import type { ModelSignature, TensorRow, TensorSpec } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inspectModel } from "./inspect-model.ts";
import { loadSession } from "./session.ts";
import { buildBatch, splitOutputs } from "./tensor.ts";
import { loadFixture, type Fixture, type FixtureName } from "./testing/fixtures.ts";
import { buildIdentityModel, buildOnnxModel, type ElemTypeName, type TinyDim } from "./tiny-onnx.ts";
import { rowShapeKey, validateRow } from "./validate-row.ts";

async function predict(session: ort.InferenceSession, signature: ModelSignature, rows: TensorRow[]): Promise<TensorRow[]> {
  const results = await session.run(buildBatch(rows, signature.inputs));
  return splitOutputs(results, signature.outputs, rows.length);
}

function chunk<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}

describe.each<FixtureName>(["iris", "digits"])("predicting %s end to end", (name) => {
  let fixture: Fixture;
  let signature: ModelSignature;
  let session: ort.InferenceSession;
  let rows: TensorRow[];

  beforeAll(async () => {
    fixture = await loadFixture(name);
    signature = await inspectModel(await readFile(fixture.modelPath));
    session = await loadSession(fixture.modelPath, { intraOpNumThreads: 1 });
    rows = fixture.features.map((features) => ({ features }));
  });

  afterAll(async () => {
    await session.release();
  });

  function expectMatchesReference(outputs: TensorRow[]): void {
    expect(outputs).toHaveLength(fixture.reference.length);
    for (let i = 0; i < outputs.length; i++) {
      const reference = fixture.reference[i]!;
      expect(reference.row_id).toBe(fixture.rowIds[i]);
      const output = outputs[i]!;
      expect(Object.keys(output)).toEqual(["probabilities", "label"]);
      expect(output.label).toBe(reference.label);
      const probabilities = output.probabilities as number[];
      expect(probabilities).toHaveLength(reference.probabilities.length);
      for (let c = 0; c < probabilities.length; c++) {
        expect(Math.abs(probabilities[c]! - reference.probabilities[c]!)).toBeLessThanOrEqual(1e-5);
      }
    }
  }

  it("has rows that all validate and share one shape key", () => {
    const keys = new Set<string>();
    for (let i = 0; i < rows.length; i++) {
      expect(validateRow(rows[i], signature.inputs, `inputs[${i}]`)).toEqual([]);
      keys.add(rowShapeKey(rows[i]!, signature.inputs));
    }
    expect([...keys]).toEqual([""]);
  });

  it("matches the reference with every row in one batch", async () => {
    const features = signature.inputs[0]!;
    const feeds = buildBatch(rows, signature.inputs);
    expect(feeds[features.name]!.dims).toEqual([rows.length, features.shape[1]]);
    expectMatchesReference(await predict(session, signature, rows));
  });

  it("matches the reference in batches of 7", async () => {
    const outputs: TensorRow[] = [];
    for (const batch of chunk(rows, 7)) outputs.push(...(await predict(session, signature, batch)));
    expectMatchesReference(outputs);
  });
});

describe("buildBatch", () => {
  it("builds float64 tensors", () => {
    const feeds = buildBatch([{ x: [1.5, 2] }, { x: [3, -4.25] }], [{ name: "x", type: "float64", shape: ["b", 2] }]);
    const x = feeds.x!;
    expect(x.type).toBe("float64");
    expect(x.dims).toEqual([2, 2]);
    expect(x.data).toEqual(new Float64Array([1.5, 2, 3, -4.25]));
  });

  it("builds int32 tensors", () => {
    const feeds = buildBatch([{ x: [[1], [2]] }, { x: [[-2147483648], [2147483647]] }], [{ name: "x", type: "int32", shape: ["b", 2, 1] }]);
    expect(feeds.x!.type).toBe("int32");
    expect(feeds.x!.dims).toEqual([2, 2, 1]);
    expect(feeds.x!.data).toEqual(new Int32Array([1, 2, -2147483648, 2147483647]));
  });

  it("builds int64 tensors from safe integers and decimal strings", () => {
    const feeds = buildBatch([{ x: 7 }, { x: "9007199254740993" }, { x: "-9223372036854775808" }], [{ name: "x", type: "int64", shape: ["b"] }]);
    expect(feeds.x!.type).toBe("int64");
    expect(feeds.x!.dims).toEqual([3]);
    expect(feeds.x!.data).toEqual(new BigInt64Array([7n, 9007199254740993n, -9223372036854775808n]));
  });

  it("builds bool tensors as one byte per element", () => {
    const feeds = buildBatch([{ m: [true, false, true] }], [{ name: "m", type: "bool", shape: [1, 3] }]);
    expect(feeds.m!.type).toBe("bool");
    expect(feeds.m!.dims).toEqual([1, 3]);
    expect(feeds.m!.data).toEqual(new Uint8Array([1, 0, 1]));
  });

  it("builds small integer tensors in their own typed arrays, float16 as half-precision bits", () => {
    const build = (type: string, rows: TensorRow[]) => buildBatch(rows, [{ name: "x", type, shape: ["b", 2] }]).x!;
    expect(build("int8", [{ x: [-128, 127] }]).data).toEqual(new Int8Array([-128, 127]));
    expect(build("uint8", [{ x: [0, 255] }]).data).toEqual(new Uint8Array([0, 255]));
    expect(build("int16", [{ x: [-32768, 32767] }]).data).toEqual(new Int16Array([-32768, 32767]));
    expect(build("uint16", [{ x: [0, 65535] }]).data).toEqual(new Uint16Array([0, 65535]));
    const half = build("float16", [{ x: [1, -2.5] }, { x: [65504, 0.1] }]);
    expect(half.type).toBe("float16");
    expect(half.data).toEqual(new Uint16Array([0x3c00, 0xc100, 0x7bff, 0x2e66]));
  });

  it("builds string tensors as arrays of the rows' strings", () => {
    const feeds = buildBatch([{ s: [["a", "b"]] }, { s: [["", "ü"]] }], [{ name: "s", type: "string", shape: ["b", 1, "n"] }]);
    expect(feeds.s!.type).toBe("string");
    expect(feeds.s!.dims).toEqual([2, 1, 2]);
    expect(feeds.s!.data).toEqual(["a", "b", "", "ü"]);
  });

  it("takes open dimensions from the rows and builds one tensor per input", () => {
    const inputs: TensorSpec[] = [
      { name: "ids", type: "int64", shape: ["b", "tokens"] },
      { name: "scale", type: "float32", shape: ["b"] },
    ];
    const feeds = buildBatch(
      [
        { ids: [1, 2, 3], scale: 0.5 },
        { ids: [4, 5, 6], scale: 2 },
      ],
      inputs,
    );
    expect(feeds.ids!.dims).toEqual([2, 3]);
    expect(feeds.ids!.data).toEqual(new BigInt64Array([1n, 2n, 3n, 4n, 5n, 6n]));
    expect(feeds.scale!.dims).toEqual([2]);
    expect(feeds.scale!.data).toEqual(new Float32Array([0.5, 2]));
  });

  it("refuses rows that do not fit the batch shape instead of shifting data", () => {
    const inputs: TensorSpec[] = [{ name: "x", type: "float32", shape: ["b", "n"] }];
    expect(() => buildBatch([{ x: [1, 2] }, { x: [1, 2, 3] }], inputs)).toThrow(/rows\[1\]\.x has 3 values where the batch needs 2/);
    expect(() => buildBatch([], inputs)).toThrow(/0 rows/);
  });
});

describe("buildBatch and splitOutputs through ONNX Runtime", () => {
  async function roundTrip(type: ElemTypeName, shape: TinyDim[], rows: TensorRow[]): Promise<TensorRow[]> {
    const session = await ort.InferenceSession.create(buildIdentityModel(type, shape));
    try {
      const spec = { type, shape: shape.map((d) => d ?? "") };
      const results = await session.run(buildBatch(rows, [{ name: "x", ...spec }]));
      return splitOutputs(results, [{ name: "y", ...spec }], rows.length);
    } finally {
      await session.release();
    }
  }

  it("returns every input type as it was sent", async () => {
    expect(await roundTrip("float32", ["b", 2], [{ x: [0.5, -1] }, { x: [2, 3] }])).toEqual([{ y: [0.5, -1] }, { y: [2, 3] }]);
    expect(await roundTrip("float64", ["b"], [{ x: 0.1 }, { x: 1e300 }])).toEqual([{ y: 0.1 }, { y: 1e300 }]);
    expect(await roundTrip("int32", ["b", 1], [{ x: [-5] }])).toEqual([{ y: [-5] }]);
    expect(await roundTrip("bool", ["b", 2], [{ x: [true, false] }, { x: [false, true] }])).toEqual([
      { y: [true, false] },
      { y: [false, true] },
    ]);
  });

  it("returns the small integer types, float16 (rounded to the nearest half) and strings", async () => {
    expect(await roundTrip("int8", ["b", 2], [{ x: [-128, 127] }, { x: [0, -1] }])).toEqual([{ y: [-128, 127] }, { y: [0, -1] }]);
    expect(await roundTrip("uint8", ["b"], [{ x: 0 }, { x: 255 }])).toEqual([{ y: 0 }, { y: 255 }]);
    expect(await roundTrip("int16", ["b", 1], [{ x: [-32768] }, { x: [32767] }])).toEqual([{ y: [-32768] }, { y: [32767] }]);
    expect(await roundTrip("uint16", ["b", 2], [{ x: [0, 65535] }])).toEqual([{ y: [0, 65535] }]);
    expect(await roundTrip("float16", ["b", 4], [{ x: [1, -2.5, 65504, 0.1] }])).toEqual([{ y: [1, -2.5, 65504, 0.0999755859375] }]);
    const text = [{ x: ["", "héllo", "🙂"] }, { x: ["a\tb\n", "x".repeat(20_000), "z"] }];
    expect(await roundTrip("string", ["b", "n"], text)).toEqual(text.map(({ x }) => ({ y: x })));
  });

  it("returns int64 values beyond 2^53 as decimal strings and smaller ones as numbers", async () => {
    const rows = [{ x: ["9007199254740993", 42] }, { x: ["-9223372036854775808", "12"] }];
    expect(await roundTrip("int64", ["b", 2], rows)).toEqual([{ y: ["9007199254740993", 42] }, { y: ["-9223372036854775808", 12] }]);
  });

  it("keeps nesting for open dimensions", async () => {
    const rows = [{ x: [[1, 2, 3], [4, 5, 6]] }, { x: [[7, 8, 9], [10, 11, 12]] }];
    expect(await roundTrip("float32", [null, "h", "w"], rows)).toEqual([{ y: [[1, 2, 3], [4, 5, 6]] }, { y: [[7, 8, 9], [10, 11, 12]] }]);
  });

  it("explains an output that does not keep the batch dimension", async () => {
    const bytes = buildOnnxModel({
      inputs: [{ name: "x", type: "float32", shape: ["n", 2] }],
      outputs: [{ name: "total", type: "float32", shape: null }],
      nodes: [{ opType: "ReduceSum", inputs: ["x"], outputs: ["total"], intAttributes: { keepdims: 0 } }],
    });
    const session = await ort.InferenceSession.create(bytes);
    try {
      const rows = [{ x: [1, 2] }, { x: [3, 4] }, { x: [5, 6] }];
      const signature = { inputs: [{ name: "x", type: "float32", shape: ["n", 2] }], outputs: [{ name: "total", type: "float32", shape: [] }] };
      const results = await session.run(buildBatch(rows, signature.inputs));
      expect(() => splitOutputs(results, signature.outputs, rows.length)).toThrow(
        "output 'total' has shape [] for a batch of 3 rows: the model does not keep the batch dimension as the first dimension of this output, so its results cannot be split into rows",
      );
    } finally {
      await session.release();
    }
  });
});

describe("splitOutputs", () => {
  const spec = (name: string, type: string): TensorSpec => ({ name, type, shape: ["b"] });

  it("turns int64 and uint64 beyond ±(2^53 - 1) into strings", () => {
    const results = {
      i: new ort.Tensor("int64", new BigInt64Array([2n ** 53n, 2n ** 53n - 1n, -(2n ** 53n) + 1n, -(2n ** 53n)]), [4]),
      u: new ort.Tensor("uint64", new BigUint64Array([2n ** 64n - 1n, 1n, 0n, 2n ** 60n]), [4]),
    };
    expect(splitOutputs(results, [spec("i", "int64"), spec("u", "uint64")], 4)).toEqual([
      { i: "9007199254740992", u: "18446744073709551615" },
      { i: 9007199254740991, u: 1 },
      { i: -9007199254740991, u: 0 },
      { i: "-9007199254740992", u: "1152921504606846976" },
    ]);
  });

  it("converts small integer, bool, string and float16 outputs to JSON values", () => {
    const results = {
      a: new ort.Tensor("uint8", new Uint8Array([255, 0]), [2]),
      b: new ort.Tensor("bool", new Uint8Array([1, 0]), [2]),
      s: new ort.Tensor("string", ["cat", "dög"], [2]),
      h: new ort.Tensor("float16", new Uint16Array([0x3c00, 0xc100]), [2]),
    };
    const outputs = [spec("a", "uint8"), spec("b", "bool"), spec("s", "string"), spec("h", "float16")];
    expect(splitOutputs(results, outputs, 2)).toEqual([
      { a: 255, b: true, s: "cat", h: 1 },
      { a: 0, b: false, s: "dög", h: -2.5 },
    ]);
  });

  it("splits zero-sized trailing dimensions into empty arrays", () => {
    const results = { e: new ort.Tensor("float32", new Float32Array(0), [2, 0]) };
    expect(splitOutputs(results, [spec("e", "float32")], 2)).toEqual([{ e: [] }, { e: [] }]);
  });

  it("names an output the run did not return", () => {
    expect(() => splitOutputs({}, [spec("missing", "float32")], 1)).toThrow("the model run returned no output 'missing'");
  });
});
