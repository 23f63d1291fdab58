// Writes tiny ONNX models as raw protobuf: the worker probes execution providers with one, and
// tests use them for input types, batch dimensions and non-tensor values that the iris and digits
// fixtures do not have, without a Python toolchain or a checked-in binary per case.

/** ONNX TensorProto.DataType codes. */
export const ELEM_TYPE = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  float64: 11,
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

export type TinyModel = {
  inputs: TinyValue[];
  outputs: TinyValue[];
  nodes: TinyNode[];
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

/** Serialises a ModelProto (IR version 8) with one graph. */
export function buildOnnxModel(model: TinyModel): Uint8Array {
  const graph = concat([
    ...model.nodes.map((n, i) => bytesField(1, node(n, i))),
    stringField(2, "tiny"),
    ...model.inputs.map((v) => bytesField(11, valueInfo(v))),
    ...model.outputs.map((v) => bytesField(12, valueInfo(v))),
  ]);
  const opset = concat([stringField(1, ""), intField(2, model.opset ?? 13)]);
  return concat([intField(1, 8), stringField(2, "coalesce-tests"), bytesField(7, graph), bytesField(8, opset)]);
}

/** `y = Identity(x)` with the same type and shape on both sides. */
export function buildIdentityModel(type: ElemTypeName, shape: TinyDim[] | null): Uint8Array {
  return buildOnnxModel({
    inputs: [{ name: "x", type, shape }],
    outputs: [{ name: "y", type, shape }],
    nodes: [{ opType: "Identity", inputs: ["x"], outputs: ["y"] }],
  });
}
