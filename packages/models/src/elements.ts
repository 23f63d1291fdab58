import type { InputTensorType, TensorValue } from "@coalesce/contracts";

/** A typed array that holds one input type's elements. */
export type ElementArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

/**
 * Writes `value` (nested `depth` deep) into `data` from `offset`; returns the offset after it.
 * The value must have been validated for the input's type.
 */
export type Fill<A extends ElementArray = ElementArray> = (value: TensorValue, depth: number, data: A, offset: number) => number;

/** How rows of one input type are stored: bytes per element, the typed array, and how to fill it. */
export type ElementKind = {
  bytes: number;
  /** The typed array: `new Array(length)`, or a view `new Array(buffer, byteOffset, length)`. */
  Array: { new (length: number): ElementArray; new (buffer: ArrayBuffer, byteOffset: number, length: number): ElementArray };
  fill: Fill;
};

/** A Fill that writes each scalar of a nested value as `toElement` makes it. */
function filler(toElement: (value: TensorValue) => number | bigint): Fill {
  const fill: Fill = (value, depth, data, offset) => {
    const out = data as unknown as { [index: number]: number | bigint };
    if (depth === 0) {
      out[offset] = toElement(value);
      return offset + 1;
    }
    const values = value as TensorValue[];
    if (depth === 1) {
      for (let i = 0; i < values.length; i++) out[offset + i] = toElement(values[i]!);
      return offset + values.length;
    }
    for (let i = 0; i < values.length; i++) offset = fill(values[i]!, depth - 1, data, offset);
    return offset;
  };
  return fill;
}

const fillNumbers = filler((value) => value as number);
// Validated int64 values are safe integers or decimal strings; BigInt takes both exactly.
const fillInt64 = filler((value) => BigInt(value as number | string));
const fillBool = filler((value) => (value === true ? 1 : 0));

/** Every input type rows can carry; ORT's bool tensors are one byte per element, 0 or 1. */
export const ELEMENT_KINDS: Record<InputTensorType, ElementKind> = {
  float32: { bytes: 4, Array: Float32Array, fill: fillNumbers },
  float64: { bytes: 8, Array: Float64Array, fill: fillNumbers },
  int32: { bytes: 4, Array: Int32Array, fill: fillNumbers },
  int64: { bytes: 8, Array: BigInt64Array, fill: fillInt64 },
  bool: { bytes: 1, Array: Uint8Array, fill: fillBool },
};

/** The element kind of an input type, or an error naming the input when rows cannot carry it. */
export function elementKind(type: string, inputName: string): ElementKind {
  const kind = (ELEMENT_KINDS as Record<string, ElementKind | undefined>)[type];
  if (!kind) throw new Error(`input '${inputName}' has element type ${type}, which rows cannot carry`);
  return kind;
}
