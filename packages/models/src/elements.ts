import type { InputTensorType, TensorValue } from "@coalesce/contracts";

/** A typed array that holds one fixed-size input type's elements. */
export type ElementArray = Float32Array | Float64Array | Int8Array | Int16Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array;

/** The input types whose elements have one size; string, the other, is carried apart (see packed-rows.ts). */
export type FixedSizeInputType = Exclude<InputTensorType, "string">;

/**
 * Writes `value` (nested `depth` deep) into `data` from `offset`; returns the offset after it.
 * The value must have been validated for the input's type.
 */
export type Fill<A extends ElementArray | string[] = ElementArray> = (value: TensorValue, depth: number, data: A, offset: number) => number;

/** How rows of one input type are stored: bytes per element, the typed array, and how to fill it. */
export type ElementKind = {
  bytes: number;
  /** The typed array: `new Array(length)`, or a view `new Array(buffer, byteOffset, length)`. */
  Array: { new (length: number): ElementArray; new (buffer: ArrayBuffer, byteOffset: number, length: number): ElementArray };
  fill: Fill;
};

/** A Fill that writes each scalar of a nested value as `toElement` makes it. */
function filler<A extends ElementArray | string[]>(toElement: (value: TensorValue) => number | bigint | string): Fill<A> {
  const fill: Fill<A> = (value, depth, data, offset) => {
    const out = data as unknown as { [index: number]: number | bigint | string };
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

// Typed arrays convert on write, and validated values are exact in every integer type's range.
const fillNumbers = filler((value) => value as number);
// Validated int64 values are safe integers or decimal strings; BigInt takes both exactly.
const fillInt64 = filler((value) => BigInt(value as number | string));
const fillBool = filler((value) => (value === true ? 1 : 0));
const fillFloat16 = filler((value) => float16Bits(value as number));

/** Writes a validated string input's values into a plain array, as onnxruntime takes string tensors. */
export const fillStrings: Fill<string[]> = filler<string[]>((value) => value as string);

/**
 * Every fixed-size input type rows can carry. ORT's bool tensors are one byte per element, 0 or 1;
 * its float16 tensors, without a Float16Array (Node 20), are a Uint16Array of the half-precision bits.
 */
export const ELEMENT_KINDS: Record<FixedSizeInputType, ElementKind> = {
  float32: { bytes: 4, Array: Float32Array, fill: fillNumbers },
  float64: { bytes: 8, Array: Float64Array, fill: fillNumbers },
  float16: { bytes: 2, Array: Uint16Array, fill: fillFloat16 },
  int8: { bytes: 1, Array: Int8Array, fill: fillNumbers },
  int16: { bytes: 2, Array: Int16Array, fill: fillNumbers },
  int32: { bytes: 4, Array: Int32Array, fill: fillNumbers },
  int64: { bytes: 8, Array: BigInt64Array, fill: fillInt64 },
  uint8: { bytes: 1, Array: Uint8Array, fill: fillNumbers },
  uint16: { bytes: 2, Array: Uint16Array, fill: fillNumbers },
  bool: { bytes: 1, Array: Uint8Array, fill: fillBool },
};

/** Whether an input takes strings, which rows carry as UTF-8 of varying length rather than in a typed array. */
export function isStringInput(type: string): boolean {
  return type === "string";
}

/** The element kind of a fixed-size input type, or an error naming the input when rows cannot carry it so. */
export function elementKind(type: string, inputName: string): ElementKind {
  const kind = (ELEMENT_KINDS as Record<string, ElementKind | undefined>)[type];
  if (!kind) {
    const why = isStringInput(type) ? "whose elements have no fixed size" : "which rows cannot carry";
    throw new Error(`input '${inputName}' has element type ${type}, ${why}`);
  }
  return kind;
}

const float64 = new Float64Array(1);
const float64Words = new Uint32Array(float64.buffer);
// Which of the two words holds the sign and exponent depends on the platform's byte order.
const HIGH = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;

/**
 * The IEEE 754 half-precision bits nearest to `value` (ties to even), rounded once from the double:
 * going through float32 first would round twice and sometimes land on the wrong neighbour. `value`
 * must be finite and within ±65504 (validateRow sees to that); beyond, the result is not a half.
 */
export function float16Bits(value: number): number {
  float64[0] = value;
  const high = float64Words[HIGH]!;
  const low = float64Words[1 - HIGH]!;
  const sign = (high >>> 16) & 0x8000;
  const exponent = ((high >>> 20) & 0x7ff) - 1023;
  if (exponent >= -14) {
    // A normal half: the top 10 of the double's 52 fraction bits, rounded on the 42 below them.
    const fraction = (high >>> 10) & 0x3ff;
    const roundBit = high & 0x200;
    const sticky = (high & 0x1ff) | low;
    let bits = ((exponent + 15) << 10) | fraction;
    // A carry out of the fraction steps the exponent up, which is the right answer.
    if (roundBit !== 0 && (sticky !== 0 || (bits & 1) === 1)) bits++;
    return sign | bits;
  }
  // Subnormal (or zero): a count of 2^-24, exact to scale, rounded half to even. 1024 of them is the smallest normal's bits.
  const scaled = Math.abs(value) * 2 ** 24;
  let count = Math.floor(scaled);
  const rest = scaled - count;
  if (rest > 0.5 || (rest === 0.5 && count % 2 === 1)) count++;
  return sign | count;
}
