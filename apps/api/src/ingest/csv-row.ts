import type { RowError, TensorRow, TensorValue } from "@coalesce/contracts";
import type { ColumnMapping, InputColumns } from "./csv-columns.ts";

const DECIMAL = /^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$/;
const INTEGER = /^\s*[+-]?\d+\s*$/;
const FLOAT32_MAX = 3.4028234663852886e38;
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
    case "float64": {
      if (!DECIMAL.test(text)) return { problem: text.trim() === "" ? "the cell is empty" : `'${clip(text)}' is not a number` };
      const value = Number(text);
      if (!Number.isFinite(value) || (type === "float32" && Math.abs(value) > FLOAT32_MAX)) {
        return { problem: `${clip(text)} is out of ${type} range` };
      }
      return { value };
    }
    case "int32":
    case "int64": {
      if (!INTEGER.test(text)) return { problem: text.trim() === "" ? "the cell is empty" : `'${clip(text)}' is not an integer` };
      const trimmed = text.trim();
      const value = Number(trimmed);
      if (type === "int32") {
        return value >= -2147483648 && value <= 2147483647 ? { value } : { problem: `${clip(text)} is out of int32 range` };
      }
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
    default:
      return { problem: `input type ${type} cannot be read from CSV` };
  }
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
