// The fault suite's workload and its invariant. The job is a CSV of `rows` iris rows (fixtures/iris.csv
// repeated, each with a unique row_id); the check reads every result back and holds it against the
// promise: every row exactly once, each prediction equal to the model's reference output.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { TERMINAL_JOB_STATUSES, type Job, type ResultRow } from "@coalesce/contracts";
import { ROOT } from "../../scripts/processes.ts";
import type { ApiClient } from "./client.ts";

const FIXTURES = path.join(ROOT, "fixtures");

/** The fixture's outputs (PyTorch; test/e2e/reference.test.ts holds onnxruntime to them within 1e-5). */
const TOLERANCE = 1e-5;

/** The query of every upload: results carry each row's row_id; target is the label, not an input. */
export const CSV_QUERY = "model=iris&id_column=row_id&ignore=target";

type Reference = { probabilities: number[]; label: number };

export type IrisWorkload = {
  rows: number;
  csv: string;
  /** The expected outputs of the row with this row_id. */
  expected(rowId: number): Reference;
};

export async function buildWorkload(rows: number): Promise<IrisWorkload> {
  const [header = "", ...lines] = (await readFile(path.join(FIXTURES, "iris.csv"), "utf8")).trim().split(/\r?\n/);
  const references = (await readFile(path.join(FIXTURES, "iris.reference.jsonl"), "utf8"))
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Reference & { row_id: number });
  // Each fixture line without its own row_id: the suite numbers rows itself.
  const bodies = lines.map((line) => line.slice(line.indexOf(",") + 1));
  const parts = [header];
  for (let i = 0; i < rows; i++) parts.push(`${i},${bodies[i % bodies.length]}`);
  return {
    rows,
    csv: `${parts.join("\n")}\n`,
    expected: (rowId) => references[rowId % references.length] as Reference,
  };
}

export type RowCheck = {
  lost: number;
  duplicated: number;
  wrong: number;
  /** Rows that came back with an error, by error code (none is the row's own fault: every input is valid). */
  failedByCode: Map<string, number>;
  /** What broke the promise, in words; empty when the job kept it. */
  problems: string[];
};

/**
 * Jepsen's check, after the fact: the job ended `succeeded` with counts.total == rows == succeeded,
 * and its results hold each row_id once with the reference prediction. A row that failed counts as
 * lost (its input was valid: only infrastructure could fail it) and is listed by error code.
 */
export async function checkJob(client: ApiClient, job: Job, workload: IrisWorkload): Promise<RowCheck> {
  const problems: string[] = [];
  const { rows } = workload;
  const done = `${job.counts.succeeded + job.counts.failed}/${job.counts.total ?? "?"} rows done`;
  if (!TERMINAL_JOB_STATUSES.includes(job.status)) problems.push(`job never ended: still ${job.status} (${done})`);
  else if (job.status !== "succeeded") problems.push(`job ended ${job.status} (${done})`);
  if (job.counts.total !== rows) problems.push(`counts.total ${job.counts.total}, sent ${rows}`);
  if (job.counts.succeeded !== rows) problems.push(`counts.succeeded ${job.counts.succeeded} of ${rows}`);

  const answer = await client.request("GET", `/v1/jobs/${job.id}/results?format=ndjson`, { timeoutMs: 120_000 });
  if (answer.status !== 200) {
    problems.push(`GET results answered ${answer.status}: ${answer.text.slice(0, 200)}`);
    return { lost: rows, duplicated: 0, wrong: 0, failedByCode: new Map(), problems };
  }
  const seen = new Uint32Array(rows);
  const failedByCode = new Map<string, number>();
  let wrong = 0;
  let unknown = 0;
  for (const line of answer.text.split("\n")) {
    if (line === "") continue;
    const row = JSON.parse(line) as ResultRow;
    const rowId = Number(row.id);
    if (!Number.isInteger(rowId) || rowId < 0 || rowId >= rows) {
      unknown++;
      continue;
    }
    seen[rowId] = (seen[rowId] ?? 0) + 1;
    if (row.error || !row.outputs) {
      const code = row.error?.code ?? "no outputs";
      failedByCode.set(code, (failedByCode.get(code) ?? 0) + 1);
      continue;
    }
    if (!matches(row.outputs, workload.expected(rowId))) wrong++;
  }
  let missing = 0;
  let duplicated = 0;
  for (const count of seen) {
    if (count === 0) missing++;
    else duplicated += count - 1;
  }
  const failed = [...failedByCode.values()].reduce((sum, n) => sum + n, 0);
  if (missing > 0) problems.push(`${missing} rows missing from the results`);
  if (duplicated > 0) problems.push(`${duplicated} rows listed twice`);
  if (failed > 0) problems.push(`${failed} valid rows failed (${[...failedByCode].map(([code, n]) => `${code} x${n}`).join(", ")})`);
  if (wrong > 0) problems.push(`${wrong} predictions differ from the reference`);
  if (unknown > 0) problems.push(`${unknown} result rows with an id that was never sent`);
  return { lost: missing + failed, duplicated, wrong: wrong + unknown, failedByCode, problems };
}

function matches(outputs: Record<string, unknown>, expected: Reference): boolean {
  const probabilities = outputs.probabilities as number[] | undefined;
  if (outputs.label !== expected.label || !Array.isArray(probabilities) || probabilities.length !== expected.probabilities.length) return false;
  return probabilities.every((p, k) => Math.abs(p - (expected.probabilities[k] as number)) <= TOLERANCE);
}
