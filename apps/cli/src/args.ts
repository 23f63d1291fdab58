import { parseArgs, type ParseArgsConfig } from "node:util";
import type { ResultsFormat } from "@coalesce/client";
import { UsageError } from "./errors.ts";

export type OptionSpecs = NonNullable<ParseArgsConfig["options"]>;

/** Accepted by every command, before or after its name. */
export const GLOBAL_OPTIONS = {
  url: { type: "string" },
  "api-key": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies OptionSpecs;

export type GlobalValues = { url?: string | undefined; "api-key"?: string | undefined };

/** Parses one command's arguments strictly (an unknown option is a usage error), with the global options too. */
export function parseCommandArgs<const O extends OptionSpecs>(command: string, args: string[], options: O) {
  try {
    return parseArgs({ args, options: { ...GLOBAL_OPTIONS, ...options }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(describeParseError(error), command);
  }
}

// node:util's messages are long and suggest `--` tricks; say what is wrong and point at the help instead.
function describeParseError(error: unknown): string {
  const { code, message } = error as { code?: string; message: string };
  const option = /'(-[^' ]+)/.exec(message)?.[1];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && option) return `unknown option ${option}`;
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option && /argument missing/.test(message)) return `${option} needs a value`;
  // `--row -1.5,2`: node:util will not take a value that looks like an option unless it is attached.
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option && /ambiguous/.test(message)) {
    return `write a value that starts with '-' as ${option}=VALUE, e.g. ${option}=-1.5,2`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option) return `${option} takes no value`;
  return message;
}

/** The positionals by name; a missing or extra one is a usage error. */
export function expectPositionals(command: string, positionals: string[], names: string[]): string[] {
  if (positionals.length < names.length) {
    throw new UsageError(`missing ${names.slice(positionals.length).join(" ")}`, command);
  }
  if (positionals.length > names.length) {
    throw new UsageError(`unexpected argument '${positionals[names.length]}'`, command);
  }
  return positionals;
}

/** `--ignore a,b --ignore c` -> `["a", "b", "c"]` */
export function parseColumnList(values: string[] | undefined): string[] | undefined {
  if (!values) return undefined;
  return values.flatMap((value) => value.split(",")).map((column) => column.trim()).filter((column) => column !== "");
}

/** `--map features=a,b,c,d --map mask=m` -> `{ features: ["a", "b", "c", "d"], mask: ["m"] }` */
export function parseMapOptions(command: string, values: string[] | undefined): Record<string, string[]> | undefined {
  if (!values) return undefined;
  const map: Record<string, string[]> = {};
  for (const value of values) {
    const match = /^([^=]+)=(.+)$/.exec(value);
    const columns = match?.[2]?.split(",").map((column) => column.trim()).filter((column) => column !== "") ?? [];
    if (!match?.[1] || columns.length === 0) {
      throw new UsageError(`--map takes INPUT=COLUMN[,COLUMN...], e.g. --map features=a,b,c,d; got '${value}'`, command);
    }
    const input = match[1].trim();
    if (input in map) throw new UsageError(`--map names input '${input}' twice`, command);
    map[input] = columns;
  }
  return map;
}

/** A whole number option (`--max-errors 10`, `--limit 50`). */
export function parseWholeNumber(command: string, option: string, value: string | undefined, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim()) || Number(value) < min) {
    throw new UsageError(`${option} takes a whole number${min > 0 ? ` of at least ${min}` : ""}, got '${value}'`, command);
  }
  return Number(value);
}

/** `--format`, else the output file's extension (.csv, .ndjson, .jsonl), else csv. */
export function resolveFormat(command: string, format: string | undefined, out: string | undefined): ResultsFormat {
  if (format !== undefined) {
    if (format === "csv" || format === "ndjson") return format;
    throw new UsageError(`--format takes csv or ndjson, got '${format}'`, command);
  }
  if (out && /\.(ndjson|jsonl)$/i.test(out)) return "ndjson";
  return "csv";
}

/** `iris@2` -> `{ name: "iris", version: 2 }`: a command that acts on one version. */
export function parseVersionRef(command: string, ref: string): { name: string; version: number } {
  const match = /^([^@]+)@([1-9][0-9]*)$/.exec(ref);
  if (!match?.[1]) throw new UsageError(`name the version as NAME@VERSION, e.g. iris@2; got '${ref}'`, command);
  return { name: match[1], version: Number(match[2]) };
}

/** `VERSION=VALUE` (`--canary 3=10`, `--shadow 5=0.2`): the version and the value's text. */
export function parseVersionPair(command: string, option: string, value: string, what: string, example: string): { version: number; value: string } {
  const match = /^\s*([1-9][0-9]*)\s*=\s*(\S+)\s*$/.exec(value);
  if (!match?.[2]) throw new UsageError(`${option} takes VERSION=${what}, e.g. ${option} ${example}; got '${value}'`, command);
  return { version: Number(match[1]), value: match[2] };
}
