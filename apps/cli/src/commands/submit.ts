import { stat } from "node:fs/promises";
import type { CoalesceClient, CsvUploadOptions } from "@coalesce/client";
import type { Job } from "@coalesce/contracts";
import { expectPositionals, parseColumnList, parseCommandArgs, parseMapOptions, parseWholeNumber, resolveFormat, type OptionSpecs } from "../args.ts";
import type { Command } from "../command.ts";
import type { CommandContext } from "../context.ts";
import { checkWritable, warnIfIncomplete, writeResultsFile } from "../download.ts";
import { CliError, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, fileError, UsageError } from "../errors.ts";
import { formatBytes, formatCount, formatDuration, formatEta, formatModel, formatTotal, summarizeJob } from "../format.ts";
import { createProgressBar } from "../progress.ts";

const NAME = "submit";
/** Frequent enough for a live bar, rare enough to be nothing for the API. */
const POLL_INTERVAL_MS = 500;

const OPTIONS = {
  model: { type: "string", short: "m" },
  "id-column": { type: "string" },
  ignore: { type: "string", multiple: true },
  map: { type: "string", multiple: true },
  "max-errors": { type: "string" },
  gzip: { type: "boolean" },
  wait: { type: "boolean", short: "w" },
  out: { type: "string", short: "o" },
  format: { type: "string", short: "f" },
  "webhook-url": { type: "string" },
  "idempotency-key": { type: "string" },
  "routing-key": { type: "string" },
} as const satisfies OptionSpecs;

export const submitCommand: Command = {
  name: NAME,
  summary: "upload a CSV file as a job (--wait --out FILE to get the results)",
  options: OPTIONS,
  help: `Usage: coalesce submit FILE --model NAME[@VERSION|@ALIAS] [options]

Uploads a CSV file (a header line, then one row per line) as a job and prints the job's id on
stdout. The file is streamed, so its size does not matter here. FILE may be - for standard input.
Progress and summaries go to stderr.

Options:
  -m, --model NAME[@VERSION|@ALIAS]
                               the model to score with (required): a version, or an alias (coalesce
                               models alias), whose split chooses one version for the whole job; NAME
                               alone means its production alias when it has one, else its latest version
  --id-column COLUMN           carry COLUMN into the results, to join them back to your rows
  --ignore COLUMN[,COLUMN...]  columns that are not model inputs, e.g. a label (repeatable)
  --map INPUT=COLUMN[,...]     the columns that make up INPUT, in order (repeatable); by default every
                               other column, in file order, feeds a model with a single input
  --max-errors N               refuse the upload past N rows that cannot be parsed (server default 1000)
  --gzip                       compress the upload on the fly (Content-Encoding: gzip)
  -w, --wait                   wait for the job to finish, showing its progress, then print a summary
  -o, --out FILE               write the results to FILE once the job is finished (implies --wait)
  -f, --format csv|ndjson      the results' format (default: from FILE's extension, else csv)
  --webhook-url URL            POST the job's final event to URL, signed with your default webhook
                               secret (coalesce webhooks secret)
  --idempotency-key KEY        a retry of this upload with the same KEY within 24 h returns the same job
  --routing-key KEY            with an alias that splits traffic, jobs with the same KEY go to the same version

Exit status: 0 once the upload is accepted (with --wait: once the job succeeded), 1 when the
server refuses it or the job failed, 2 for a mistake on the command line, 130 on Ctrl-C (the
job keeps running).

Examples:
  coalesce submit fixtures/iris.csv --model iris --id-column row_id --ignore target --wait --out results.csv
  coalesce submit fixtures/iris.csv --model iris@canary --routing-key team-a --ignore row_id,target --wait`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(NAME, args, OPTIONS);
    const [file = ""] = expectPositionals(NAME, positionals, ["FILE"]);
    if (!values.model) throw new UsageError("--model is required, e.g. --model iris", NAME);
    const ignore = parseColumnList(values.ignore);
    const map = parseMapOptions(NAME, values.map);
    const maxErrors = parseWholeNumber(NAME, "--max-errors", values["max-errors"]);
    const out = values.out;
    if (values.format !== undefined && out === undefined) throw new UsageError("--format applies to the results file: add --out FILE", NAME);
    const format = resolveFormat(NAME, values.format, out);
    const wait = values.wait === true || out !== undefined;

    // Mistakes that cost no request are caught before the upload, and an --out that cannot be
    // written before a long wait.
    if (file !== "-") {
      const stats = await stat(file).catch((error: unknown) => {
        throw fileError(file, error);
      });
      if (stats.isDirectory()) throw new CliError(`cannot read ${file}: it is a directory`);
    }
    if (out !== undefined) await checkWritable(out);

    const client = context.connect(values, NAME);
    const job = await upload(client, context, {
      model: values.model,
      file: file === "-" ? context.io.stdin : file,
      ...(values["id-column"] === undefined ? {} : { idColumn: values["id-column"] }),
      ...(ignore ? { ignore } : {}),
      ...(map ? { map } : {}),
      ...(maxErrors === undefined ? {} : { maxErrors }),
      gzip: values.gzip === true,
      ...(values["webhook-url"] === undefined ? {} : { webhookUrl: values["webhook-url"] }),
      ...(values["idempotency-key"] === undefined ? {} : { idempotencyKey: values["idempotency-key"] }),
      ...(values["routing-key"] === undefined ? {} : { routingKey: values["routing-key"] }),
    });
    context.io.stdout.write(`${job.id}\n`);
    if (!wait) return EXIT_OK;

    const done = await waitWithProgress(client, context, job.id);
    if (out !== undefined) {
      const download = await client.downloadResults(done.id, format);
      warnIfIncomplete(download, done.id, context.io.stderr);
      const bytes = await writeResultsFile(download, out);
      context.io.stderr.write(`${summarizeJob(done)}\nresults: ${out} (${format}, ${formatBytes(bytes)})\n`);
    } else {
      context.io.stderr.write(`${summarizeJob(done)}\n`);
    }
    return done.status === "succeeded" ? EXIT_OK : EXIT_FAILURE;
  },
};

