import { JobSchema, type Job } from "@coalesce/contracts";
import type { JobRecord } from "@coalesce/db";

export function presentJob(record: JobRecord): Job {
  return JobSchema.parse({
    id: record.id,
    status: record.status,
    model: record.model,
    counts: { total: record.totalRows, succeeded: record.succeededRows, failed: record.failedRows },
    created_at: record.createdAt.toISOString(),
    started_at: record.startedAt?.toISOString() ?? null,
    completed_at: record.completedAt?.toISOString() ?? null,
    ...(record.error ? { error: record.error } : {}),
  });
}
