import { readFile } from "node:fs/promises";
import { expectPositionals, parseCommandArgs, parseWholeNumber, type OptionSpecs } from "../args.ts";
import type { Command } from "../command.ts";
import { EXIT_OK, fileError, UsageError } from "../errors.ts";
import { formatBytes, formatJson, formatTable, formatTensor } from "../format.ts";

const PUSH = "models push";
const LIST = "models list";
const LIST_OPTIONS = { json: { type: "boolean" } } as const satisfies OptionSpecs;

export const modelsPushCommand: Command = {
  name: PUSH,
  summary: "register an .onnx file as the next version of a model",
  options: {},
  help: `Usage: coalesce models push NAME FILE.onnx

Uploads an ONNX model as the next version of NAME (1, 2, 3, ...). The server loads it to check it
and reads its inputs and outputs. Pushing the same bytes as the latest version again changes nothing.
NAME is 1-64 characters: lower-case letters, digits, '.', '_' or '-'.

Example:
  coalesce models push iris fixtures/iris.onnx`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(PUSH, args, {});
    const [name = "", file = ""] = expectPositionals(PUSH, positionals, ["NAME", "FILE"]);
    const bytes = await readFile(file).catch((error: unknown) => {
      throw fileError(file, error);
    });
    const version = await context.connect(values, PUSH).pushModel(name, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
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

export const modelsListCommand: Command = {
  name: LIST,
  summary: "list your models with their inputs and outputs",
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
        return [
          model.name,
          String(model.latest_version),
          latest?.inputs.map(formatTensor).join(", ") ?? "",
          latest?.outputs.map(formatTensor).join(", ") ?? "",
        ];
      });
      context.io.stdout.write(`${formatTable(["NAME", "LATEST", "INPUTS", "OUTPUTS"], rows)}\n`);
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
