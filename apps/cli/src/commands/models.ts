import { readFile } from "node:fs/promises";
import type { ModelVersion } from "@coalesce/contracts";
import { expectPositionals, parseCommandArgs, parseVersionRef, parseWholeNumber, type OptionSpecs } from "../args.ts";
import type { Command } from "../command.ts";
import { CliError, EXIT_OK, fileError, UsageError } from "../errors.ts";
import { formatBytes, formatJson, formatTable, formatTensor } from "../format.ts";

const PUSH = "models push";
const LIST = "models list";
const LIST_OPTIONS = { json: { type: "boolean" } } as const satisfies OptionSpecs;

export const modelsPushCommand: Command = {
  name: PUSH,
  summary: "register an .onnx file (or a .tar/.tar.gz of one with its data files) as the next version of a model",
  options: {},
  help: `Usage: coalesce models push NAME FILE.onnx|FILE.tar|FILE.tar.gz

Uploads an ONNX model as the next version of NAME (1, 2, 3, ...). The server loads it to check it
and reads its inputs and outputs. Pushing the same bytes as the latest version again changes nothing.
NAME is 1-64 characters: lower-case letters, digits, '.', '_' or '-'.

A model that keeps its weights in external data files (over 2 GB, or as many PyTorch exports do) is
pushed as one archive, .tar or .tar.gz (.tgz): its .onnx file at the top level and the data files at
the paths the model names, nothing else.

Examples:
  coalesce models push iris fixtures/iris.onnx
  tar -czf llm.tar.gz model.onnx model.onnx.data && coalesce models push llm llm.tar.gz`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(PUSH, args, {});
    const [name = "", file = ""] = expectPositionals(PUSH, positionals, ["NAME", "FILE"]);
    const bytes = await readFile(file).catch((error: unknown) => {
      throw fileError(file, error);
    });
    const format = archiveFormatOf(file);
    const version = await context
      .connect(values, PUSH)
      .pushModel(name, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), format ? { format } : {});
    context.io.stdout.write(
      [
        `${version.name} version ${version.version} (${formatBytes(version.size_bytes)}, sha256 ${version.sha256.slice(0, 12)})`,
        `  inputs:  ${version.inputs.map(formatTensor).join(", ")}`,
        `  outputs: ${version.outputs.map(formatTensor).join(", ")}`,
      ].join("\n") + "\n",
    );
    return EXIT_OK;
  },
};

/** An archive by its file name; anything else is left to the client, which tells an .onnx file from its bytes. */
function archiveFormatOf(file: string): "tar" | "tar.gz" | undefined {
  const lower = file.toLowerCase();
  if (lower.endsWith(".tar")) return "tar";
  if (lower.endsWith(".tar.gz") || lower.endsWith(".tgz")) return "tar.gz";
  return undefined;
}

export const modelsListCommand: Command = {
  name: LIST,
  summary: "list your models with their aliases, inputs and outputs",
  options: LIST_OPTIONS,
  help: `Usage: coalesce models list [--json]

Lists your models: the latest version of each, with its inputs and outputs.

Options:
  --json   print the list as the API returns it`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(LIST, args, LIST_OPTIONS);
    expectPositionals(LIST, positionals, []);
    const models = await context.connect(values, LIST).listModels();
    if (values.json) {
      context.io.stdout.write(formatJson(models));
    } else if (models.data.length === 0) {
      context.io.stderr.write("no models yet: register one with `coalesce models push NAME model.onnx`\n");
    } else {
      const rows = models.data.map((model) => {
        const latest = model.versions.find((version) => version.version === model.latest_version) ?? model.versions.at(-1);
        // Where each alias points: `production=2 canary=2+3` (a split over versions 2 and 3).
        const pointers = new Map<string, number[]>();
        for (const version of model.versions) for (const alias of version.aliases) pointers.set(alias, [...(pointers.get(alias) ?? []), version.version]);
        return [
          model.name,
          String(model.latest_version),
          [...pointers].map(([alias, versions]) => `${alias}=${versions.join("+")}`).join(" ") || "-",
          latest?.inputs.map(formatTensor).join(", ") ?? "",
          latest?.outputs.map(formatTensor).join(", ") ?? "",
        ];
      });
      context.io.stdout.write(`${formatTable(["NAME", "LATEST", "ALIASES", "INPUTS", "OUTPUTS"], rows)}\n`);
    }
    return EXIT_OK;
  },
};

const BATCHING = "models batching";
const BATCHING_OPTIONS = {
  "max-rows": { type: "string" },
  "max-delay-ms": { type: "string" },
  "max-bytes": { type: "string" },
  default: { type: "boolean" },
} as const satisfies OptionSpecs;

