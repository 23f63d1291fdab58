import { MAX_STRING_ELEMENT_BYTES, type RowError, type TensorRow, type TensorValue } from "@coalesce/contracts";
import type { ColumnMapping, InputColumns } from "./csv-columns.ts";

const DECIMAL = /^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$/;
const INTEGER = /^\s*[+-]?\d+\s*$/;
const FLOAT32_MAX = 3.4028234663852886e38;
const FLOAT16_MAX = 65504;
/** The integer types a JSON number carries exactly, with their ranges (int64 is read apart). */
const INTEGER_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  int8: [-128, 127],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  uint8: [0, 255],
  uint16: [0, 65535],
};
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

type Cell = { value: TensorValue } | { problem: string };

/** A cell that reads as a decimal number (`5.1`, `-2e3`); a header of only these is a data row. */
export function looksNumeric(text: string): boolean {
  return DECIMAL.test(text);
}

/** One cell as the input's element type wants it; a problem says what is wrong in words. */
export function parseCell(text: string, type: string): Cell {
  switch (type) {
    case "float32":
    case "float64":
    case "float16": {
      if (!DECIMAL.test(text)) return { problem: text.trim() === "" ? "the cell is empty" : `'${clip(text)}' is not a number` };
      const value = Number(text);
      const max = type === "float32" ? FLOAT32_MAX : type === "float16" ? FLOAT16_MAX : Infinity;
      if (!Number.isFinite(value) || Math.abs(value) > max) return { problem: `${clip(text)} is out of ${type} range` };
      return { value };
    }
    case "int8":
    case "int16":
    case "int32":
    case "uint8":
    case "uint16":
    case "int64": {
      if (!INTEGER.test(text)) return { problem: text.trim() === "" ? "the cell is empty" : `'${clip(text)}' is not an integer` };
      const trimmed = text.trim();
      const value = Number(trimmed);
      const range = INTEGER_RANGES[type];
      if (range) return value >= range[0] && value <= range[1] ? { value } : { problem: `${clip(text)} is out of ${type} range` };
      if (Number.isSafeInteger(value)) return { value };
      const big = BigInt(trimmed);
      // Beyond 2^53 a JSON number would lose digits; the row carries the exact decimal string.
      return big >= INT64_MIN && big <= INT64_MAX ? { value: big.toString() } : { problem: `${clip(text)} is out of int64 range` };
    }
    case "bool": {
      const lower = text.trim().toLowerCase();
      if (lower === "true" || lower === "1") return { value: true };
      if (lower === "false" || lower === "0") return { value: false };
      return { problem: `'${clip(text)}' is not a boolean (true, false, 1 or 0)` };
    }
    case "string":
      // The cell as written (quotes undone, spaces kept): a CSV has no other way to say what the text is.
      return stringCell(text);
    default:
      return { problem: `input type ${type} cannot be read from CSV` };
  }
}

// A CSV decoded from UTF-8 has no lone surrogates; a NUL is possible, and onnxruntime would cut the string there.
function stringCell(text: string): Cell {
  if (text.length * 3 > MAX_STRING_ELEMENT_BYTES) {
    const bytes = Buffer.byteLength(text, "utf8");
    if (bytes > MAX_STRING_ELEMENT_BYTES) return { problem: `the cell holds ${bytes} bytes of text, more than the ${MAX_STRING_ELEMENT_BYTES} a string may have` };
  }
  if (text.includes("\0")) return { problem: "the cell holds a NUL character, which onnxruntime cannot take inside a string" };
  return { value: text };
}

export type ParsedRow = { row: TensorRow; id: string | null } | { error: RowError; id: string | null };

/**
 * Builds one row from a CSV record, or says which cell is wrong, naming the line and the column
 * (`line 17, column 'sepal_width': 'abc' is not a number`).
 */
export function parseRecord(record: string[], line: number, mapping: ColumnMapping): ParsedRow {
  const id = mapping.idIndex === null ? null : (record[mapping.idIndex] ?? null);
  if (record.length !== mapping.header.length) {
    return {
      id,
      error: { code: "invalid_row", message: `line ${line}: expected ${mapping.header.length} columns, got ${record.length}` },
    };
  }
  const row: TensorRow = {};
  for (const input of mapping.inputs) {
    const values: TensorValue[] = new Array(input.columns.length);
    for (let i = 0; i < input.columns.length; i++) {
      const column = input.columns[i] as number;
      const cell = parseCell(record[column] as string, input.type);
      if ("problem" in cell) {
        return { id, error: { code: "invalid_row", message: `line ${line}, column '${mapping.header[column]}': ${cell.problem}` } };
      }
      values[i] = cell.value;
    }
    row[input.name] = nest(values, input);
  }
  return { row, id };
}

/** Row-major flat values into the input's per-row shape: a scalar for [], an array for [n], nested beyond. */
function nest(values: TensorValue[], input: InputColumns): TensorValue {
  const shape = input.rowShape;
  if (shape.length === 0) return values[0] as TensorValue;
  if (shape.length === 1) return values;
  const build = (offset: number, depth: number): TensorValue[] => {
    const size = shape[depth] as number;
    if (depth === shape.length - 1) return values.slice(offset, offset + size);
    const stride = shape.slice(depth + 1).reduce((a, b) => a * b, 1);
    return Array.from({ length: size }, (_, i) => build(offset + i * stride, depth + 1));
  };
  return build(0, 0);
}

function clip(text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
}
