// Writes tiny ONNX models as raw protobuf: the worker probes execution providers with one, and
// tests use them for input types, batch dimensions and non-tensor values that the iris and digits
// fixtures do not have, without a Python toolchain or a checked-in binary per case.

/** ONNX TensorProto.DataType codes. */
export const ELEM_TYPE = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  float64: 11,
  uint32: 12,
  uint64: 13,
} as const;
export type ElemTypeName = keyof typeof ELEM_TYPE;

/** A dimension: fixed size, symbolic name, or null for "unknown" (neither set). */
export type TinyDim = number | string | null;

export type TinyValue =
  | { name: string; kind?: "tensor"; type: ElemTypeName; shape: TinyDim[] | null }
  | { name: string; kind: "sequence"; type: ElemTypeName };

export type TinyNode = {
  opType: string;
  inputs: string[];
  outputs: string[];
  intAttributes?: Record<string, number>;
};

/** A float32 constant of the graph (weights), stored as raw little-endian bytes. */
export type TinyInitializer = { name: string; dims: number[]; data: Float32Array };

/** A string constant of the graph (a word to compare with, a vocabulary). */
export type TinyStringInitializer = { name: string; dims: number[]; strings: string[] };

export type TinyModel = {
  inputs: TinyValue[];
  outputs: TinyValue[];
  nodes: TinyNode[];
  /** @defaultValue none */
  initializers?: (TinyInitializer | TinyStringInitializer)[];
  /** @defaultValue 13 */
  opset?: number;
};

const WIRE_VARINT = 0;
const WIRE_LENGTH_DELIMITED = 2;
const ATTRIBUTE_TYPE_INT = 2;
const utf8 = new TextEncoder();

function varint(value: number): number[] {
  // Protobuf writes negative int64 as 10-byte two's complement.
  let n = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  while (n >= 0x80n) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function intField(field: number, value: number): Uint8Array {
  return Uint8Array.from([...varint((field << 3) | WIRE_VARINT), ...varint(value)]);
}

function bytesField(field: number, payload: Uint8Array): Uint8Array {
  return concat([
    Uint8Array.from([...varint((field << 3) | WIRE_LENGTH_DELIMITED), ...varint(payload.length)]),
    payload,
  ]);
}

function stringField(field: number, value: string): Uint8Array {
  return bytesField(field, utf8.encode(value));
}

function tensorType(type: ElemTypeName, shape: TinyDim[] | null): Uint8Array {
  const parts = [intField(1, ELEM_TYPE[type])];
  if (shape !== null) {
    const dims = shape.map((d) =>
      bytesField(1, d === null ? new Uint8Array() : typeof d === "number" ? intField(1, d) : stringField(2, d)),
    );
    parts.push(bytesField(2, concat(dims)));
  }
  // TypeProto.tensor_type = 1
  return bytesField(1, concat(parts));
}

function valueInfo(value: TinyValue): Uint8Array {
  const type =
    value.kind === "sequence"
      ? bytesField(4, bytesField(1, tensorType(value.type, null))) // TypeProto.sequence_type = 4
      : tensorType(value.type, value.shape);
  return concat([stringField(1, value.name), bytesField(2, type)]);
}

function node(n: TinyNode, index: number): Uint8Array {
  const attributes = Object.entries(n.intAttributes ?? {}).map(([name, i]) =>
    bytesField(5, concat([stringField(1, name), intField(3, i), intField(20, ATTRIBUTE_TYPE_INT)])),
  );
  return concat([
    ...n.inputs.map((i) => stringField(1, i)),
    ...n.outputs.map((o) => stringField(2, o)),
    stringField(3, `node_${index}`),
    stringField(4, n.opType),
    ...attributes,
  ]);
}

function initializer(init: TinyInitializer | TinyStringInitializer): Uint8Array {
  // TensorProto: dims = 1, data_type = 2, string_data = 6, name = 8, raw_data = 9 (little-endian, as x86 and ARM store it).
  const dims = init.dims.map((d) => intField(1, d));
  if ("strings" in init) return concat([...dims, intField(2, ELEM_TYPE.string), stringField(8, init.name), ...init.strings.map((text) => stringField(6, text))]);
  return concat([
    ...dims,
    intField(2, ELEM_TYPE.float32),
    stringField(8, init.name),
    bytesField(9, new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength)),
  ]);
}

/** Serialises a ModelProto (IR version 8) with one graph. */
export function buildOnnxModel(model: TinyModel): Uint8Array {
  const graph = concat([
    ...model.nodes.map((n, i) => bytesField(1, node(n, i))),
    stringField(2, "tiny"),
    ...(model.initializers ?? []).map((init) => bytesField(5, initializer(init))),
    ...model.inputs.map((v) => bytesField(11, valueInfo(v))),
    ...model.outputs.map((v) => bytesField(12, valueInfo(v))),
  ]);
  const opset = concat([stringField(1, ""), intField(2, model.opset ?? 13)]);
  return concat([intField(1, 8), stringField(2, "coalesce-tests"), bytesField(7, graph), bytesField(8, opset)]);
}

