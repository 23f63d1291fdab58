import type { RowError, TensorRow } from "@coalesce/contracts";
import type { DbClient } from "../connection.ts";
import type { JobPriority, JobStatus, PrismaClient } from "../generated/client.ts";
import { newId } from "../ids.ts";

export type JobRecord = {
  id: string;
  tenantId: string;
  status: JobStatus;
  priority: JobPriority;
  modelVersionId: string;
  model: { name: string; version: number };
  totalRows: number;
  succeededRows: number;
  failedRows: number;
  error: RowError | null;
  /** False while a CSV upload is still adding rows. */
  sealed: boolean;
  idColumn: string | null;
  provider: string | null;
  batchRowsMin: number | null;
  batchRowsMax: number | null;
  batchRowsSum: bigint;
  batchedRows: number;
  createdAt: Date;
  startedAt: Date | null;
  completedAt: Date | null;
};

const JOB_INCLUDE = { modelVersion: { select: { version: true, model: { select: { name: true } } } } } as const;

type JobRow = Omit<JobRecord, "model" | "error"> & {
  error: unknown;
  modelVersion: { version: number; model: { name: string } };
};

function toJobRecord(row: JobRow): JobRecord {
  const { modelVersion, error, ...rest } = row;
  return {
    ...rest,
    model: { name: modelVersion.model.name, version: modelVersion.version },
    error: (error as RowError | null) ?? null,
  };
}

export type CreateJobInput = {
  tenantId: string;
  modelVersionId: string;
  rows: TensorRow[];
  /** Rows per chunk: the unit of queueing, retry and progress. */
  chunkRows: number;
  priority: JobPriority;
};

export type CreatedJob = { job: JobRecord; chunkIds: string[] };

/** Writes the job and all its rows (as chunks) in one transaction: nothing is queued before it commits. */
export async function createJob(prisma: PrismaClient, input: CreateJobInput): Promise<CreatedJob> {
  const jobId = newId("job");
  const chunks: { id: string; jobId: string; seq: number; firstRow: number; rowCount: number; inputs: TensorRow[] }[] = [];
  for (let first = 0, seq = 0; first < input.rows.length; first += input.chunkRows, seq++) {
    const inputs = input.rows.slice(first, first + input.chunkRows);
    chunks.push({ id: newId("chunk"), jobId, seq, firstRow: first, rowCount: inputs.length, inputs });
  }
  const row = await prisma.$transaction(async (tx) => {
    const job = await tx.job.create({
      data: {
        id: jobId,
        tenantId: input.tenantId,
        modelVersionId: input.modelVersionId,
        totalRows: input.rows.length,
        priority: input.priority,
      },
      include: JOB_INCLUDE,
    });
    await tx.jobChunk.createMany({ data: chunks });
    return job;
  });
  return { job: toJobRecord(row), chunkIds: chunks.map((chunk) => chunk.id) };
}

/** A tenant's job; another tenant's job id reads as absent. */
export async function findJob(db: DbClient, tenantId: string, id: string): Promise<JobRecord | null> {
  const row = await db.job.findFirst({ where: { id, tenantId }, include: JOB_INCLUDE });
  return row ? toJobRecord(row) : null;
}

/** Newest first; `cursor` is the last id of the previous page (ids sort by creation time). */
export async function listJobs(
  db: DbClient,
  tenantId: string,
  page: { cursor?: string; limit: number },
): Promise<{ jobs: JobRecord[]; nextCursor: string | null }> {
  const rows = await db.job.findMany({
    where: { tenantId, ...(page.cursor ? { id: { lt: page.cursor } } : {}) },
    orderBy: { id: "desc" },
    take: page.limit + 1,
    include: JOB_INCLUDE,
  });
  const jobs = rows.slice(0, page.limit).map(toJobRecord);
  return { jobs, nextCursor: rows.length > page.limit ? (jobs.at(-1)?.id ?? null) : null };
}

/**
 * Opens a job for a streaming upload: rows arrive in chunks (insertChunk) and the job cannot finish
 * until sealJob says how many rows there are.
 */
export async function openUploadJob(
  db: DbClient,
  input: { tenantId: string; modelVersionId: string; idColumn: string | null; priority: JobPriority },
): Promise<JobRecord> {
  const row = await db.job.create({
    data: {
      id: newId("job"),
      tenantId: input.tenantId,
      modelVersionId: input.modelVersionId,
      totalRows: 0,
      sealed: false,
      idColumn: input.idColumn,
      priority: input.priority,
    },
    include: JOB_INCLUDE,
  });
  return toJobRecord(row);
}

/**
 * Ends an upload: sets the row count and lets the job finish, finishing it now if the workers
 * already scored every row while the upload was still running.
 */
export async function sealJob(db: DbClient, jobId: string, totalRows: number): Promise<void> {
  await db.$executeRaw`
    UPDATE jobs SET total_rows = ${totalRows}, sealed = true,
      status = (CASE
        WHEN succeeded_rows + failed_rows < ${totalRows} THEN status::text
        WHEN succeeded_rows = 0 THEN 'failed'
        ELSE 'succeeded' END)::job_status,
      completed_at = CASE WHEN succeeded_rows + failed_rows >= ${totalRows} THEN now() ELSE completed_at END,
      error = CASE WHEN succeeded_rows = 0 AND failed_rows >= ${totalRows} THEN ${ALL_ROWS_FAILED}::jsonb ELSE error END
    WHERE id = ${jobId}`;
}

/** Deletes a job with its rows and results (the chunks cascade). */
export async function deleteJob(db: DbClient, jobId: string): Promise<void> {
  await db.job.deleteMany({ where: { id: jobId } });
}

export const ALL_ROWS_FAILED = JSON.stringify({
  code: "all_rows_failed",
  message: "every row of the job failed; see each row's error in the results",
});
