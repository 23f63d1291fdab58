import type { RowError, TensorRow } from "@coalesce/contracts";
import type { Database, DbClient } from "../connection.ts";
import type { JobPriority, JobStatus } from "../generated/client.ts";
import { toBuffer } from "../bytes.ts";
import { newId } from "../ids.ts";
import { ALL_ROWS_FAILED } from "./jobs.ts";

/** What the worker stores for one row of a chunk, in row order. */
export type StoredRowResult = { outputs: TensorRow } | { error: RowError };

/** One row of a job's results as the API shows it. */
export type RowResult = { index: number; id?: string } & StoredRowResult;

export type NewChunk = {
  jobId: string;
  seq: number;
  firstRow: number;
  rowCount: number;
  /** The rows packed (packRows of @coalesce/models); a row that could not be parsed is absent, its error in inputErrors. */
  packedInputs: Uint8Array;
  rowIds?: string[] | null;
  inputErrors?: (RowError | null)[] | null;
};

/** Inserts one chunk of an upload through pg directly (Prisma would copy the bytes for nothing on the bulk path). */
export async function insertChunk(db: Database, chunk: NewChunk): Promise<string> {
  const id = newId("chunk");
  await db.pool.query(
    `INSERT INTO job_chunks (id, job_id, seq, first_row, row_count, inputs_packed, row_ids, input_errors)
     VALUES ($1, $2, $3, $4, $5, $6, $7::json, $8::json)`,
    [
      id,
      chunk.jobId,
      chunk.seq,
      chunk.firstRow,
      chunk.rowCount,
      toBuffer(chunk.packedInputs),
      chunk.rowIds ? JSON.stringify(chunk.rowIds) : null,
      chunk.inputErrors ? JSON.stringify(chunk.inputErrors) : null,
    ],
  );
  return id;
}

type ResultChunkRow = { first_row: number; results: StoredRowResult[]; row_ids: string[] | null };

const CHUNKS_PER_READ = 16;

/**
 * A job's scored chunks in row order from row `fromRow`, a few at a time (constant memory however
 * big the job). Chunks not scored yet are skipped, so while a job runs this is a partial view.
 */
export async function* scanResultChunks(db: Database, jobId: string, fromRow = 0): AsyncGenerator<ResultChunkRow> {
  let position = fromRow;
  for (;;) {
    const { rows } = await db.pool.query<ResultChunkRow>(
      `SELECT first_row, results, row_ids FROM job_chunks
        WHERE job_id = $1 AND status = 'done' AND first_row + row_count > $2
        ORDER BY first_row LIMIT ${CHUNKS_PER_READ}`,
      [jobId, position],
    );
    for (const row of rows) {
      yield row;
      position = row.first_row + row.results.length;
    }
    if (rows.length < CHUNKS_PER_READ) return;
  }
}

/** The rows of one scanned chunk from `fromRow` on, as the API shows them. */
export function* chunkRows(chunk: ResultChunkRow, fromRow = 0): Generator<RowResult> {
  for (let i = Math.max(0, fromRow - chunk.first_row); i < chunk.results.length; i++) {
    const id = chunk.row_ids?.[i];
    yield { index: chunk.first_row + i, ...(id === undefined ? {} : { id }), ...(chunk.results[i] as StoredRowResult) };
  }
}

/**
 * One page of a job's scored rows in row order, from row `cursor` on; `nextCursor` is null when no
 * scored row remains past the page.
 */
export async function readResults(
  db: Database,
  jobId: string,
  page: { cursor: number; limit: number },
): Promise<{ rows: RowResult[]; nextCursor: number | null }> {
  const rows: RowResult[] = [];
  // One row past the page tells whether there is a next page.
  scan: for await (const chunk of scanResultChunks(db, jobId, page.cursor)) {
    for (const row of chunkRows(chunk, page.cursor)) {
      rows.push(row);
      if (rows.length > page.limit) break scan;
    }
  }
  const next = rows.length > page.limit ? rows.pop() : undefined;
  return { rows, nextCursor: next ? next.index : null };
}