export const modelsBatchingCommand: Command = {
  name: BATCHING,
  summary: "set how the workers batch a model version's rows",
  options: BATCHING_OPTIONS,
  help: `Usage: coalesce models batching NAME@VERSION [--max-rows N] [--max-delay-ms MS] [--max-bytes N] [--default]

Sets the version's batching limits: most rows per onnxruntime run (1 turns coalescing off), longest
wait for a batch to fill, largest input bytes per run. Limits not given stay as they are; --default
puts every limit back to the workers' own (MAX_BATCH_ROWS, MAX_BATCH_DELAY_MS, MAX_BATCH_BYTES).
Running workers apply the change within a few seconds.

Example:
  coalesce models batching iris@2 --max-rows 64 --max-delay-ms 2`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(BATCHING, args, BATCHING_OPTIONS);
    const [ref = ""] = expectPositionals(BATCHING, positionals, ["NAME@VERSION"]);
    const match = /^([^@]+)@([1-9][0-9]*)$/.exec(ref);
    if (!match) throw new UsageError(`name the version as NAME@VERSION, e.g. iris@2; got '${ref}'`, BATCHING);
    const limit = (option: keyof typeof BATCHING_OPTIONS, min: number) =>
      values.default ? null : parseWholeNumber(BATCHING, `--${option}`, values[option] as string | undefined, min);
    const batching = {
      max_batch_rows: limit("max-rows", 1),
      max_batch_delay_ms: limit("max-delay-ms", 0),
      max_batch_bytes: limit("max-bytes", 1),
    };
    const changes = Object.fromEntries(Object.entries(batching).filter(([, value]) => value !== undefined));
    if (Object.keys(changes).length === 0) throw new UsageError("give at least one of --max-rows, --max-delay-ms, --max-bytes or --default", BATCHING);
    const version = await context.connect(values, BATCHING).updateModelVersion(match[1] as string, Number(match[2]), { batching: changes });
    const show = (value: number | null, unit = "") => (value === null ? "worker default" : `${value}${unit}`);
    context.io.stdout.write(
      `${version.name} version ${version.version}: max rows ${show(version.batching.max_batch_rows)}, ` +
        `max delay ${show(version.batching.max_batch_delay_ms, " ms")}, max bytes ${show(version.batching.max_batch_bytes)}\n`,
    );
    return EXIT_OK;
  },
};

const REMOVE = "models rm";

export const modelsRemoveCommand: Command = {
  name: REMOVE,
  summary: "delete a model version",
  options: {},
  help: `Usage: coalesce models rm NAME@VERSION

Deletes the version: NAME@VERSION no longer resolves, and its number is never given again. Refused
while an alias routes to it or shadows with it (point the alias elsewhere first: coalesce models alias
set), or while an unfinished job runs on it. Finished jobs keep their results.

Example:
  coalesce models rm iris@2`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(REMOVE, args, {});
    const [ref = ""] = expectPositionals(REMOVE, positionals, ["NAME@VERSION"]);
    const { name, version } = parseVersionRef(REMOVE, ref);
    await context.connect(values, REMOVE).deleteModelVersion(name, version);
    context.io.stderr.write(`deleted ${name} version ${version}\n`);
    return EXIT_OK;
  },
};

const LABEL = "models label";
const LABEL_OPTIONS = { description: { type: "string" }, json: { type: "boolean" } } as const satisfies OptionSpecs;

export const modelsLabelCommand: Command = {
  name: LABEL,
  summary: "set a model version's labels (KEY=VALUE, KEY- removes) or description",
  options: LABEL_OPTIONS,
  help: `Usage: coalesce models label NAME@VERSION [KEY=VALUE | KEY-]... [--description TEXT] [--json]

Sets labels on the version (KEY=VALUE), removes them (KEY-), and leaves its other labels as they are.
--description TEXT describes the version; --description "" clears it. Prints the version's labels
and description as they now are.

Label keys are 1-63 characters: lower-case letters, digits, '.', '_', '/' or '-'; values up to 256.

Options:
  --description TEXT   what the version is, for people
  --json               print the version as the API returns it

Examples:
  coalesce models label iris@2 framework=sklearn dataset=iris-2026-11
  coalesce models label iris@2 dataset- --description "retrained on November's data"`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(LABEL, args, LABEL_OPTIONS);
    const [ref = "", ...changes] = positionals;
    if (ref === "") throw new UsageError("missing NAME@VERSION", LABEL);
    const { name, version } = parseVersionRef(LABEL, ref);
    const set: Record<string, string> = {};
    const removed: string[] = [];
    for (const change of changes) {
      const match = /^([^=]+)=(.*)$/.exec(change);
      if (match?.[1]) set[match[1]] = match[2] ?? "";
      else if (change.endsWith("-") && change.length > 1) removed.push(change.slice(0, -1));
      else throw new UsageError(`a label is KEY=VALUE (or KEY- to remove it), got '${change}'`, LABEL);
    }
    if (changes.length === 0 && values.description === undefined) {
      throw new UsageError("give labels (KEY=VALUE, KEY-) or --description TEXT", LABEL);
    }
    const client = context.connect(values, LABEL);
    let labels: Record<string, string> | undefined;
    if (changes.length > 0) {
      // The API replaces labels whole; read them first so the ones not named here stay.
      const model = await client.getModel(name);
      const current = model.versions.find((candidate) => candidate.version === version);
      if (!current) throw new CliError(`model '${name}' has no version ${version}`);
      labels = { ...current.labels, ...set };
      for (const key of removed) delete labels[key];
    }
    const updated = await client.updateModelVersion(name, version, {
      ...(labels === undefined ? {} : { labels }),
      ...(values.description === undefined ? {} : { description: values.description === "" ? null : values.description }),
    });
    context.io.stdout.write(values.json ? formatJson(updated) : `${describeVersionNotes(updated)}\n`);
    return EXIT_OK;
  },
};

/** `iris version 2` with its labels and description, one per line. */
function describeVersionNotes(version: ModelVersion): string {
  const labels = Object.entries(version.labels)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([key, value]) => `${key}=${value}`);
  return [
    `${version.name} version ${version.version}`,
    `  labels:      ${labels.length > 0 ? labels.join(", ") : "none"}`,
    `  description: ${version.description ?? "none"}`,
    ...(version.aliases.length > 0 ? [`  aliases:     ${version.aliases.join(", ")}`] : []),
    ...(version.shadow_of.length > 0 ? [`  shadow of:   ${version.shadow_of.join(", ")}`] : []),
  ].join("\n");
}
