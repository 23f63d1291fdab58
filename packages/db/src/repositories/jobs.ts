import type { RowError, TensorRow } from "@coalesce/contracts";
import type { DbClient } from "../connection.ts";
import type { JobStatus, PrismaClient } from "../generated/client.ts";
import { newId } from "../ids.ts";

export type JobRecord = {
  id: string;
  tenantId: string;
  status: JobStatus;
  modelVersionId: string;
  model: { name: string; version: number };
  totalRows: number;
  succeededRows: number;
  failedRows: number;
  error: RowError | null;
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

export type RowResult = { index: number; outputs: TensorRow } | { index: number; error: RowError };

/** What the worker stores for one row of a chunk, in row order. */
export type StoredRowResult = { outputs: TensorRow } | { error: RowError };

const CHUNKS_PER_READ = 16;

/**
 * One page of a job's scored rows in row order, from row `cursor` on. Rows of chunks not scored yet
 * are skipped, so while a job runs this is a partial view; `nextCursor` is null when no scored row
 * remains past the page.
 */
export async function readResults(
  db: DbClient,
  jobId: string,
  page: { cursor: number; limit: number },
): Promise<{ rows: RowResult[]; nextCursor: number | null }> {
  const rows: RowResult[] = [];
  let position = page.cursor;
  // One row past the page tells whether there is a next page.
  while (rows.length <= page.limit) {
    const chunks = await db.$queryRaw<{ first_row: number; results: StoredRowResult[] }[]>`
      SELECT first_row, results FROM job_chunks
       WHERE job_id = ${jobId} AND status = 'done' AND first_row + row_count > ${position}
       ORDER BY first_row LIMIT ${CHUNKS_PER_READ}`;
    for (const chunk of chunks) {
      for (let i = Math.max(0, position - chunk.first_row); i < chunk.results.length && rows.length <= page.limit; i++) {
        rows.push({ index: chunk.first_row + i, ...(chunk.results[i] as StoredRowResult) });
      }
      position = chunk.first_row + chunk.results.length;
    }
    if (chunks.length < CHUNKS_PER_READ) break;
  }
  const next = rows.length > page.limit ? rows.pop() : undefined;
  return { rows, nextCursor: next ? next.index : null };
}

export type ChunkWork = {
  id: string;
  jobId: string;
  jobStatus: JobStatus;
  modelVersionId: string;
  firstRow: number;
  done: boolean;
  inputs: TensorRow[];
};

/** A chunk with what the worker needs to score it, or null when it (or its job) is gone. */
export async function loadChunk(db: DbClient, chunkId: string): Promise<ChunkWork | null> {
  const chunk = await db.jobChunk.findUnique({
    where: { id: chunkId },
    include: { job: { select: { status: true, modelVersionId: true } } },
  });
  if (!chunk) return null;
  return {
    id: chunk.id,
    jobId: chunk.jobId,
    jobStatus: chunk.job.status,
    modelVersionId: chunk.job.modelVersionId,
    firstRow: chunk.firstRow,
    done: chunk.status === "done",
    inputs: chunk.inputs as TensorRow[],
  };
}

/** Marks a queued job running when its first chunk starts. */
export async function markJobRunning(db: DbClient, jobId: string): Promise<void> {
  await db.$executeRaw`
    UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, now())
     WHERE id = ${jobId} AND status = 'queued'`;
}

/**
 * Stores a chunk's results and adds them to its job's counts in one transaction. Only the first
 * completion of a chunk counts (a retried BullMQ job finds it done), so counts stay exact. The job
 * becomes `succeeded` when every row is done, or `failed` when every row failed.
 * Returns the job's status after the update, or null when the chunk had been completed already.
 */
export async function completeChunk(
  prisma: PrismaClient,
  input: { chunkId: string; jobId: string; results: StoredRowResult[] },
): Promise<JobStatus | null> {
  const failed = input.results.filter((result) => "error" in result).length;
  const succeeded = input.results.length - failed;
  return prisma.$transaction(async (tx) => {
    const updated = await tx.jobChunk.updateMany({
      where: { id: input.chunkId, status: "queued" },
      data: { status: "done", results: input.results, completedAt: new Date(), attempts: { increment: 1 } },
    });
    if (updated.count === 0) return null;
    const rows = await tx.$queryRaw<{ status: JobStatus }[]>`
      UPDATE jobs SET
        succeeded_rows = succeeded_rows + ${succeeded},
        failed_rows = failed_rows + ${failed},
        started_at = COALESCE(started_at, now()),
        status = (CASE
          WHEN succeeded_rows + failed_rows + ${succeeded + failed} < total_rows THEN 'running'
          WHEN succeeded_rows + ${succeeded} = 0 THEN 'failed'
          ELSE 'succeeded' END)::job_status,
        completed_at = CASE WHEN succeeded_rows + failed_rows + ${succeeded + failed} >= total_rows THEN now() END,
        error = CASE WHEN succeeded_rows + ${succeeded} = 0 AND succeeded_rows + failed_rows + ${succeeded + failed} >= total_rows
          THEN jsonb_build_object('code', 'all_rows_failed', 'message', 'every row of the job failed; see each row''s error in the results')
          ELSE error END
      WHERE id = ${input.jobId} AND status IN ('queued', 'running')
      RETURNING status`;
    return rows[0]?.status ?? null;
  });
}

/**
 * Chunks still waiting to be scored, of unfinished jobs created before `createdBefore`: the
 * candidates to enqueue again if Redis lost them (or never got them: the API answers 202 once the
 * rows are in Postgres, even when Redis was briefly unreachable).
 */
export async function findUnfinishedChunks(
  db: DbClient,
  createdBefore: Date,
  limit: number,
): Promise<{ chunkId: string; jobId: string; modelVersionId: string }[]> {
  return db.$queryRaw`
    SELECT c.id AS "chunkId", c.job_id AS "jobId", j.model_version_id AS "modelVersionId"
      FROM jobs j JOIN job_chunks c ON c.job_id = j.id
     WHERE j.status IN ('queued', 'running') AND j.created_at < ${createdBefore} AND c.status = 'queued'
     ORDER BY j.created_at, c.seq
     LIMIT ${limit}`;
}
