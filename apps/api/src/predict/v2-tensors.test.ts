import type { PredictRowResult, TensorSpec } from "@coalesce/contracts";
import { describe, expect, it } from "vitest";
import { rowsFromV2Inputs, selectOutputs, stackOutputs, toV2Datatype, toV2Shape, toV2TensorMetadata, V2RequestError, writeInferResponse } from "./v2-tensors.ts";

const FEATURES: TensorSpec = { name: "features", type: "float32", shape: ["batch", 4] };
const IDS: TensorSpec = { name: "ids", type: "int64", shape: ["batch"] };
const GRID: TensorSpec = { name: "grid", type: "float32", shape: ["batch", 2, "w"] };

const refused = (run: () => unknown) => {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(V2RequestError);
    return (error as Error).message;
  }
  throw new Error("expected a V2RequestError");
};

describe("metadata", () => {
  it("maps every tensor type to the protocol's datatype", () => {
    const types = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "string"];
    expect(types.map(toV2Datatype)).toEqual(["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]);
  });

  it("writes -1 for the batch dimension and for every symbolic or unknown one", () => {
    expect(toV2Shape(["batch", 4])).toEqual([-1, 4]);
    expect(toV2Shape([1, "h", "", 3, -1])).toEqual([-1, -1, -1, 3, -1]);
    expect(toV2TensorMetadata(GRID)).toEqual({ name: "grid", datatype: "FP32", shape: [-1, 2, -1] });
  });
});

describe("rowsFromV2Inputs", () => {
  it("splits a flat tensor into rows along the first dimension", () => {
    const rows = rowsFromV2Inputs([{ name: "features", datatype: "FP32", shape: [2, 4], data: [1, 2, 3, 4, 5, 6, 7, 8] }], [FEATURES], 1024);
    expect(rows).toEqual([{ features: [1, 2, 3, 4] }, { features: [5, 6, 7, 8] }]);
  });

  it("takes data nested exactly as the shape, to the same rows as flat data", () => {
    const flat = rowsFromV2Inputs([{ name: "grid", datatype: "FP32", shape: [1, 2, 3], data: [1, 2, 3, 4, 5, 6] }], [GRID], 1024);
    const nested = rowsFromV2Inputs([{ name: "grid", datatype: "FP32", shape: [1, 2, 3], data: [[[1, 2, 3], [4, 5, 6]]] }], [GRID], 1024);
    expect(nested).toEqual(flat);
    expect(flat).toEqual([{ grid: [[1, 2, 3], [4, 5, 6]] }]);
  });

  it("refuses nesting that does not follow the shape", () => {
    expect(refused(() => rowsFromV2Inputs([{ name: "grid", datatype: "FP32", shape: [1, 2, 3], data: [[1, 2, 3], [4, 5, 6]] }], [GRID], 1024))).toMatch(
      /input 'grid': nested data must follow the shape \[1, 2, 3\]/,
    );
    expect(refused(() => rowsFromV2Inputs([{ name: "features", datatype: "FP32", shape: [1, 4], data: [[1, 2], [3, 4]] }], [FEATURES], 1024))).toMatch(/nested data/);
  });

  it("gives one row per batch index of a rank-1 input, the element itself", () => {
    const rows = rowsFromV2Inputs([{ name: "ids", datatype: "INT64", shape: [3], data: [1, "9007199254740993", -2] }], [IDS], 1024);
    expect(rows).toEqual([{ ids: 1 }, { ids: "9007199254740993" }, { ids: -2 }]);
  });

  it("refuses another datatype than the model's, naming both", () => {
    expect(refused(() => rowsFromV2Inputs([{ name: "features", datatype: "FP64", shape: [1, 4], data: [1, 2, 3, 4] }], [FEATURES], 1024))).toBe(
      "input 'features' has datatype FP64, but the model takes FP32",
    );
  });

  it("refuses a shape that does not fit the model's", () => {
    expect(refused(() => rowsFromV2Inputs([{ name: "features", datatype: "FP32", shape: [1, 3], data: [1, 2, 3] }], [FEATURES], 1024))).toMatch(
      /input 'features' has shape \[1, 3\], which does not fit the model's \[-1, 4\]/,
    );
    expect(refused(() => rowsFromV2Inputs([{ name: "features", datatype: "FP32", shape: [4], data: [1, 2, 3, 4] }], [FEATURES], 1024))).toMatch(/does not fit/);
  });

  it("refuses an element count that is not the shape's product", () => {
    expect(refused(() => rowsFromV2Inputs([{ name: "features", datatype: "FP32", shape: [2, 4], data: [1, 2, 3, 4] }], [FEATURES], 1024))).toBe(
      "input 'features' has 4 elements in data, but its shape [2, 4] holds 8",
    );
  });

  it("refuses unknown, missing and repeated inputs, listing the model's", () => {
    const features = { name: "features", datatype: "FP32", shape: [1, 4], data: [1, 2, 3, 4] };
    expect(refused(() => rowsFromV2Inputs([features, { ...features, name: "extra" }], [FEATURES], 1024))).toBe("unknown input 'extra'; the model's inputs are: features");
    expect(refused(() => rowsFromV2Inputs([features], [FEATURES, IDS], 1024))).toBe("missing input 'ids'; the model's inputs are: features, ids");
    expect(refused(() => rowsFromV2Inputs([features, features], [FEATURES], 1024))).toBe("input 'features' is given twice");
  });

  it("refuses inputs that disagree on the batch size, an empty batch, and more rows than the limit", () => {
    const features = { name: "features", datatype: "FP32", shape: [1, 4], data: [1, 2, 3, 4] };
    expect(refused(() => rowsFromV2Inputs([features, { name: "ids", datatype: "INT64", shape: [2], data: [1, 2] }], [FEATURES, IDS], 1024))).toMatch(
      /disagree on the batch size .*'features' has 1, 'ids' has 2/,
    );
    expect(refused(() => rowsFromV2Inputs([{ ...features, shape: [0, 4], data: [] }], [FEATURES], 1024))).toMatch(/batch size .* is 0/);
    expect(refused(() => rowsFromV2Inputs([{ ...features, shape: [3, 4], data: new Array(12).fill(1) }], [FEATURES], 2))).toMatch(/at most 2 rows \(PREDICT_MAX_ROWS\), got a batch of 3/);
  });

  it("checks elements as job rows are checked, naming each place in the tensor", () => {
    const message = refused(() => rowsFromV2Inputs([{ name: "features", datatype: "FP32", shape: [2, 4], data: [1, 2, 3, 4, 5, "x", 7, null] }], [FEATURES], 1024));
    expect(message).toBe("input 'features' [1][1]: expected a number, got the string \"x\"; input 'features' [1][3]: expected a number, got null");
    expect(refused(() => rowsFromV2Inputs([{ name: "ids", datatype: "INT64", shape: [1], data: [2 ** 60] }], [IDS], 1024))).toMatch(
      /input 'ids' \[0\]: .* send integers beyond ±9007199254740991 as decimal strings/,
    );
  });

  it("refuses a shape that describes millions of empty arrays, before building any (80 bytes of JSON)", () => {
    const IMAGE: TensorSpec = { name: "x", type: "float32", shape: ["batch", "h", "w"] };
    const started = performance.now();
    expect(refused(() => rowsFromV2Inputs([{ name: "x", datatype: "FP32", shape: [1, 30_000_000, 0], data: [] }], [IMAGE], 1024))).toMatch(/far more arrays/);
    expect(refused(() => rowsFromV2Inputs([{ name: "x", datatype: "FP32", shape: [1, 2 ** 33, 0], data: [] }], [IMAGE], 1024))).toMatch(/far more arrays/);
    expect(performance.now() - started).toBeLessThan(1_000);
    // An empty tensor of a sensible size gets as far as the element checks (which refuse empty rows, as for jobs).
    expect(refused(() => rowsFromV2Inputs([{ name: "x", datatype: "FP32", shape: [2, 3, 0], data: [] }], [IMAGE], 1024))).toMatch(/\[0\]\[0\]: expected at least 1 value/);
  });

  it("takes BYTES as strings, FP16 and the small integer types as numbers, checked as job rows are", () => {
    const specs: TensorSpec[] = [
      { name: "text", type: "string", shape: ["batch", 2] },
      { name: "half", type: "float16", shape: ["batch"] },
      { name: "small", type: "int8", shape: ["batch"] },
      { name: "pixels", type: "uint8", shape: ["batch", 2] },
    ];
    const tensors = [
      { name: "text", datatype: "BYTES", shape: [2, 2], data: ["a", "b", "", "héllo"] },
      { name: "half", datatype: "FP16", shape: [2], data: [0.5, -65504] },
      { name: "small", datatype: "INT8", shape: [2], data: [-128, 127] },
      { name: "pixels", datatype: "UINT8", shape: [2, 2], data: [[0, 255], [1, 2]] },
    ];
    expect(rowsFromV2Inputs(tensors, specs, 1024)).toEqual([
      { text: ["a", "b"], half: 0.5, small: -128, pixels: [0, 255] },
      { text: ["", "héllo"], half: -65504, small: 127, pixels: [1, 2] },
    ]);
    const bad = [
      { ...tensors[0]!, data: ["a", 5, "c", "d"] },
      { ...tensors[1]!, data: [70000, 1] },
      { ...tensors[2]!, data: [200, 1] },
      { ...tensors[3]!, data: [0, 1.5, 2, 3] },
    ];
    expect(refused(() => rowsFromV2Inputs(bad, specs, 1024))).toBe(
      "input 'text' [0][1]: expected a string, got 5; input 'half' [0]: 70000 is outside the float16 range (±65504); " +
        "input 'small' [0]: 200 is outside the int8 range (-128 to 127); input 'pixels' [0][1]: expected an integer, got 1.5",
    );
    expect(refused(() => rowsFromV2Inputs([{ ...tensors[0]!, datatype: "STRING" }, ...tensors.slice(1)], specs, 1024))).toBe(
      "input 'text' has datatype STRING, but the model takes BYTES",
    );
  });

  it("refuses data that is not an array", () => {
    expect(refused(() => rowsFromV2Inputs([{ name: "ids", datatype: "INT64", shape: [1], data: 5 }], [IDS], 1024))).toMatch(/input 'ids': data must be an array/);
  });
});

describe("selectOutputs", () => {
  const outputs: TensorSpec[] = [
    { name: "label", type: "int64", shape: ["batch"] },
    { name: "probabilities", type: "float32", shape: ["batch", 3] },
  ];
  it("gives all of the model's outputs when none is named, else the named ones in the order asked", () => {
    expect(selectOutputs(outputs, undefined).map((o) => o.name)).toEqual(["label", "probabilities"]);
    expect(selectOutputs(outputs, [{ name: "probabilities" }, { name: "label" }]).map((o) => o.name)).toEqual(["probabilities", "label"]);
  });
  it("refuses an unknown output, listing the model's", () => {
    expect(refused(() => selectOutputs(outputs, [{ name: "score" }]))).toBe("unknown output 'score'; the model's outputs are: label, probabilities");
  });
});

describe("stackOutputs", () => {
  const outputs: TensorSpec[] = [
    { name: "label", type: "int64", shape: ["batch"] },
    { name: "probabilities", type: "float32", shape: ["batch", 3] },
  ];
  it("stacks rows back into flat, row-major tensors with the batch first", () => {
    const results: PredictRowResult[] = [{ outputs: { label: 0, probabilities: [0.9, 0.05, 0.05] } }, { outputs: { label: 2, probabilities: [0.1, 0.2, 0.7] } }];
    expect(stackOutputs(results, outputs)).toEqual([
      { name: "label", datatype: "INT64", shape: [2], data: [0, 2] },
      { name: "probabilities", datatype: "FP32", shape: [2, 3], data: [0.9, 0.05, 0.05, 0.1, 0.2, 0.7] },
    ]);
  });
  it("fails the request with the first failed row's message", () => {
    const results: PredictRowResult[] = [{ outputs: { label: 0, probabilities: [1, 0, 0] } }, { error: { code: "inference_failed", message: "boom" } }];
    expect(refused(() => stackOutputs(results, outputs))).toBe("row 1: boom");
    const error = { error: { code: "inference_failed", message: "boom" } };
    expect(refused(() => stackOutputs([error, error, error], outputs))).toBe("row 0: boom (and 2 more rows failed)");
  });
  it("refuses rows whose values differ in shape", () => {
    const spec: TensorSpec[] = [{ name: "y", type: "float32", shape: ["batch", "n"] }];
    expect(refused(() => stackOutputs([{ outputs: { y: [1, 2] } }, { outputs: { y: [1] } }], spec))).toMatch(/output 'y' has shape \[2\] for row 0 but \[1\] for row 1/);
  });
});

describe("writeInferResponse", () => {
  it("writes INT64 beyond 2^53 as exact JSON integers, the rest as JSON.stringify does", () => {
    const text = writeInferResponse({
      model_name: "m",
      model_version: "1",
      id: "42",
      outputs: [
        { name: "big", datatype: "INT64", shape: [3], data: ["9007199254740993", -5, "-9223372036854775808"] },
        { name: "flags", datatype: "BOOL", shape: [2], data: [true, false] },
        { name: "x", datatype: "FP32", shape: [2], data: [1.5, null] },
      ],
    });
    expect(text).toBe(
      '{"model_name":"m","model_version":"1","id":"42","outputs":[{"name":"big","datatype":"INT64","shape":[3],"data":[9007199254740993,-5,-9223372036854775808]},' +
        '{"name":"flags","datatype":"BOOL","shape":[2],"data":[true,false]},{"name":"x","datatype":"FP32","shape":[2],"data":[1.5,null]}]}',
    );
  });
  it("writes BYTES as JSON strings and FP16 as numbers", () => {
    const text = writeInferResponse({
      model_name: "m",
      model_version: "1",
      outputs: [
        { name: "s", datatype: "BYTES", shape: [2], data: ["a\"b", "é"] },
        { name: "h", datatype: "FP16", shape: [2], data: [0.0999755859375, -2.5] },
      ],
    });
    expect(JSON.parse(text)).toEqual({
      model_name: "m",
      model_version: "1",
      outputs: [
        { name: "s", datatype: "BYTES", shape: [2], data: ['a"b', "é"] },
        { name: "h", datatype: "FP16", shape: [2], data: [0.0999755859375, -2.5] },
      ],
    });
  });
  it("leaves id out when the request had none", () => {
    expect(JSON.parse(writeInferResponse({ model_name: "m", model_version: "2", outputs: [] }))).toEqual({ model_name: "m", model_version: "2", outputs: [] });
  });
});
