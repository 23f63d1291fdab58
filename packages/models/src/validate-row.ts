import { MAX_STRING_ELEMENT_BYTES, type TensorRow, type TensorSpec } from "@coalesce/contracts";

export type RowIssue = {
  /** Where the problem is, e.g. `inputs[17].features[2]`. */
  path: string;
  message: string;
};

/** A row reports at most this many issues, so one huge malformed row cannot produce megabytes of errors. */
export const MAX_ISSUES_PER_ROW = 10;

const FLOAT32_MAX = 3.4028234663852886e38;
const FLOAT16_MAX = 65504;
const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
/** The ranges of the integer types a JSON number carries exactly (int64 is checked apart). */
const INTEGER_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  int8: [-128, 127],
  int16: [-32768, 32767],
  int32: [INT32_MIN, INT32_MAX],
  uint8: [0, 255],
  uint16: [0, 65535],
};
// A lone surrogate has no UTF-8 form (onnxruntime would get U+FFFD in its place), and
// onnxruntime-node passes strings on as C strings, cut at the first NUL: neither would be the string sent.
const NOT_TRANSMISSIBLE = /\p{Surrogate}|\0/u;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const DECIMAL_INTEGER = /^-?[0-9]+$/;
// "-9223372036854775808" is 20 characters; longer strings cannot be in range (short of leading
// zeros, which nobody sends) and are refused before BigInt parses something enormous.
const MAX_INT64_STRING_LENGTH = 20;

/**
 * Checks one submitted row against the model's inputs: a plain object with exactly the model's
 * input names, each value nested to the input's per-row shape (its shape without the batch
 * dimension) with elements of the input's type. Returns no issues for a valid row.
 *
 * Runs on every row of every job, so it walks values with plain loops and builds path strings only
 * when it reports an issue.
 *
 * @param path - the row's own path, e.g. `inputs[17]`; issue paths extend it.
 */
export function validateRow(row: unknown, inputs: readonly TensorSpec[], path: string): RowIssue[] {
  const issues: RowIssue[] = [];
  if (!isPlainObject(row)) {
    issues.push({ path, message: `expected an object keyed by input name, got ${describe(row)}` });
    return issues;
  }

  for (const input of inputs) {
    const inputPath = path + propertyPath(input.name);
    if (!Object.hasOwn(row, input.name)) {
      issues.push({ path: inputPath, message: "missing input" });
    } else {
      const walker = new ValueWalker(input, inputPath, issues);
      walker.check(row[input.name], 0);
    }
    if (issues.length >= MAX_ISSUES_PER_ROW) return issues;
  }

  for (const key of Object.keys(row)) {
    if (inputs.some((input) => input.name === key)) continue;
    issues.push({
      path: path + propertyPath(key),
      message: `unknown input '${key}'; the model's inputs are: ${inputs.map((i) => i.name).join(", ")}`,
    });
    if (issues.length >= MAX_ISSUES_PER_ROW) break;
  }
  return issues;
}

/**
 * A key that is equal for two (valid) rows exactly when they can be stacked into one batch: it
 * lists the concrete length of every dimension the model leaves open. For a model whose inputs
 * only have fixed per-row dimensions every row gets "".
 */
export function rowShapeKey(row: TensorRow, inputs: readonly TensorSpec[]): string {
  let key = "";
  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i]!;
    if (!hasOpenRowDim(input)) continue;
    key += `${i}:${perRowDims(row[input.name], input.shape.length - 1).join("x")};`;
  }
  return key;
}

/** Whether any dimension after the batch dimension is symbolic (or unknown), so rows may differ there. */
export function hasOpenRowDim(input: TensorSpec): boolean {
  return input.shape.some((dim, d) => d > 0 && !isFixedDim(dim));
}

/** A dimension of known size. ORT reports unknown ones as strings; -1 can come from other tools. */
export function isFixedDim(dim: number | string | undefined): dim is number {
  return typeof dim === "number" && dim >= 0;
}

/** The lengths of a validated, rectangular value, read along its first elements. */
export function perRowDims(value: unknown, rank: number): number[] {
  const dims: number[] = [];
  let current = value;
  for (let d = 0; d < rank; d++) {
    if (!Array.isArray(current)) break;
    dims.push(current.length);
    current = current[0];
  }
  return dims;
}

/**
 * Checks one element and returns OK or the code of what is wrong with it. Messages are built
 * separately, in `scalarMessage`: V8 (Node 20) optimises a check that formats the same number in
 * two branches into code around 50x slower on every element, even when no branch is taken.
 */
type ScalarCheck = (value: unknown) => number;

