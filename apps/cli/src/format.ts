import type { Job, TensorSpec } from "@coalesce/contracts";

/** SI units, to match MB/s: `512 B`, `4.4 kB`, `12.3 MB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

/** `0.42 s`, `12 s`, `2 min 05 s`, `1 h 02 min`. */
export function formatDuration(seconds: number): string {
  if (Number.isInteger(seconds) && seconds < 60) return `${seconds} s`;
  if (seconds < 10) return `${seconds.toFixed(seconds < 1 ? 2 : 1)} s`;
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole} s`;
  const pad = (n: number) => String(n).padStart(2, "0");
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${pad(whole % 60)} s`;
  return `${Math.floor(whole / 3600)} h ${pad(Math.floor((whole % 3600) / 60))} min`;
}

/** An estimate: whole seconds, rounded up (`<1 s`, `4 s`, `2 min 05 s`). */
export function formatEta(seconds: number): string {
  if (seconds < 1) return "<1 s";
  return formatDuration(Math.ceil(seconds));
}

export function formatCount(n: number): string {
  return n.toLocaleString("en-US");
}

/** A job's row total, or while its CSV upload still streams (total unknown), the rows received so far. */
export function formatTotal(counts: Job["counts"]): string {
  return counts.total === null ? `${formatCount(counts.received)} so far` : formatCount(counts.total);
}

export function formatPercent(fraction: number): string {
  return `${Math.floor(fraction * 100)}%`;
}

/** `12,345 rows/s`, `3.4 rows/s`. */
export function formatRowRate(rows: number, seconds: number): string | null {
  if (seconds <= 0 || rows <= 0) return null;
  const rate = rows / seconds;
  return `${rate >= 100 ? formatCount(Math.round(rate)) : rate.toFixed(1)} rows/s`;
}

/** `iris@3`, or `iris@3 (via canary)` when an alias chose the version. */
export function formatModel(model: { name: string; version: number; alias?: string | null }): string {
  return `${model.name}@${model.version}${model.alias ? ` (via ${model.alias})` : ""}`;
}

/** `features float32[batch,4]` */
export function formatTensor(spec: TensorSpec): string {
  return `${spec.name} ${spec.type}[${spec.shape.join(",")}]`;
}

/** Seconds from a job's creation to its completion (or to now while it runs). */
export function jobSeconds(job: Job, now = Date.now()): number {
  const end = job.completed_at ? Date.parse(job.completed_at) : now;
  return Math.max(0, (end - Date.parse(job.created_at)) / 1000);
}

/** `job job_01... succeeded: 150 rows (150 scored, 0 failed) in 1.2 s, 125 rows/s` */
export function summarizeJob(job: Job): string {
  const seconds = jobSeconds(job);
  const { total, succeeded, failed } = job.counts;
  const rate = job.completed_at ? formatRowRate(total ?? job.counts.received, seconds) : null;
  const timing = job.completed_at ? ` in ${formatDuration(seconds)}${rate ? `, ${rate}` : ""}` : "";
  const lines = [
    `job ${job.id} ${job.status}: ${formatTotal(job.counts)} rows (${formatCount(succeeded)} scored, ${formatCount(failed)} failed)${timing}`,
  ];
  if (job.error) lines.push(`  ${job.error.code}: ${job.error.message}`);
  return lines.join("\n");
}

/** Columns padded to their widest cell; no line ends in spaces (a last column, or empty cells at the end). */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map((row) => (row[i] ?? "").length)));
  return [header, ...rows]
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  ").trimEnd())
    .join("\n");
}

/** Vectors up to this long are shown whole in a table cell; longer ones by their ends. */
const VECTOR_SHOWN = 6;
const VECTOR_HEAD = 3;
const VECTOR_TAIL = 2;
/** Values shown of a matrix or deeper tensor, after its shape. */
const TENSOR_SHOWN = 4;
/** A cell wider than this (a long string output, say) is cut. */
const CELL_MAX = 60;

/**
 * One model output in a table cell, readable at a glance rather than exact (`--json` has every
 * digit): numbers to 4 significant digits, a long vector by its ends and length
 * (`[0.1, 0.2, 0.3, …, 0.9, 1] (10 values)`), a matrix or deeper by its shape and first values
 * (`3x2 [1, 2, 3, 4, …]`). null is a NaN, as the API writes it.
 */
export function formatOutputValue(value: unknown): string {
  const text = Array.isArray(value) ? formatArray(value) : formatScalar(value);
  return text.length > CELL_MAX ? `${text.slice(0, CELL_MAX - 1)}…` : text;
}

function formatScalar(value: unknown): string {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
  if (value === null) return "null";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function formatArray(values: unknown[]): string {
  const shape: number[] = [];
  for (let level: unknown = values; Array.isArray(level); level = level[0]) shape.push(level.length);
  if (shape.length > 1) {
    const flat = (values as unknown[]).flat(shape.length);
    const more = flat.length > TENSOR_SHOWN ? ", …" : "";
    return `${shape.join("x")} [${flat.slice(0, TENSOR_SHOWN).map(formatScalar).join(", ")}${more}]`;
  }
  if (values.length <= VECTOR_SHOWN) return `[${values.map(formatScalar).join(", ")}]`;
  const ends = [...values.slice(0, VECTOR_HEAD).map(formatScalar), "…", ...values.slice(-VECTOR_TAIL).map(formatScalar)];
  return `[${ends.join(", ")}] (${formatCount(values.length)} values)`;
}

/** What `--json` prints: the API's answer, indented, one trailing newline. */
export function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