export type ChunkWork = {
  id: string;
  jobId: string;
  /** The job's tenant: the worker's batches take turns between tenants (fair share). */
  tenantId: string;
  jobStatus: JobStatus;
  /** The job's lane: interactive rows are batched ahead of batch-lane rows. */
  jobPriority: JobPriority;
  modelVersionId: string;
  /** The alias the job came through and the revision that routed it (shadow scoring, the guard's figures), or null. */
  alias: { id: string; revision: number } | null;
  firstRow: number;
  rowCount: number;
  done: boolean;
  /**
   * Starts of the chunk after BullMQ's stalled check had handed its queue job back (see startChunks),
   * this one included: how many workers died holding it (or lost Redis for longer than the lock).
   */
  restarts: number;
  /** The rows packed (packRows of @coalesce/models), or null for a chunk stored as JSON rows. */
  packedInputs: Buffer | null;
  /** A chunk written before rows were packed: one JSON row each (null for a row that could not be parsed). */
  inputs: (TensorRow | null)[] | null;
  inputErrors: (RowError | null)[] | null;
};

/** A chunk with what the worker needs to score it, or null when it (or its job) is gone. */
type ChunkSqlRow = {
  id: string;
  job_id: string;
  tenant_id: string;
  job_status: JobStatus;
  job_priority: JobPriority;
  model_version_id: string;
  alias_id: string | null;
  alias_revision: number | null;
  first_row: number;
  row_count: number;
  status: string;
  restarts: number;
  inputs_packed: Buffer | null;
  inputs: (TensorRow | null)[] | null;
  input_errors: (RowError | null)[] | null;
};

const CHUNK_SELECT = `SELECT c.id, c.job_id, j.tenant_id, j.status AS job_status, j.priority AS job_priority, j.model_version_id, j.alias_id, j.alias_revision,
       c.first_row, c.row_count, c.status,
       c.restarts, c.inputs_packed, c.inputs, c.input_errors
  FROM job_chunks c JOIN jobs j ON j.id = c.job_id`;

function fromChunkRow(chunk: ChunkSqlRow): ChunkWork {
  return {
    id: chunk.id,
    jobId: chunk.job_id,
    tenantId: chunk.tenant_id,
    jobStatus: chunk.job_status,
    jobPriority: chunk.job_priority,
    modelVersionId: chunk.model_version_id,
    alias: chunk.alias_id !== null && chunk.alias_revision !== null ? { id: chunk.alias_id, revision: chunk.alias_revision } : null,
    firstRow: chunk.first_row,
    rowCount: chunk.row_count,
    done: chunk.status === "done",
    restarts: chunk.restarts,
    packedInputs: chunk.inputs_packed,
    inputs: chunk.inputs,
    inputErrors: chunk.input_errors,
  };
}

export async function loadChunk(db: Database, chunkId: string): Promise<ChunkWork | null> {
  const { rows } = await db.pool.query<ChunkSqlRow>(`${CHUNK_SELECT} WHERE c.id = $1`, [chunkId]);
  return rows[0] ? fromChunkRow(rows[0]) : null;
}

/**
 * loadChunk for a worker about to score chunks, many in one round trip (the worker groups the
 * chunks it takes at the same time): in the same statement, marks their jobs running where they
 * were still queued, and counts a restart of each unfinished chunk in `restarted` (the chunks whose
 * queue job BullMQ's stalled check has handed back: their worker died holding them, or lost Redis
 * for longer than the lock). A chunk whose queue job never stalled, nearly all of them, is only
 * read: counting every start would write a new version of every chunk row once more per job. Returns
 * one entry per id, in order; null for a chunk (or job) that is gone.
 */
export async function startChunks(
  db: Database,
  chunkIds: readonly string[],
  options: { restarted?: readonly string[] } = {},
): Promise<(ChunkWork | null)[]> {
  const { rows } = await db.pool.query<ChunkSqlRow>({
    name: "start-chunks",
    // By primary key with the array (not joined to c, whose row count the planner cannot see), and
    // no index covers restarts, so the count is an in-place (HOT) update.
    text: `WITH c AS (${CHUNK_SELECT} WHERE c.id = ANY($1::text[])),
     counted AS (
       UPDATE job_chunks SET restarts = restarts + 1 WHERE id = ANY($2::text[]) AND status = 'queued'
       RETURNING id, restarts
     ),
     started AS (
       UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, now())
        WHERE id IN (SELECT job_id FROM c WHERE status = 'queued') AND status = 'queued'
     )
     SELECT c.id, c.job_id, c.tenant_id, c.job_status, c.job_priority, c.model_version_id, c.alias_id, c.alias_revision, c.first_row, c.row_count, c.status,
            COALESCE(counted.restarts, c.restarts) AS restarts, c.inputs_packed, c.inputs, c.input_errors
       FROM c LEFT JOIN counted ON counted.id = c.id`,
    values: [chunkIds, options.restarted ?? []],
  });
  const byId = new Map(rows.map((row) => [row.id, fromChunkRow(row)]));
  return chunkIds.map((id) => byId.get(id) ?? null);
}

