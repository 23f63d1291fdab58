import type { CoalesceClient, ModelRef, Prediction } from "@coalesce/client";
import { DEFAULT_ALIAS, type TensorRow, type TensorSpec, type TensorValue } from "@coalesce/contracts";
import { expectPositionals, parseCommandArgs, parseWholeNumber, type OptionSpecs } from "../args.ts";
import type { Command } from "../command.ts";
import { CliError, EXIT_FAILURE, EXIT_OK, UsageError } from "../errors.ts";
import { formatCount, formatJson, formatModel, formatOutputValue, formatTable, formatTensor } from "../format.ts";

const NAME = "predict";
const OPTIONS = {
  version: { type: "string" },
  row: { type: "string", multiple: true },
  json: { type: "boolean" },
  "no-cache": { type: "boolean" },
  "routing-key": { type: "string" },
} as const satisfies OptionSpecs;

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const INTEGER = /^[+-]?\d+$/;
/** Inputs whose values the API also takes as decimal strings, for integers past 2^53. */
const WIDE_INTEGER_TYPES = new Set(["int64", "uint64"]);
/** Inputs that a list of numbers cannot feed. */
const NON_NUMERIC_TYPES = new Set(["bool", "string"]);
const JSON_ROW_EXAMPLE = `{"features": [5.1, 3.5, 1.4, 0.2]}`;

export const predictCommand: Command = {
  name: NAME,
  summary: "score a few rows now and print their outputs",
  options: OPTIONS,
  help: `Usage: coalesce predict MODEL[@VERSION|@ALIAS] [--version N] [--row V,V,...]... [--json] [--no-cache]
                        [--routing-key KEY]

Scores rows now and prints each row's outputs: for a handful of rows, when you want the answer
at once (for many rows, \`coalesce submit\`). At most PREDICT_MAX_ROWS rows (server default 1024).

The rows come from --row, or else from standard input:
  --row V,V,...   one row, its values in order for the model's single input (repeatable);
                  a row that starts with '-' is written --row=-1.5,2
  JSON on stdin   an array of rows, one row, or one row per line (NDJSON), each keyed by input
                  name as a job takes them: ${JSON_ROW_EXAMPLE}
  CSV on stdin    one row per line, numbers only, for the model's single input; a first line
                  that is not all numbers is a header and is skipped
A model with several inputs, or an input that is not [batch] or [batch, N], takes JSON rows.

Prints one line per row: its index, each output (numbers to 4 significant digits, long vectors
by their ends; --json for every digit) and the row's error if it has one; then a summary on stderr.

Options:
  --version N         score with version N (MODEL@N says the same); MODEL@ALIAS goes through an
                      alias (coalesce models alias); MODEL alone means its production alias when it
                      has one, else its latest version
  --row V,...         a row (repeatable)
  --json              print the API's answer as it is
  --no-cache          run the model even when the answer is cached (Cache-Control: no-cache)
  --routing-key KEY   with an alias that splits traffic, the same KEY is answered by the same version

Exit status: 0 every row scored, 1 a row failed or the server refused (a 422 names the row and
field, a 503 means no worker is running), 2 for a mistake on the command line.

Examples:
  coalesce predict iris --row 5.1,3.5,1.4,0.2 --row 6.7,3.0,5.2,2.3
  echo '${JSON_ROW_EXAMPLE}' | coalesce predict iris@1 --json
  coalesce predict iris@canary --routing-key user-8271 --row 5.1,3.5,1.4,0.2
  cut -d, -f2-5 fixtures/iris.csv | coalesce predict iris`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(NAME, args, OPTIONS);
    const [modelArg = ""] = expectPositionals(NAME, positionals, ["MODEL"]);
    const { name, version, alias } = parseModelArg(modelArg, values.version);
    if (!values.row && context.io.stdin.isTTY) {
      throw new UsageError("no rows: give --row 5.1,3.5,1.4,0.2, or pipe JSON or CSV rows on stdin", NAME);
    }
    const client = context.connect(values, NAME);
    const source = values.row ? { kind: "values" as const, rows: values.row.map((row, i) => parseRowOption(row, i)) } : parseStdin(await readAll(context.io.stdin));

    let model: ModelRef;
    let rows: TensorRow[];
    if (source.kind === "json") {
      model = alias !== undefined ? { name, alias } : version === undefined ? name : { name, version };
      rows = source.rows;
    } else {
      const spec = await singleInput(client, name, version, alias);
      // Pinned to the version whose input was read, so a version pushed meanwhile cannot change its meaning;
      // through an alias it stays unpinned, since the alias chooses the version (all of its versions take the same inputs).
      model = spec.alias !== undefined ? (alias === undefined ? name : { name, alias }) : { name, version: spec.version };
      rows = source.rows.map((cells) => ({ [spec.input.name]: toValue(spec.input, cells.values, cells.where) }));
    }

    const answer = await client.predict(model, rows, {
      cache: values["no-cache"] ? "refresh" : "use",
      ...(values["routing-key"] === undefined ? {} : { routingKey: values["routing-key"] }),
    });
    const failed = answer.outputs.filter((row) => row.error).length;
    if (values.json) {
      context.io.stdout.write(formatJson({ model: answer.model, outputs: answer.outputs }));
    } else {
      context.io.stdout.write(`${formatPrediction(answer)}\n`);
      const failures = failed > 0 ? ` (${formatCount(failed)} failed)` : "";
      context.io.stderr.write(`${formatCount(answer.outputs.length)} ${answer.outputs.length === 1 ? "row" : "rows"}${failures}, cache ${answer.cache}, model ${formatModel(answer.model)}\n`);
    }
    return failed > 0 ? EXIT_FAILURE : EXIT_OK;
  },
};