async function upload(client: CoalesceClient, context: CommandContext, options: Omit<CsvUploadOptions, "onUploadProgress">): Promise<Job> {
  const bar = createProgressBar(context.io.stderr, "upload");
  const started = Date.now();
  let sent = 0;
  let job: Job;
  try {
    job = await client.uploadCsv({
      ...options,
      onUploadProgress: (sentBytes, totalBytes) => {
        sent = sentBytes;
        const seconds = (Date.now() - started) / 1000;
        const size = totalBytes === null ? formatBytes(sentBytes) : `${formatBytes(sentBytes)} / ${formatBytes(totalBytes)}`;
        // The server answers once it has stored every row; say so rather than sit silently at 100%.
        const read = totalBytes !== null && totalBytes > 0 && sentBytes === totalBytes;
        const rate = read ? "  waiting for the server" : seconds >= 0.5 ? `  ${formatBytes(sentBytes / seconds)}/s` : "";
        bar.update(totalBytes ? sentBytes / totalBytes : null, `${size}${rate}`);
      },
    });
  } catch (error) {
    bar.finish();
    throw error;
  }
  const seconds = (Date.now() - started) / 1000;
  bar.finish(
    `uploaded ${formatBytes(sent)} in ${formatDuration(seconds)}: job ${job.id} ${job.status}, ` +
      `${formatTotal(job.counts)} rows for ${formatModel(job.model)}` +
      (job.counts.failed > 0 ? ` (${formatCount(job.counts.failed)} could not be parsed)` : ""),
  );
  return job;
}

/** Polls with a progress bar; Ctrl-C stops waiting (the job goes on) and says how to look it up. */
export async function waitWithProgress(client: CoalesceClient, context: CommandContext, jobId: string): Promise<Job> {
  const bar = createProgressBar(context.io.stderr, "scoring");
  const stop = new AbortController();
  const onInterrupt = () => stop.abort();
  process.once("SIGINT", onInterrupt);
  try {
    return await client.waitForJob(jobId, {
      intervalMs: POLL_INTERVAL_MS,
      signal: stop.signal,
      onProgress: (job) => bar.update(job.progress, scoringDetail(job)),
    });
  } catch (error) {
    if (stop.signal.aborted) {
      throw new CliError(`stopped waiting; job ${jobId} keeps running: see \`coalesce status ${jobId}\``, EXIT_INTERRUPTED);
    }
    throw error;
  } finally {
    process.off("SIGINT", onInterrupt);
    bar.finish();
  }
}

/** `1,234 / 3,000 rows  2 failed  ETA 12 s` */
export function scoringDetail(job: Job): string {
  if (job.status === "queued") return `queued, ${formatTotal(job.counts)} rows`;
  const { succeeded, failed } = job.counts;
  const parts = [`${formatCount(succeeded + failed)} / ${formatTotal(job.counts)} rows`];
  if (failed > 0) parts.push(`${formatCount(failed)} failed`);
  if (job.eta_seconds !== null && job.progress < 1) parts.push(`ETA ${formatEta(job.eta_seconds)}`);
  return parts.join("  ");
}
