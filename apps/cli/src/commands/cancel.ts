import { expectPositionals, parseCommandArgs, type OptionSpecs } from "../args.ts";
import type { Command } from "../command.ts";
import { EXIT_OK } from "../errors.ts";
import { describeJob } from "./status.ts";

const NAME = "cancel";
const OPTIONS = {} as const satisfies OptionSpecs;

export const cancelCommand: Command = {
  name: NAME,
  summary: "cancel an unfinished job (rows already scored keep their results)",
  options: OPTIONS,
  help: `Usage: coalesce cancel JOB

Stops a job that is queued or running. Its waiting rows are not scored; rows already scored keep their
results, which \`coalesce results\` still downloads.

Example:
  coalesce cancel job_01jdq3x8m7k2v9c4n5p6r7s8t9`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(NAME, args, OPTIONS);
    const [id = ""] = expectPositionals(NAME, positionals, ["JOB"]);
    const job = await context.connect(values, NAME).cancelJob(id);
    context.io.stdout.write(`${describeJob(job)}\n`);
    return EXIT_OK;
  },
};