const OK = 0;
const NOT_NUMBER = 1;
const NOT_FINITE = 2;
const OUTSIDE_FLOAT32 = 3;
const NOT_INTEGER = 4;
const OUTSIDE_INT32 = 5;
const UNSAFE_INT64_NUMBER = 6;
const NOT_INT64 = 7;
const OUTSIDE_INT64 = 8;
const NOT_BOOL = 9;
const UNSUPPORTED_TYPE = 10;
const OUTSIDE_FLOAT16 = 11;
const OUTSIDE_INTEGER_RANGE = 12;
const NOT_STRING = 13;
const STRING_TOO_LONG = 14;
const NOT_TRANSMISSIBLE_STRING = 15;

/** Walks one input's value; holds the state that would otherwise be threaded through every call. */
class ValueWalker {
  private readonly rank: number;
  /** Fixed length per depth, or -1 where the dimension is open. */
  private readonly fixed: number[];
  /** For open dimensions, the length first seen at each depth; later arrays there must match it. */
  private readonly seen: number[];
  /** Index at each depth of the value being checked, used to build paths only for issues. */
  private readonly indices: number[];
  private readonly checkScalar: ScalarCheck;
  private readonly input: TensorSpec;
  private readonly basePath: string;
  private readonly issues: RowIssue[];

  constructor(input: TensorSpec, basePath: string, issues: RowIssue[]) {
    this.input = input;
    this.basePath = basePath;
    this.issues = issues;
    const rowShape = input.shape.slice(1);
    this.rank = rowShape.length;
    this.fixed = rowShape.map((d) => (isFixedDim(d) ? d : -1));
    this.seen = rowShape.map(() => -1);
    this.indices = rowShape.map(() => 0);
    this.checkScalar = scalarCheckFor(input.type);
  }

  /** Returns false once the row has reached its issue cap, to stop the walk. */
  check(value: unknown, depth: number): boolean {
    if (depth === this.rank) {
      const code = this.checkScalar(value);
      return code === OK || this.report(depth, scalarMessage(code, value, this.input.type));
    }
    const fixed = this.fixed[depth]!;
    if (!Array.isArray(value)) {
      const expected = fixed >= 0 ? `an array of ${fixed} values` : "an array";
      return this.report(depth, `expected ${expected}, got ${describe(value)}`);
    }
    const length = value.length;
    if (fixed >= 0) {
      if (length !== fixed) return this.report(depth, `expected ${fixed} values, got ${length}`);
    } else if (length === 0) {
      return this.report(depth, "expected at least 1 value, got an empty array");
    } else {
      const seen = this.seen[depth]!;
      if (seen < 0) {
        this.seen[depth] = length;
      } else if (length !== seen) {
        return this.report(depth, `ragged array: expected ${seen} values like the other arrays at this depth, got ${length}`);
      }
    }

    const childDepth = depth + 1;
    if (childDepth === this.rank) {
      // Innermost arrays hold nearly all elements, so they skip the recursive call.
      const checkScalar = this.checkScalar;
      for (let i = 0; i < length; i++) {
        const code = checkScalar(value[i]);
        if (code !== OK) {
          this.indices[depth] = i;
          if (!this.report(childDepth, scalarMessage(code, value[i], this.input.type))) return false;
        }
      }
      return true;
    }
    for (let i = 0; i < length; i++) {
      this.indices[depth] = i;
      if (!this.check(value[i], childDepth)) return false;
    }
    return true;
  }

  private report(depth: number, message: string): boolean {
    let path = this.basePath;
    for (let d = 0; d < depth; d++) path += `[${this.indices[d]}]`;
    this.issues.push({ path, message });
    return this.issues.length < MAX_ISSUES_PER_ROW;
  }
}

function scalarCheckFor(type: string): ScalarCheck {
  switch (type) {
    case "float32":
      return checkFloat32;
    case "float64":
      return checkFloat64;
    case "float16":
      return checkFloat16;
    case "int32":
      return checkInt32;
    case "int8":
    case "int16":
    case "uint8":
    case "uint16": {
      const [min, max] = INTEGER_RANGES[type]!;
      return (value) => {
        if (typeof value !== "number" || !Number.isInteger(value)) return NOT_INTEGER;
        return value < min || value > max ? OUTSIDE_INTEGER_RANGE : OK;
      };
    }
    case "int64":
      return checkInt64;
    case "bool":
      return checkBool;
    case "string":
      return checkString;
    default:
      // inspectModel refuses such models, so only a signature from elsewhere gets here.
      return () => UNSUPPORTED_TYPE;
  }
}

function checkFloat64(value: unknown): number {
  if (typeof value !== "number") return NOT_NUMBER;
  if (!Number.isFinite(value)) return NOT_FINITE;
  return OK;
}

