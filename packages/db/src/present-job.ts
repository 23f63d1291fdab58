import { JobSchema, TERMINAL_JOB_STATUSES, type Job } from "@coalesce/contracts";
import type { JobRecord } from "./repositories/jobs.ts";

/** A streaming upload's progress stays below 1: more rows may come. */
const STREAMING_MAX_PROGRESS = 0.99;

/** Seconds left at the rate seen since the job started, or null before there is a rate. */
function estimateSecondsLeft(record: JobRecord, done: number, now: number): number | null {
  if (TERMINAL_JOB_STATUSES.includes(record.status)) return 0;
  if (!record.startedAt || done === 0 || !record.sealed) return null;
  const elapsed = (now - record.startedAt.getTime()) / 1000;
  const rate = done / Math.max(elapsed, 0.001);
  return Math.round(((record.totalRows - done) / rate) * 10) / 10;
}

/**
 * A job as the API shows it (GET /v1/jobs/{id}) and as webhook events carry it. While a CSV upload
 * streams (not sealed), its stored row count is the rows received so far: the total is shown as
 * unknown (null), and progress is of the rows received.
 */
export function presentJob(record: JobRecord, now = Date.now()): Job {
  const done = record.succeededRows + record.failedRows;
  const streaming = !record.sealed && !TERMINAL_JOB_STATUSES.includes(record.status);
  return JobSchema.parse({
    id: record.id,
    status: record.status,
    priority: record.priority,
    model: record.model,
    counts: {
      total: streaming ? null : record.totalRows,
      received: record.totalRows,
      succeeded: record.succeededRows,
      failed: record.failedRows,
    },
    progress: streaming
      ? // Of the rows received; never 1 before the file has ended, though all received may be done.
        record.totalRows > 0 ? Math.min(STREAMING_MAX_PROGRESS, done / record.totalRows) : 0
      : record.totalRows > 0 ? Math.min(1, done / record.totalRows) : TERMINAL_JOB_STATUSES.includes(record.status) ? 1 : 0,
    eta_seconds: estimateSecondsLeft(record, done, now),
    id_column: record.idColumn,
    execution: {
      provider: record.provider,
      batch_rows:
        record.batchedRows > 0 && record.batchRowsMin !== null && record.batchRowsMax !== null
          ? {
              min: record.batchRowsMin,
              mean: Math.round((Number(record.batchRowsSum) / record.batchedRows) * 10) / 10,
              max: record.batchRowsMax,
            }
          : null,
    },
    created_at: record.createdAt.toISOString(),
    started_at: record.startedAt?.toISOString() ?? null,
    completed_at: record.completedAt?.toISOString() ?? null,
    expires_at: record.expiresAt?.toISOString() ?? null,
    webhook_url: record.webhookUrl,
    ...(record.error ? { error: record.error } : {}),
  });
}