/**
 * A multi-layer perceptron with random weights, `x` float32[batch, sizes[0]] -> `y` float32[batch,
 * sizes.at(-1)], ReLU between layers: a compute cost for benchmarks, not an answer.
 */
export function buildRandomMlp(sizes: number[], seed = 1): Uint8Array {
  let state = seed >>> 0 || 1;
  const random = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
  const nodes: TinyNode[] = [];
  const initializers: TinyInitializer[] = [];
  let current = "x";
  for (let layer = 0; layer < sizes.length - 1; layer++) {
    const [fanIn, fanOut] = [sizes[layer] as number, sizes[layer + 1] as number];
    const scale = 1 / Math.sqrt(fanIn);
    const weights = new Float32Array(fanIn * fanOut);
    for (let i = 0; i < weights.length; i++) weights[i] = random() * scale;
    initializers.push({ name: `w${layer}`, dims: [fanIn, fanOut], data: weights }, { name: `b${layer}`, dims: [fanOut], data: new Float32Array(fanOut) });
    const last = layer === sizes.length - 2;
    nodes.push({ opType: "MatMul", inputs: [current, `w${layer}`], outputs: [`m${layer}`] });
    nodes.push({ opType: "Add", inputs: [`m${layer}`, `b${layer}`], outputs: [last ? "y" : `a${layer}`] });
    if (!last) nodes.push({ opType: "Relu", inputs: [`a${layer}`], outputs: [`h${layer}`] });
    current = `h${layer}`;
  }
  return buildOnnxModel({
    inputs: [{ name: "x", type: "float32", shape: ["batch", sizes[0] as number] }],
    outputs: [{ name: "y", type: "float32", shape: ["batch", sizes.at(-1) as number] }],
    nodes,
    initializers,
  });
}

/** `y = Identity(x)` with the same type and shape on both sides. */
export function buildIdentityModel(type: ElemTypeName, shape: TinyDim[] | null): Uint8Array {
  return buildOnnxModel({
    inputs: [{ name: "x", type, shape }],
    outputs: [{ name: "y", type, shape }],
    nodes: [{ opType: "Identity", inputs: ["x"], outputs: ["y"] }],
  });
}

/** A float32 initializer whose data lives in a file beside the model, as large exports keep their weights. */
export type TinyExternalInitializer = TinyInitializer & {
  /** The file's path relative to the model's folder, as TensorProto.external_data "location" names it. */
  location: string;
};

/**
 * `buildOnnxModel` plus initializers whose data is EXTERNAL: returns the .onnx bytes and each data
 * file's bytes by location (tensors sharing a location lie one after another in it).
 */
export function buildOnnxModelWithExternalData(
  model: TinyModel,
  external: TinyExternalInitializer[],
): { model: Uint8Array; files: Map<string, Uint8Array> } {
  const chunks = new Map<string, Uint8Array[]>();
  const sizes = new Map<string, number>();
  const tensors = external.map((init) => {
    const data = new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength);
    const offset = sizes.get(init.location) ?? 0;
    sizes.set(init.location, offset + data.byteLength);
    chunks.set(init.location, [...(chunks.get(init.location) ?? []), data]);
    const entry = (key: string, value: string) => bytesField(13, concat([stringField(1, key), stringField(2, value)]));
    // TensorProto: external_data = 13 (key/value pairs), data_location = 14 (EXTERNAL = 1).
    return bytesField(
      5,
      concat([
        ...init.dims.map((d) => intField(1, d)),
        intField(2, ELEM_TYPE.float32),
        stringField(8, init.name),
        entry("location", init.location),
        entry("offset", String(offset)),
        entry("length", String(data.byteLength)),
        intField(14, 1),
      ]),
    );
  });
  // A message field that appears twice is merged by protobuf parsers (repeated fields appended), so a
  // second ModelProto.graph holding only these initializers adds them to the first graph.
  const bytes = concat([buildOnnxModel(model), bytesField(7, concat(tensors))]);
  return { model: bytes, files: new Map([...chunks].map(([location, parts]) => [location, concat(parts)])) };
}

/**
 * `y = Identity(x)` and `is_cat = Cast(Equal(x, "cat"), int64)` over string[batch, n]: a model that
 * reads its strings, so a string that reached onnxruntime other than as sent shows in `is_cat`.
 */
export function buildStringMatchModel(word = "cat"): Uint8Array {
  return buildOnnxModel({
    inputs: [{ name: "x", type: "string", shape: ["batch", "n"] }],
    outputs: [
      { name: "y", type: "string", shape: ["batch", "n"] },
      { name: "is_cat", type: "int64", shape: ["batch", "n"] },
    ],
    nodes: [
      { opType: "Identity", inputs: ["x"], outputs: ["y"] },
      { opType: "Equal", inputs: ["x", "word"], outputs: ["equal"] },
      { opType: "Cast", inputs: ["equal"], outputs: ["is_cat"], intAttributes: { to: ELEM_TYPE.int64 } },
    ],
    initializers: [{ name: "word", dims: [], strings: [word] }],
    opset: 19,
  });
}