/** `iris`, `iris@2`, `iris --version 2` or `iris@canary`. */
function parseModelArg(arg: string, versionOption: string | undefined): { name: string; version: number | undefined; alias: string | undefined } {
  const match = /^([^@]+)(?:@(.*))?$/.exec(arg);
  if (!match?.[1]) throw new UsageError(`name the model as NAME, NAME@VERSION or NAME@ALIAS, e.g. iris, iris@2 or iris@canary; got '${arg}'`, NAME);
  const fromOption = parseWholeNumber(NAME, "--version", versionOption, 1);
  const selector = match[2];
  if (selector === undefined) return { name: match[1], version: fromOption, alias: undefined };
  if (fromOption !== undefined) throw new UsageError(`give the version once: ${arg} or --version ${fromOption}`, NAME);
  if (/^[a-z]/.test(selector)) return { name: match[1], version: undefined, alias: selector };
  if (!/^[1-9][0-9]*$/.test(selector)) throw new UsageError(`after '@' comes a version (a whole number from 1) or an alias name, e.g. iris@2 or iris@canary; got '${arg}'`, NAME);
  return { name: match[1], version: Number(selector), alias: undefined };
}

/** A row's values as typed, and where they came from, for messages. */
type ValueRow = { values: string[]; where: string };
type RowSource = { kind: "json"; rows: TensorRow[] } | { kind: "values"; rows: ValueRow[] };

function parseRowOption(row: string, index: number): ValueRow {
  const where = `--row ${index + 1} (${row})`;
  const values = row.split(",").map((value) => value.trim());
  const bad = values.find((value) => !NUMBER.test(value));
  if (bad !== undefined) throw new UsageError(`${where}: ${bad === "" ? "an empty value" : `'${bad}' is not a number`}; --row takes numbers separated by commas`, NAME);
  return { values, where };
}

async function readAll(stdin: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString("utf8");
}

/** JSON when it starts like JSON (`[` or `{`), else CSV. */
function parseStdin(text: string): RowSource {
  const trimmed = text.trim();
  if (trimmed === "") throw new CliError(`no rows on stdin: pipe JSON rows (${JSON_ROW_EXAMPLE}) or CSV lines, or give --row V,V,...`);
  if (trimmed.startsWith("[") || trimmed.startsWith("{")) return { kind: "json", rows: parseJsonRows(trimmed) };
  return { kind: "values", rows: parseCsvRows(text) };
}

function parseJsonRows(text: string): TensorRow[] {
  let rows: unknown[];
  try {
    const parsed: unknown = JSON.parse(text);
    rows = Array.isArray(parsed) ? parsed : [parsed];
  } catch (wholeError) {
    // Not one JSON document: one row per line (NDJSON).
    const lines = text.split(/\r?\n/).map((line, i) => ({ line: line.trim(), number: i + 1 })).filter(({ line }) => line !== "");
    if (lines.length === 1) throw new CliError(`stdin is not valid JSON: ${(wholeError as Error).message}`);
    rows = lines.map(({ line, number }) => {
      try {
        return JSON.parse(line) as unknown;
      } catch (error) {
        throw new CliError(`stdin line ${number} is not JSON: ${(error as Error).message}; give one row per line, or one JSON array of rows`);
      }
    });
  }
  if (rows.length === 0) throw new CliError("stdin holds an empty array: no rows to score");
  rows.forEach((row, i) => {
    if (typeof row !== "object" || row === null || Array.isArray(row)) {
      throw new CliError(`stdin row ${i + 1} is not an object keyed by input name, e.g. ${JSON_ROW_EXAMPLE}`);
    }
  });
  // The values are checked by the server against the model, which names the row and field.
  return rows as TensorRow[];
}

