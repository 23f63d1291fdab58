// Reads which files an ONNX model keeps tensor data in (TensorProto.data_location = EXTERNAL), by
// walking the protobuf directly: onnxruntime only reports a missing file as a load error, and an
// upload has to be checked against its archive (and the data's bounds) before anything is stored.

/** One tensor whose bytes live in a file beside the model. */
export type ExternalDataRef = {
  /** The tensor's name, for messages. */
  tensor: string;
  /** TensorProto.external_data "location": a path relative to the model's folder, as written. */
  location: string;
  /** Byte offset into the file; 0 when not given. */
  offset: number;
  /** Bytes the tensor takes; undefined when not given (then the rest of the file). */
  length: number | undefined;
};

/** The bytes are not a well-formed ONNX protobuf; `message` is written for the user who uploaded them. */
export class MalformedModelError extends Error {
  override readonly name = "MalformedModelError";
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH_DELIMITED = 2;
const WIRE_FIXED32 = 5;
const DATA_LOCATION_EXTERNAL = 1;
// protobuf's own parser stops at 100 levels; a deeper message is not a model anyone exported.
const MAX_DEPTH = 100;

type MessageKind = "model" | "graph" | "function" | "node" | "attribute" | "sparse" | "tensor";

/** For each message kind, the fields (all length-delimited) that hold the messages walked into. */
const CHILDREN: Record<Exclude<MessageKind, "tensor">, Record<number, MessageKind>> = {
  // ModelProto: graph = 7, functions = 25
  model: { 7: "graph", 25: "function" },
  // GraphProto: node = 1, initializer = 5, sparse_initializer = 15
  graph: { 1: "node", 5: "tensor", 15: "sparse" },
  // FunctionProto: node = 7, attribute_proto = 11
  function: { 7: "node", 11: "attribute" },
  // NodeProto: attribute = 5
  node: { 5: "attribute" },
  // AttributeProto: t = 5, g = 6, tensors = 10, graphs = 11, sparse_tensor = 22, sparse_tensors = 23
  attribute: { 5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse" },
  // SparseTensorProto: values = 1, indices = 2
  sparse: { 1: "tensor", 2: "tensor" },
};

const utf8 = new TextDecoder("utf-8", { fatal: false });

/**
 * Every tensor of the model (initializers, constants, subgraphs of If/Loop/Scan, functions, sparse
 * tensors) whose data is EXTERNAL, in the order they appear. Throws MalformedModelError on bytes
 * that are not a well-formed protobuf message.
 */
export function findExternalData(model: Uint8Array): ExternalDataRef[] {
  const refs: ExternalDataRef[] = [];
  walk(model, 0, model.byteLength, "model", 0, refs);
  return refs;
}

function walk(bytes: Uint8Array, start: number, end: number, kind: MessageKind, depth: number, refs: ExternalDataRef[]): void {
  if (depth > MAX_DEPTH) throw new MalformedModelError(`the model nests messages more than ${MAX_DEPTH} deep`);
  if (kind === "tensor") {
    readTensor(bytes, start, end, refs);
    return;
  }
  const children = CHILDREN[kind];
  const reader = new Reader(bytes, start, end);
  while (!reader.done()) {
    const { field, wire } = reader.tag();
    const child = children[field];
    if (child !== undefined && wire === WIRE_LENGTH_DELIMITED) {
      const [from, to] = reader.span();
      walk(bytes, from, to, child, depth + 1, refs);
    } else {
      reader.skip(wire);
    }
  }
}

function readTensor(bytes: Uint8Array, start: number, end: number, refs: ExternalDataRef[]): void {
  let name = "";
  let external = false;
  const entries = new Map<string, string>();
  const reader = new Reader(bytes, start, end);
  while (!reader.done()) {
    const { field, wire } = reader.tag();
    if (field === 8 && wire === WIRE_LENGTH_DELIMITED) {
      name = reader.string();
    } else if (field === 13 && wire === WIRE_LENGTH_DELIMITED) {
      // StringStringEntryProto: key = 1, value = 2
      const [from, to] = reader.span();
      const entry = new Reader(bytes, from, to);
      let key = "";
      let value = "";
      while (!entry.done()) {
        const inner = entry.tag();
        if (inner.field === 1 && inner.wire === WIRE_LENGTH_DELIMITED) key = entry.string();
        else if (inner.field === 2 && inner.wire === WIRE_LENGTH_DELIMITED) value = entry.string();
        else entry.skip(inner.wire);
      }
      entries.set(key, value);
    } else if (field === 14 && wire === WIRE_VARINT) {
      external = reader.varint() === DATA_LOCATION_EXTERNAL;
    } else {
      reader.skip(wire);
    }
  }
  if (!external) return;
  const tensor = name || "(unnamed)";
  const location = entries.get("location");
  if (location === undefined || location === "") {
    throw new MalformedModelError(`tensor '${tensor}' keeps its data externally but names no location`);
  }
  refs.push({ tensor, location, offset: readCount(entries, "offset", tensor) ?? 0, length: readCount(entries, "length", tensor) });
}

function readCount(entries: Map<string, string>, key: string, tensor: string): number | undefined {
  const text = entries.get(key);
  if (text === undefined) return undefined;
  if (!/^\d{1,15}$/.test(text)) throw new MalformedModelError(`tensor '${tensor}' has external data ${key} '${text}', which is not a byte count`);
  return Number(text);
}

class Reader {
  #pos: number;
  readonly #bytes: Uint8Array;
  readonly #end: number;

  constructor(bytes: Uint8Array, start: number, end: number) {
    this.#bytes = bytes;
    this.#pos = start;
    this.#end = end;
  }

  done(): boolean {
    return this.#pos >= this.#end;
  }

  tag(): { field: number; wire: number } {
    const tag = this.varint();
    const field = Math.floor(tag / 8);
    if (field === 0) throw new MalformedModelError("the file is not an ONNX model (a protobuf field numbered 0)");
    return { field, wire: tag % 8 };
  }

  varint(): number {
    // Up to 10 bytes; values past 2^53 lose precision, which only lengths and tags could mind, and
    // those are bounded by the buffer anyway.
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.#pos >= this.#end) throw truncated();
      const byte = this.#bytes[this.#pos++] as number;
      result += (byte & 0x7f) * scale;
      if (byte < 0x80) return result;
      scale *= 128;
    }
    throw new MalformedModelError("the file is not an ONNX model (a protobuf varint longer than 10 bytes)");
  }

  span(): [number, number] {
    const length = this.varint();
    const from = this.#pos;
    if (length > this.#end - from) throw truncated();
    this.#pos = from + length;
    return [from, from + length];
  }

  string(): string {
    const [from, to] = this.span();
    return utf8.decode(this.#bytes.subarray(from, to));
  }

  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_FIXED64:
        this.#advance(8);
        return;
      case WIRE_LENGTH_DELIMITED:
        this.span();
        return;
      case WIRE_FIXED32:
        this.#advance(4);
        return;
      default:
        // Groups (3, 4) are not used by ONNX; 6 and 7 do not exist.
        throw new MalformedModelError(`the file is not an ONNX model (protobuf wire type ${wire})`);
    }
  }

  #advance(count: number): void {
    if (count > this.#end - this.#pos) throw truncated();
    this.#pos += count;
  }
}

function truncated(): MalformedModelError {
  return new MalformedModelError("the file is not an ONNX model (its protobuf ends in the middle of a field)");
}
