import type { TensorSpec, TensorValue } from "@coalesce/contracts";
import type { RowResult } from "@coalesce/db";

/** A CSV results column set: the key column, each output flattened (`probabilities_0`, ...), then `error`. */
export type CsvLayout = { keyColumn: string; outputs: { name: string; width: number; scalar: boolean }[] };

/**
 * Lays out the CSV columns from the model's outputs. A per-row output shape with open dimensions
 * takes its width from the first scored row (`sample`); with none, such an output gets one column.
 */
export function csvLayout(outputs: readonly TensorSpec[], keyColumn: string, sample: RowResult | undefined): CsvLayout {
  const sampleOutputs = sample && "outputs" in sample ? sample.outputs : undefined;
  return {
    keyColumn,
    outputs: outputs.map((output) => {
      const dims = output.shape.slice(1);
      if (dims.length === 0) return { name: output.name, width: 1, scalar: true };
      const fixed = dims.every((dim) => typeof dim === "number" && dim >= 0);
      const width = fixed
        ? dims.reduce<number>((product, dim) => product * (dim as number), 1)
        : sampleOutputs?.[output.name] !== undefined
          ? flatten(sampleOutputs[output.name] as TensorValue).length
          : 1;
      return { name: output.name, width, scalar: false };
    }),
  };
}

export function csvHeaderLine(layout: CsvLayout): string {
  const names = [layout.keyColumn];
  for (const output of layout.outputs) {
    if (output.scalar) names.push(output.name);
    else for (let i = 0; i < output.width; i++) names.push(`${output.name}_${i}`);
  }
  names.push("error");
  return `${names.map(csvField).join(",")}\n`;
}

/** One CSV line per row; a failed row has empty output cells and `code: message` in `error`. */
export function csvLines(rows: Iterable<RowResult>, layout: CsvLayout, useId: boolean): string {
  let text = "";
  for (const row of rows) {
    const cells: string[] = [csvField(useId ? (row.id ?? "") : String(row.index))];
    if ("outputs" in row) {
      for (const output of layout.outputs) {
        const values = flatten(row.outputs[output.name] as TensorValue);
        for (let i = 0; i < output.width; i++) cells.push(cellText(values[i]));
      }
      cells.push("");
    } else {
      for (const output of layout.outputs) for (let i = 0; i < output.width; i++) cells.push("");
      cells.push(csvField(`${row.error.code}: ${row.error.message}`));
    }
    text += `${cells.join(",")}\n`;
  }
  return text;
}

export function ndjsonLines(rows: Iterable<RowResult>): string {
  let text = "";
  for (const row of rows) text += `${JSON.stringify(row)}\n`;
  return text;
}

type Scalar = number | string | boolean;

function flatten(value: TensorValue | undefined, into: Scalar[] = []): Scalar[] {
  if (value === undefined) return into;
  if (!Array.isArray(value)) into.push(value);
  else for (const item of value) flatten(item, into);
  return into;
}

function cellText(value: number | string | boolean | undefined): string {
  if (value === undefined) return "";
  return typeof value === "string" ? csvField(value) : String(value);
}

/** A cell a spreadsheet would run as a formula (OWASP's list), unless it is only a number (-1.5). */
const FORMULA_START = /^[=+\-@\t\r]/;
const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * RFC 4180: quote a field holding a comma, quote or line break; double its quotes. A text cell
 * that starts like a formula (`=cmd|' /C calc'!A0`, `+SUM(1+1)`, `@x`) gets a leading `'` first, so
 * a spreadsheet opening the results shows it as text rather than running it (CSV injection).
 */
export function csvField(text: string): string {
  const safe = FORMULA_START.test(text) && !NUMBER.test(text) ? `'${text}` : text;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}
