import { expectPositionals, parseCommandArgs, resolveFormat, type OptionSpecs } from "../args.ts";
import type { Command } from "../command.ts";
import { checkWritable, warnIfIncomplete, writeResultsFile, writeResultsStdout } from "../download.ts";
import { EXIT_OK } from "../errors.ts";
import { formatBytes } from "../format.ts";

const NAME = "results";
const OPTIONS = {
  format: { type: "string", short: "f" },
  out: { type: "string", short: "o" },
} as const satisfies OptionSpecs;

export const resultsCommand: Command = {
  name: NAME,
  summary: "download a job's results as CSV or NDJSON",
  options: OPTIONS,
  help: `Usage: coalesce results JOB [--format csv|ndjson] [--out FILE]

Streams a job's results, in input order, to stdout or to FILE (constant memory, any size). CSV has
the id column (when the job has one), one column per output value, then error; NDJSON has one JSON
object per row. While the job runs, only the rows scored so far come back, with a warning.

Options:
  -f, --format csv|ndjson   the format (default: from FILE's extension, else csv)
  -o, --out FILE            write to FILE instead of stdout

Example:
  coalesce results job_01jdq3x8m7k2v9c4n5p6r7s8t9 --format ndjson | head`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(NAME, args, OPTIONS);
    const [id = ""] = expectPositionals(NAME, positionals, ["JOB"]);
    const format = resolveFormat(NAME, values.format, values.out);
    if (values.out !== undefined) await checkWritable(values.out);
    const download = await context.connect(values, NAME).downloadResults(id, format);
    warnIfIncomplete(download, id, context.io.stderr);
    if (values.out === undefined) {
      await writeResultsStdout(download, context.io.stdout);
    } else {
      const bytes = await writeResultsFile(download, values.out);
      context.io.stderr.write(`wrote ${values.out} (${format}, ${formatBytes(bytes)})\n`);
    }
    return EXIT_OK;
  },
};