function parseCsvRows(text: string): ValueRow[] {
  const lines = text.split(/\r?\n/).map((line, i) => ({ cells: line.split(",").map((cell) => cell.trim()), number: i + 1 }));
  const filled = lines.filter(({ cells }) => cells.some((cell) => cell !== ""));
  const [first] = filled;
  // A header names columns, so some cell of it is not a number; data lines are all numbers.
  const data = first && !first.cells.every((cell) => NUMBER.test(cell)) ? filled.slice(1) : filled;
  if (data.length === 0) throw new CliError("stdin has a header line but no rows");
  return data.map(({ cells, number }) => {
    const where = `stdin line ${number}`;
    const bad = cells.find((cell) => !NUMBER.test(cell));
    if (bad !== undefined) {
      throw new CliError(`${where}: ${bad === "" ? "an empty value" : `'${bad}' is not a number`}; CSV rows hold numbers only (pipe JSON rows for other values)`);
    }
    return { values: cells, where };
  });
}

/**
 * The model's one input, which --row and CSV values feed; anything else is said with what to do instead.
 * Through an alias (named, or `production` for a plain name), the input of a version it routes to, and that alias.
 */
async function singleInput(
  client: CoalesceClient,
  name: string,
  version: number | undefined,
  alias: string | undefined,
): Promise<{ version: number; alias: string | undefined; input: TensorSpec }> {
  const model = await client.getModel(name);
  const viaAlias = alias ?? (version === undefined ? DEFAULT_ALIAS : undefined);
  let wanted = version ?? model.latest_version;
  let routedBy: string | undefined;
  if (viaAlias !== undefined) {
    const routed = model.versions.find((candidate) => candidate.aliases.includes(viaAlias));
    if (routed) {
      wanted = routed.version;
      routedBy = viaAlias;
    } else if (alias !== undefined) {
      // The server says best why there is no such alias (no model, or no alias of that name).
      const found = await client.getAlias(name, alias);
      wanted = found.routes[0]?.version ?? wanted;
      routedBy = alias;
    }
  }
  const found = model.versions.find((candidate) => candidate.version === wanted);
  if (!found) throw new CliError(`model '${name}' has no version ${wanted} (the latest is ${model.latest_version})`);
  const jsonInstead = (reason: string, example: string) =>
    new CliError(`${reason}; pipe JSON rows on stdin instead, e.g. echo '${example}' | coalesce ${NAME} ${name}@${found.version}`);
  const [input, ...others] = found.inputs;
  if (!input || others.length > 0) {
    const example = `{${found.inputs.map((spec) => `"${spec.name}": ...`).join(", ")}}`;
    throw jsonInstead(
      `${formatModel({ name, version: found.version })} has ${found.inputs.length} inputs (${found.inputs.map(formatTensor).join(", ")}), and --row and CSV rows feed a single one`,
      example,
    );
  }
  if (input.shape.length > 2) {
    throw jsonInstead(`its input is ${formatTensor(input)}, and --row and CSV rows feed an input of shape [batch] or [batch, N]`, `{"${input.name}": [[...], ...]}`);
  }
  if (NON_NUMERIC_TYPES.has(input.type)) {
    throw jsonInstead(`its input is ${formatTensor(input)}, and --row and CSV rows hold numbers`, `{"${input.name}": ...}`);
  }
  return { version: found.version, alias: routedBy, input };
}

/** One row's values as the input takes them: a number for a [batch] input, else the list. */
function toValue(input: TensorSpec, values: string[], where: string): TensorValue {
  const numbers = values.map((value) =>
    // Past 2^53 a number would be rounded; the API takes such an int64 as its decimal string.
    WIDE_INTEGER_TYPES.has(input.type) && INTEGER.test(value) && !Number.isSafeInteger(Number(value)) ? value : Number(value),
  );
  if (input.shape.length > 1) return numbers;
  const [only] = numbers;
  if (only === undefined || numbers.length > 1) {
    throw new CliError(`${where}: ${formatTensor(input)} takes one value per row, got ${numbers.length}`);
  }
  return only;
}

/** One line per row: ROW, each output, then ERROR when a row has one. */
export function formatPrediction(answer: Prediction): string {
  const names: string[] = [];
  for (const row of answer.outputs) {
    for (const name of Object.keys(row.outputs ?? {})) if (!names.includes(name)) names.push(name);
  }
  const anyError = answer.outputs.some((row) => row.error);
  const header = ["ROW", ...names, ...(anyError ? ["ERROR"] : [])];
  const lines = answer.outputs.map((row) => [
    String(row.index),
    ...names.map((name) => (row.outputs && name in row.outputs ? formatOutputValue(row.outputs[name]) : "")),
    ...(anyError ? [row.error ? `${row.error.code}: ${row.error.message}` : ""] : []),
  ]);
  return formatTable(header, lines);
}