/** How a chunk's rows ran: the provider, and the sizes of the onnxruntime runs they were part of. */
export type ChunkExecution = {
  provider: string;
  /** Rows that reached onnxruntime (rows refused before running are not counted). */
  ranRows: number;
  runRowsMin: number | null;
  runRowsMax: number | null;
  /** Sum over the rows that ran of the size of their run. */
  runRowsSum: number;
};

export type ChunkCompletion = { chunkId: string; jobId: string; results: StoredRowResult[]; execution?: ChunkExecution };

/**
 * Stores chunks' results and adds them to their jobs' counts, all in one statement (so atomically,
 * and for many chunks in one round trip: the worker writes concurrent completions together). Only
 * the first completion of a chunk counts (a retried BullMQ job finds it done), so counts stay
 * exact. A sealed job becomes `succeeded` when every row is done, or `failed` when every row failed.
 * Returns, per chunk, its job's status after the update (with the job's latency once it finished),
 * or null when the chunk had been completed already.
 */
export async function completeChunks(
  db: Database,
  completions: ChunkCompletion[],
): Promise<({ status: JobStatus; latencySeconds: number | null } | null)[]> {
  const input = completions.map((c) => {
    const failed = c.results.filter((result) => "error" in result).length;
    return {
      chunk_id: c.chunkId,
      job_id: c.jobId,
      results: c.results,
      succeeded: c.results.length - failed,
      failed,
      provider: c.execution?.provider ?? null,
      run_min: c.execution?.runRowsMin ?? null,
      run_max: c.execution?.runRowsMax ?? null,
      run_sum: c.execution?.runRowsSum ?? 0,
      ran: c.execution?.ranRows ?? 0,
    };
  });
  const { rows } = await db.pool.query<{ chunk_id: string; status: JobStatus | null; latency_seconds: number | null }>({
    name: "complete-chunks",
    text: `WITH input AS (
       SELECT DISTINCT ON (x.chunk_id) x.* FROM json_to_recordset($1::json) AS x(
         chunk_id text, job_id text, results json, succeeded int, failed int, provider text,
         run_min int, run_max int, run_sum bigint, ran int)
     ), active AS (
       -- The jobs still running, locked first: a chunk of a job cancelled or expired meanwhile is
       -- not stored (nor counted), and a cancel waits for a completion that got here before it.
       -- By primary key (an array, not the JSON: the planner cannot see how few rows that holds and
       -- would scan every unfinished job instead).
       SELECT j.id FROM jobs j WHERE j.id = ANY($3::text[]) AND j.status IN ('queued', 'running')
       ORDER BY j.id FOR UPDATE
     ), chunk AS (
       UPDATE job_chunks c SET status = 'done', results = i.results, completed_at = now(), attempts = c.attempts + 1
         FROM input i JOIN active a ON a.id = i.job_id
        WHERE c.id = i.chunk_id AND c.job_id = i.job_id AND c.status = 'queued'
       RETURNING c.id, c.job_id
     ), delta AS (
       SELECT i.job_id, sum(i.succeeded)::int AS s, sum(i.failed)::int AS f, max(i.provider) AS provider,
              min(i.run_min) AS run_min, max(i.run_max) AS run_max, sum(i.run_sum)::bigint AS run_sum, sum(i.ran)::int AS ran,
              array_agg(chunk.id) AS chunk_ids
         FROM input i JOIN chunk ON chunk.id = i.chunk_id GROUP BY i.job_id
     ), job AS (
       UPDATE jobs j SET
         succeeded_rows = j.succeeded_rows + d.s,
         failed_rows = j.failed_rows + d.f,
         started_at = COALESCE(j.started_at, now()),
         status = (CASE
           WHEN NOT j.sealed OR j.succeeded_rows + j.failed_rows + d.s + d.f < j.total_rows THEN 'running'
           WHEN j.succeeded_rows + d.s = 0 THEN 'failed'
           ELSE 'succeeded' END)::job_status,
         completed_at = CASE WHEN j.sealed AND j.succeeded_rows + j.failed_rows + d.s + d.f >= j.total_rows THEN now() END,
         error = CASE WHEN j.sealed AND j.succeeded_rows + d.s = 0 AND j.failed_rows + d.f >= j.total_rows THEN $2::jsonb ELSE j.error END,
         provider = COALESCE(d.provider, j.provider),
         batch_rows_min = LEAST(j.batch_rows_min, d.run_min),
         batch_rows_max = GREATEST(j.batch_rows_max, d.run_max),
         batch_rows_sum = j.batch_rows_sum + d.run_sum,
         batched_rows = j.batched_rows + d.ran
         FROM delta d WHERE j.id = d.job_id AND j.status IN ('queued', 'running')
       RETURNING d.chunk_ids, j.status, EXTRACT(EPOCH FROM (j.completed_at - j.created_at))::float8 AS latency_seconds
     )
     -- Each stored chunk with its job's new status, carried through delta: joining the chunk and
     -- job CTEs instead was planned as a nested loop (a CTE's row count is unknown to the planner),
     -- chunks x jobs comparisons, a few ms for a group of 256.
     SELECT unnest(job.chunk_ids) AS chunk_id, job.status, job.latency_seconds FROM job`,
    values: [JSON.stringify(input), ALL_ROWS_FAILED, [...new Set(completions.map((c) => c.jobId))]],
  });
  const byChunk = new Map(rows.map((row) => [row.chunk_id, row]));
  return completions.map((c) => {
    const row = byChunk.get(c.chunkId);
    return row?.status ? { status: row.status, latencySeconds: row.latency_seconds } : null;
  });
}

