import type { Job } from "@coalesce/contracts";
import { expectPositionals, parseCommandArgs, type OptionSpecs } from "../args.ts";
import type { Command } from "../command.ts";
import { EXIT_OK } from "../errors.ts";
import { formatCount, formatDuration, formatEta, formatJson, formatModel, formatPercent, formatRowRate, formatTable, formatTotal, jobSeconds } from "../format.ts";

const NAME = "status";
const OPTIONS = { json: { type: "boolean" } } as const satisfies OptionSpecs;

export const statusCommand: Command = {
  name: NAME,
  summary: "show a job's status, counts and progress",
  options: OPTIONS,
  help: `Usage: coalesce status JOB [--json]

Shows a job's status, row counts, progress and timings.

Options:
  --json   print the job as the API returns it

Example:
  coalesce status job_01jdq3x8m7k2v9c4n5p6r7s8t9`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(NAME, args, OPTIONS);
    const [id = ""] = expectPositionals(NAME, positionals, ["JOB"]);
    const job = await context.connect(values, NAME).getJob(id);
    context.io.stdout.write(values.json ? formatJson(job) : `${describeJob(job)}\n`);
    return EXIT_OK;
  },
};

/** The job as a few aligned lines for people. */
export function describeJob(job: Job): string {
  const { total, succeeded, failed } = job.counts;
  let status: string = job.status;
  if (job.status === "running") {
    status += `, ${formatPercent(job.progress)}`;
    if (job.eta_seconds !== null) status += `, about ${formatEta(job.eta_seconds)} to go`;
  }
  const seconds = jobSeconds(job);
  const rate = job.completed_at ? formatRowRate(total ?? job.counts.received, seconds) : null;
  const rows: [string, string][] = [
    ["job", job.id],
    ["status", status],
    ["model", formatModel(job.model)],
    ["rows", `${formatTotal(job.counts)}: ${formatCount(succeeded)} scored, ${formatCount(failed)} failed`],
  ];
  if (job.id_column !== null) rows.push(["id column", job.id_column]);
  const runs = job.execution.batch_rows;
  if (job.execution.provider && runs) {
    rows.push(["ran on", `${job.execution.provider}, in onnxruntime runs of ${runs.min}-${runs.max} rows (mean ${runs.mean})`]);
  }
  rows.push(["created", job.created_at]);
  if (job.started_at) rows.push(["started", job.started_at]);
  if (job.completed_at) rows.push(["completed", `${job.completed_at} (${formatDuration(seconds)}${rate ? `, ${rate}` : ""})`]);
  if (job.error) rows.push(["error", `${job.error.code}: ${job.error.message}`]);
  return formatTable(["", ""], rows).split("\n").slice(1).join("\n");
}
