import { GLOBAL_OPTIONS } from "./args.ts";
import type { Command } from "./command.ts";
import { jobsListCommand } from "./commands/jobs.ts";
import { ALIAS_COMMANDS } from "./commands/aliases.ts";
import { modelsBatchingCommand, modelsLabelCommand, modelsListCommand, modelsPushCommand, modelsRemoveCommand } from "./commands/models.ts";
import { predictCommand } from "./commands/predict.ts";
import { resultsCommand } from "./commands/results.ts";
import { cancelCommand } from "./commands/cancel.ts";
import { statusCommand } from "./commands/status.ts";
import { submitCommand } from "./commands/submit.ts";
import { WEBHOOK_COMMANDS } from "./commands/webhooks.ts";
import { KEY_COMMANDS } from "./commands/keys.ts";
import { createContext, type Io } from "./context.ts";
import { DEFAULT_URL, parseCliEnv } from "./env.ts";
import { describeError, EXIT_OK, EXIT_USAGE, UsageError } from "./errors.ts";

export const COMMANDS: Command[] = [
  submitCommand,
  statusCommand,
  resultsCommand,
  cancelCommand,
  predictCommand,
  modelsPushCommand,
  modelsListCommand,
  modelsBatchingCommand,
  modelsLabelCommand,
  modelsRemoveCommand,
  ...ALIAS_COMMANDS,
  jobsListCommand,
  ...WEBHOOK_COMMANDS,
  ...KEY_COMMANDS,
];
/** Words that only group commands (`coalesce models push`, `coalesce models alias set`): every leading part of a name. */
const GROUPS = new Set(
  COMMANDS.flatMap((command) => {
    const words = command.name.split(" ");
    return words.slice(1).map((_, i) => words.slice(0, i + 1).join(" "));
  }),
);
const NAME_WIDTH = Math.max(...COMMANDS.map((command) => command.name.length)) + 2;

export const HELP = `Usage: coalesce COMMAND [options]

Predictions with ONNX models on a Coalesce server, from the command line: batch jobs of any
size, or a few rows answered at once.

Commands:
${COMMANDS.map((command) => `  ${command.name.padEnd(NAME_WIDTH)}${command.summary}`).join("\n")}

Options for every command:
  --url URL        the API's address (default: $COALESCE_URL, else ${DEFAULT_URL})
  --api-key KEY    your API key (default: $COALESCE_API_KEY); \`npm run keys:create\` makes one
  -h, --help       this help, or a command's: coalesce submit --help

Exit status: 0 done, 1 the server, the job or a file said no, 2 a mistake on the command line.

Example:
  export COALESCE_API_KEY=csk_...
  coalesce models push iris fixtures/iris.onnx
  coalesce submit fixtures/iris.csv --model iris --id-column row_id --ignore target --wait --out results.csv
  coalesce predict iris --row 5.1,3.5,1.4,0.2
  coalesce models alias set iris production 2 --canary 3=10 --guard max_error_rate=0.01
  coalesce models alias history iris production`;

/** Every option that takes a value, as written on the command line (`--model`, `-m`). */
function valueOptionNames(): Set<string> {
  const names = new Set<string>();
  for (const options of [GLOBAL_OPTIONS, ...COMMANDS.map((command) => command.options)]) {
    for (const [name, spec] of Object.entries(options)) {
      if (spec.type !== "string") continue;
      names.add(`--${name}`);
      if (spec.short) names.add(`-${spec.short}`);
    }
  }
  return names;
}

/** Takes the command's words out of argv (`models`, `push`), wherever the options around them are. */
export function splitCommand(argv: string[]): { words: string[]; rest: string[]; help: boolean } {
  const takesValue = valueOptionNames();
  const words: string[] = [];
  const rest: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--") {
      rest.push(...argv.slice(i));
      break;
    }
    const wantsWord = words.length === 0 || GROUPS.has(words.join(" "));
    if (arg === "-h" || arg === "--help") help = true;
    if (takesValue.has(arg)) {
      rest.push(arg, ...(i + 1 < argv.length ? [argv[++i] ?? ""] : []));
    } else if (wantsWord && !arg.startsWith("-")) {
      words.push(arg);
    } else {
      rest.push(arg);
    }
  }
  return { words, rest, help };
}

/** Runs one command line and returns the exit status; errors are printed here, worded for people. */
export async function run(argv: string[], io: Io, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    const { words, rest, help } = splitCommand(argv);
    if (words[0] === "help") {
      return printHelp(io, words.slice(1).join(" ") || rest.filter((arg) => !arg.startsWith("-")).join(" "));
    }
    if (words.length === 0) {
      if (help) return printHelp(io, "");
      if (argv.length === 0) {
        io.stderr.write(`${HELP}\n`);
        return EXIT_USAGE;
      }
      throw new UsageError(`no command in '${argv.join(" ")}'`);
    }
    const name = words.join(" ");
    const command = COMMANDS.find((candidate) => candidate.name === name);
    if (!command) {
      // The longest group the words start with: `models alias frob` is a mistake within `models alias`.
      const depth = [...words.keys()].reverse().find((i) => GROUPS.has(words.slice(0, i + 1).join(" ")));
      if (depth !== undefined) {
        const group = words.slice(0, depth + 1).join(" ");
        if (help && group === name) return printHelp(io, group);
        const sub = groupCommands(group).map((candidate) => candidate.name);
        throw new UsageError(group === name ? `${group} needs a command: ${sub.join(", ")}` : `unknown command '${name}'; try ${sub.join(", ")}`, group);
      }
      throw new UsageError(`unknown command '${name}'`);
    }
    if (help) return printHelp(io, name);
    return await command.run(rest, createContext(io, parseCliEnv(env)));
  } catch (error) {
    const { message, exitCode } = describeError(error);
    io.stderr.write(`${message}\n`);
    if (env.COALESCE_DEBUG && error instanceof Error && error.stack) io.stderr.write(`${error.stack}\n`);
    return exitCode;
  }
}

function printHelp(io: Io, name: string): number {
  if (name === "") {
    io.stdout.write(`${HELP}\n`);
    return EXIT_OK;
  }
  const command = COMMANDS.find((candidate) => candidate.name === name);
  if (!command && GROUPS.has(name)) {
    io.stdout.write(`${groupHelp(name)}\n`);
    return EXIT_OK;
  }
  if (!command) throw new UsageError(`unknown command '${name}'`);
  io.stdout.write(`${command.help}\n\nOptions for every command: --url URL, --api-key KEY (see coalesce --help)\n`);
  return EXIT_OK;
}

/** The commands under a group, one level down or deeper (`models` holds `models alias set` too). */
function groupCommands(group: string): Command[] {
  return COMMANDS.filter((candidate) => candidate.name.startsWith(`${group} `));
}

/** `coalesce models alias --help`: its commands, with each one's first example. */
function groupHelp(group: string): string {
  const commands = groupCommands(group);
  const examples = commands.map((command) => /\n {2}(coalesce .+)/.exec(command.help.slice(command.help.indexOf("Example")))?.[1]).filter((line) => line !== undefined);
  return [
    `Usage: coalesce ${group} COMMAND [options]`,
    "",
    "Commands:",
    ...commands.map((command) => `  ${command.name.padEnd(NAME_WIDTH)}${command.summary}`),
    "",
    "Examples:",
    ...examples.map((line) => `  ${line}`),
    "",
    `Each command's own help: coalesce ${commands[0]?.name ?? group} --help`,
  ].join("\n");
}