/** One chunk: see completeChunks. */
export async function completeChunk(
  db: Database,
  completion: ChunkCompletion,
): Promise<{ status: JobStatus; latencySeconds: number | null } | null> {
  const [result] = await completeChunks(db, [completion]);
  return result ?? null;
}

/** Where a scan of unfinished chunks goes on from: the last chunk of the previous page. */
export type UnfinishedChunkCursor = { jobCreatedAt: Date; jobId: string; seq: number };

export type UnfinishedChunk = {
  chunkId: string;
  jobId: string;
  jobCreatedAt: Date;
  modelVersionId: string;
  seq: number;
  priority: JobPriority;
  queueJobId: string | null;
};

/**
 * Chunks still waiting to be scored, of unfinished jobs created before `createdBefore`, with the
 * queue job that should carry them: the candidates to enqueue again if Redis lost them (or never got them: the API answers 202 once the
 * rows are in Postgres, even when Redis was briefly unreachable). A page at a time, in job and
 * chunk order: pass the last chunk of a page as `after` for the next, so a scan sees every
 * unfinished chunk however many there are.
 */
export async function findUnfinishedChunks(
  db: DbClient,
  createdBefore: Date,
  limit: number,
  after: UnfinishedChunkCursor | null = null,
): Promise<UnfinishedChunk[]> {
  // The start of the scan is a cursor before every chunk, so there is one statement either way.
  const from = after ?? { jobCreatedAt: new Date(0), jobId: "", seq: -1 };
  return db.$queryRaw`
    SELECT c.id AS "chunkId", c.job_id AS "jobId", j.created_at AS "jobCreatedAt", j.model_version_id AS "modelVersionId", c.seq,
           j.priority::text AS priority, c.queue_job_id AS "queueJobId"
      FROM jobs j JOIN job_chunks c ON c.job_id = j.id
     WHERE j.completed_at IS NULL AND j.created_at < ${createdBefore} AND j.status IN ('queued', 'running') AND c.status = 'queued'
       AND (j.created_at, j.id, c.seq) > (${from.jobCreatedAt}, ${from.jobId}, ${from.seq})
     ORDER BY j.created_at, j.id, c.seq
     LIMIT ${limit}`;
}

/** Which of these chunks are still waiting to be scored (a reconciler's second look before it re-enqueues). */
export async function stillUnfinishedChunks(db: Database, chunkIds: readonly string[]): Promise<Set<string>> {
  const { rows } = await db.pool.query<{ id: string }>(`SELECT id FROM job_chunks WHERE id = ANY($1::text[]) AND status = 'queued'`, [chunkIds]);
  return new Set(rows.map((row) => row.id));
}
