import type { FieldError, TensorSpec } from "@coalesce/contracts";

/** Which CSV columns feed one model input, and the per-row shape they fill (row-major). */
export type InputColumns = { name: string; type: string; columns: number[]; rowShape: number[] };

export type ColumnMapping = {
  inputs: InputColumns[];
  /** Index of the id column, or null: rows are then numbered from 0. */
  idIndex: number | null;
  header: string[];
};

export type MappingOptions = {
  idColumn?: string | undefined;
  ignore: string[];
  /** Explicit `map.INPUT=colA,colB` parameters. */
  map: Record<string, string[]>;
  /**
   * A file without a header (columns named "0", "1", ...): without `map`, a model of several inputs
   * takes the columns left after the id and ignored ones in its input order, each input as many as
   * its per-row shape holds.
   */
  inModelOrder?: boolean | undefined;
};

/** The header cannot feed the model; thrown before anything of the upload is stored. */
export class ColumnMappingError extends Error {
  readonly errors: FieldError[];
  constructor(errors: FieldError[]) {
    super(errors.map((e) => `${e.field}: ${e.message}`).join("; "));
    this.errors = errors;
  }
}

/**
 * Decides which columns feed which input. Without `map`, a model with one input takes every column
 * that is neither the id column nor ignored, in file order; with `map`, each input names its
 * columns. The column count must fill the input's per-row shape exactly.
 */
export function mapColumns(header: string[], inputs: readonly TensorSpec[], options: MappingOptions): ColumnMapping {
  const errors: FieldError[] = [];
  const positions = new Map<string, number[]>();
  header.forEach((name, index) => positions.set(name, [...(positions.get(name) ?? []), index]));
  const columnOf = (name: string, field: string): number | null => {
    const found = positions.get(name);
    if (!found) {
      errors.push({ field, message: `no column '${name}' in the header (${describeHeader(header)})` });
      return null;
    }
    if (found.length > 1) {
      errors.push({ field, message: `the header has ${found.length} columns named '${name}'` });
      return null;
    }
    return found[0] as number;
  };

  const idIndex = options.idColumn === undefined ? null : columnOf(options.idColumn, "id_column");
  const ignored = new Set(options.ignore.map((name) => columnOf(name, "ignore")).filter((i): i is number => i !== null));
  if (idIndex !== null) ignored.add(idIndex);

  const mapped: InputColumns[] = [];
  const explicit = Object.keys(options.map);
  if (explicit.length === 0) {
    if (inputs.length > 1 && options.inModelOrder) {
      const columns = header.map((_, index) => index).filter((index) => !ignored.has(index));
      mapped.push(...fitInModelOrder(inputs, columns, errors, header));
    } else if (inputs.length !== 1) {
      errors.push({
        field: "map",
        message: `the model has ${inputs.length} inputs (${inputs.map((i) => i.name).join(", ")}); name each one's columns with map.INPUT=colA,colB`,
      });
    } else {
      const input = inputs[0] as TensorSpec;
      const columns = header.map((_, index) => index).filter((index) => !ignored.has(index));
      const fitted = fitColumns(input, columns, `map.${input.name}`, errors, header);
      if (fitted) mapped.push(fitted);
    }
  } else {
    for (const name of explicit) {
      if (!inputs.some((input) => input.name === name)) {
        errors.push({ field: `map.${name}`, message: `the model has no input '${name}'; its inputs are: ${inputs.map((i) => i.name).join(", ")}` });
      }
    }
    for (const input of inputs) {
      const names = options.map[input.name];
      if (!names) {
        errors.push({ field: `map.${input.name}`, message: `input '${input.name}' has no columns; add map.${input.name}=colA,colB,...` });
        continue;
      }
      const columns = names.map((name) => columnOf(name, `map.${input.name}`));
      if (columns.some((column) => column === null)) continue;
      const fitted = fitColumns(input, columns as number[], `map.${input.name}`, errors, header);
      if (fitted) mapped.push(fitted);
    }
  }
  if (errors.length > 0) throw new ColumnMappingError(errors);
  return { inputs: mapped, idIndex, header };
}

/** Shares columns out to the inputs in order, each taking its fixed per-row size. */
function fitInModelOrder(inputs: readonly TensorSpec[], columns: number[], errors: FieldError[], header: string[]): InputColumns[] {
  const sizes = inputs.map((input) =>
    input.shape.slice(1).reduce<number | null>((product, dim) => (product !== null && typeof dim === "number" && dim >= 0 ? product * dim : null), 1),
  );
  const describe = inputs.map((input, i) => `${input.name}: ${sizes[i] ?? "open"}`).join(", ");
  if (sizes.some((size) => size === null)) {
    errors.push({ field: "map", message: `without a header, the columns of inputs with an open per-row shape cannot be told apart (${describe}); name each input's columns by position with map.INPUT=0,1,2` });
    return [];
  }
  const wanted = (sizes as number[]).reduce((a, b) => a + b, 0);
  if (wanted !== columns.length) {
    errors.push({ field: "map", message: `the model's inputs take ${wanted} values per row in all (${describe}) but the file has ${columns.length} columns to give them; use id_column, ignore or map.INPUT to choose the columns` });
    return [];
  }
  const mapped: InputColumns[] = [];
  let offset = 0;
  inputs.forEach((input, i) => {
    const size = sizes[i] as number;
    const fitted = fitColumns(input, columns.slice(offset, offset + size), `map.${input.name}`, errors, header);
    if (fitted) mapped.push(fitted);
    offset += size;
  });
  return mapped;
}

/** Works out the per-row shape the columns fill: fixed dimensions must multiply to the column count. */
function fitColumns(input: TensorSpec, columns: number[], field: string, errors: FieldError[], header: string[]): InputColumns | null {
  const dims = input.shape.slice(1);
  const open = dims.filter((dim) => typeof dim !== "number" || dim < 0).length;
  const fixed = dims.reduce<number>((product, dim) => (typeof dim === "number" && dim >= 0 ? product * dim : product), 1);
  if (columns.length === 0) {
    errors.push({ field, message: `no columns are left for input '${input.name}' (${describeHeader(header)})` });
    return null;
  }
  if (open > 1) {
    errors.push({ field, message: `input '${input.name}' has shape [${input.shape.join(", ")}]: a CSV row can only fill a shape with at most one open dimension` });
    return null;
  }
  if (open === 0 && fixed !== columns.length) {
    const names = columns.map((c) => header[c]).join(", ");
    errors.push({
      field,
      message: `input '${input.name}' takes ${fixed} values per row (shape [${input.shape.join(", ")}]) but ${columns.length} columns map to it (${names}); use id_column, ignore or map.${input.name} to choose the columns`,
    });
    return null;
  }
  if (open === 1 && columns.length % fixed !== 0) {
    errors.push({ field, message: `input '${input.name}' takes a multiple of ${fixed} values per row, but ${columns.length} columns map to it` });
    return null;
  }
  const rowShape = dims.map((dim) => (typeof dim === "number" && dim >= 0 ? dim : columns.length / fixed));
  return { name: input.name, type: input.type, columns, rowShape };
}

function describeHeader(header: string[]): string {
  const shown = header.slice(0, 12).join(", ");
  return header.length > 12 ? `${shown}, ... ${header.length} columns` : shown;
}