function checkFloat32(value: unknown): number {
  if (typeof value !== "number") return NOT_NUMBER;
  if (!Number.isFinite(value)) return NOT_FINITE;
  if (value > FLOAT32_MAX || value < -FLOAT32_MAX) return OUTSIDE_FLOAT32;
  return OK;
}

function checkFloat16(value: unknown): number {
  if (typeof value !== "number") return NOT_NUMBER;
  if (!Number.isFinite(value)) return NOT_FINITE;
  if (value > FLOAT16_MAX || value < -FLOAT16_MAX) return OUTSIDE_FLOAT16;
  return OK;
}

function checkInt32(value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value)) return NOT_INTEGER;
  if (value < INT32_MIN || value > INT32_MAX) return OUTSIDE_INT32;
  return OK;
}

function checkInt64(value: unknown): number {
  if (typeof value === "number") {
    if (!Number.isInteger(value)) return NOT_INTEGER;
    return Number.isSafeInteger(value) ? OK : UNSAFE_INT64_NUMBER;
  }
  if (typeof value === "string") {
    if (!DECIMAL_INTEGER.test(value)) return NOT_INT64;
    if (value.length > MAX_INT64_STRING_LENGTH) return OUTSIDE_INT64;
    const n = BigInt(value);
    return n < INT64_MIN || n > INT64_MAX ? OUTSIDE_INT64 : OK;
  }
  return NOT_INTEGER;
}

function checkBool(value: unknown): number {
  return typeof value === "boolean" ? OK : NOT_BOOL;
}

function checkString(value: unknown): number {
  if (typeof value !== "string") return NOT_STRING;
  // UTF-8 takes at most 3 bytes per UTF-16 unit, so most strings need no counting.
  if (value.length * 3 > MAX_STRING_ELEMENT_BYTES && (value.length > MAX_STRING_ELEMENT_BYTES || Buffer.byteLength(value, "utf8") > MAX_STRING_ELEMENT_BYTES)) {
    return STRING_TOO_LONG;
  }
  return NOT_TRANSMISSIBLE.test(value) ? NOT_TRANSMISSIBLE_STRING : OK;
}

function scalarMessage(code: number, value: unknown, type: string): string {
  switch (code) {
    case NOT_NUMBER:
      return `expected a number, got ${describe(value)}`;
    case NOT_FINITE:
      return `expected a finite number, got ${String(value)}`;
    case OUTSIDE_FLOAT32:
      return `${String(value)} is outside the float32 range (±${FLOAT32_MAX})`;
    case NOT_INTEGER:
      return `expected an integer, got ${describe(value)}`;
    case OUTSIDE_INT32:
      return `${String(value)} is outside the int32 range (${INT32_MIN} to ${INT32_MAX})`;
    case OUTSIDE_INTEGER_RANGE: {
      const [min, max] = INTEGER_RANGES[type] ?? [0, 0];
      return `${String(value)} is outside the ${type} range (${min} to ${max})`;
    }
    case OUTSIDE_FLOAT16:
      return `${String(value)} is outside the float16 range (±${FLOAT16_MAX})`;
    case UNSAFE_INT64_NUMBER:
      return `${String(value)} is too large to be exact as a JSON number; send integers beyond ±9007199254740991 as decimal strings`;
    case NOT_INT64:
      return `expected an integer or a decimal integer string, got ${describe(value)}`;
    case OUTSIDE_INT64:
      return `${truncate(String(value))} is outside the int64 range`;
    case NOT_BOOL:
      return `expected true or false, got ${describe(value)}`;
    case NOT_STRING:
      return `expected a string, got ${describe(value)}`;
    case STRING_TOO_LONG:
      return `a string of ${Buffer.byteLength(value as string, "utf8")} bytes (UTF-8) is longer than the ${MAX_STRING_ELEMENT_BYTES} bytes a string element may have`;
    case NOT_TRANSMISSIBLE_STRING:
      return (value as string).includes("\0")
        ? `the string ${JSON.stringify(truncate(value as string))} holds a NUL character, which onnxruntime cannot take inside a string`
        : `the string ${JSON.stringify(truncate(value as string))} holds a lone UTF-16 surrogate, which has no UTF-8 form`;
    default:
      return `input type ${type} is not supported`;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `.name` for identifier-like names, `["input:0"]` for the rest (common in converted TensorFlow models). */
function propertyPath(name: string): string {
  return IDENTIFIER.test(name) ? `.${name}` : `[${JSON.stringify(name)}]`;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return `an array of ${value.length} values`;
  switch (typeof value) {
    case "string":
      return `the string ${JSON.stringify(truncate(value))}`;
    case "number":
      return String(value);
    case "boolean":
      return String(value);
    case "object":
      return "an object";
    default:
      return `a ${typeof value}`;
  }
}

function truncate(text: string): string {
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}
