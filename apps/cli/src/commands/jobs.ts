import { expectPositionals, parseCommandArgs, parseWholeNumber, type OptionSpecs } from "../args.ts";
import type { Command } from "../command.ts";
import { EXIT_OK } from "../errors.ts";
import { formatCount, formatJson, formatModel, formatPercent, formatTable, formatTotal } from "../format.ts";

const LIST = "jobs list";
const OPTIONS = {
  limit: { type: "string", short: "n" },
  cursor: { type: "string" },
  json: { type: "boolean" },
} as const satisfies OptionSpecs;

export const jobsListCommand: Command = {
  name: LIST,
  summary: "list your jobs, newest first",
  options: OPTIONS,
  help: `Usage: coalesce jobs list [--limit N] [--cursor CURSOR] [--json]

Lists your jobs, newest first, one page at a time.

Options:
  -n, --limit N       jobs per page, 1-100 (default 20)
  --cursor CURSOR     the page after the one that printed this cursor
  --json              print the page as the API returns it`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(LIST, args, OPTIONS);
    expectPositionals(LIST, positionals, []);
    const limit = parseWholeNumber(LIST, "--limit", values.limit, 1);
    const page = await context.connect(values, LIST).listJobs({
      ...(limit === undefined ? {} : { limit }),
      ...(values.cursor === undefined ? {} : { cursor: values.cursor }),
    });
    if (values.json) {
      context.io.stdout.write(formatJson(page));
      return EXIT_OK;
    }
    if (page.data.length === 0) {
      context.io.stderr.write(values.cursor ? "no more jobs\n" : "no jobs yet: submit one with `coalesce submit FILE --model NAME`\n");
      return EXIT_OK;
    }
    const rows = page.data.map((job) => [
      job.id,
      job.status,
      formatModel(job.model),
      formatTotal(job.counts),
      formatCount(job.counts.failed),
      formatPercent(job.progress),
      job.created_at,
    ]);
    context.io.stdout.write(`${formatTable(["ID", "STATUS", "MODEL", "ROWS", "FAILED", "DONE", "CREATED"], rows)}\n`);
    if (page.next_cursor) context.io.stderr.write(`more: coalesce jobs list --cursor ${page.next_cursor}\n`);
    return EXIT_OK;
  },
};
