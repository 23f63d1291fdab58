import type { RowError, TensorRow } from "@coalesce/contracts";
import type pg from "pg";
import type { Database } from "../connection.ts";
import type { JobPriority, JobStatus } from "../generated/client.ts";
import { toBuffer } from "../bytes.ts";
import { newId } from "../ids.ts";
import { recordIdempotentJob, type KeyClaim } from "./idempotency.ts";

export type JobRecord = {
  id: string;
  tenantId: string;
  status: JobStatus;
  priority: JobPriority;
  modelVersionId: string;
  /** `alias`: the alias the job came through, null for a pinned version. */
  model: { name: string; version: number; alias: string | null };
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
  expiresAt: Date | null;
  webhookUrl: string | null;
};

export type CreateJobInput = {
  tenantId: string;
  modelVersionId: string;
  rows: TensorRow[];
  /** Rows per chunk: the unit of queueing, retry and progress. */
  chunkRows: number;
  priority: JobPriority;
  /** Seconds until the job expires if unfinished; none when omitted. */
  expiresAfterSeconds?: number | undefined;
  /** Receives the job's final event, signed with the tenant's default webhook secret. */
  webhookUrl?: string | undefined;
  /** The alias that routed the job to its version (its revision then), if it came through one. */
  alias?: JobAlias | undefined;
  /**
   * Stores each chunk's rows in the packed binary form (`packRows` of @coalesce/models, given the
   * model's inputs) rather than as JSON. The API always packs; without it rows are stored as JSON,
   * the form chunks had before, which workers still read.
   */
  packRows?: ((rows: TensorRow[]) => Uint8Array) | undefined;
};

/** The alias a job came through: its id, name and the revision that chose the version. */
export type JobAlias = { id: string; name: string; revision: number };

/** A stored chunk and the queue job that carries it (null: its own, with the chunk's id). */
export type CreatedChunk = { id: string; seq: number; queueJobId: string | null };

export type CreatedJob = { job: JobRecord; chunks: CreatedChunk[] };

/**
 * A job not written because its model version was deleted between the request resolving it (an
 * API remembers versions for a second) and the insert: nothing of it is stored.
 */
export type VersionGone = { gone: true; modelVersionId: string };

/**
 * How createJobs lets small chunks share a BullMQ job: chunks of the same model version, lane and
 * place in their job, up to `maxRows` rows and `maxChunks` chunks per queue job. Each queue job
 * costs the API, Redis and the worker about as much as scoring a row, so single-row jobs that
 * arrive together are queued together.
 */
export type QueueSharing = { maxRows: number; maxChunks: number };

// The hot paths below (submit, poll) use pg directly: one statement each instead of Prisma's
// three to five round trips and ~1 ms of client overhead per query, which capped single-row job
// submission at about 100 per second. The hottest are named statements (parsed once per
// connection). Their plans stay custom, made for each call: a generic plan would be fixed while the
// tables are small (a fresh deployment) and keep scanning whole tables once they are not.

type JobSqlRow = {
  id: string;
  tenant_id: string;
  status: JobStatus;
  priority: JobPriority;
  model_version_id: string;
  model_name: string;
  model_version: number;
  alias: string | null;
  total_rows: number;
  succeeded_rows: number;
  failed_rows: number;
  error: RowError | null;
  sealed: boolean;
  id_column: string | null;
  provider: string | null;
  batch_rows_min: number | null;
  batch_rows_max: number | null;
  batch_rows_sum: string;
  batched_rows: number;
  created_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
  expires_at: Date | null;
  webhook_url: string | null;
};

const JOB_COLUMNS = `j.id, j.tenant_id, j.status, j.priority, j.model_version_id, m.name AS model_name,
  v.version AS model_version, j.alias, j.total_rows, j.succeeded_rows, j.failed_rows, j.error, j.sealed, j.id_column,
  j.provider, j.batch_rows_min, j.batch_rows_max, j.batch_rows_sum, j.batched_rows, j.created_at,
  j.started_at, j.completed_at, j.expires_at, j.webhook_url`;
/** Joins a job row `j` to its model's name and version. */
const JOB_JOINS = `JOIN model_versions v ON v.id = j.model_version_id JOIN models m ON m.id = v.model_id`;
const JOB_FROM = `jobs j ${JOB_JOINS}`;

function fromSqlRow(row: JobSqlRow): JobRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    status: row.status,
    priority: row.priority,
    modelVersionId: row.model_version_id,
    model: { name: row.model_name, version: row.model_version, alias: row.alias },
    totalRows: row.total_rows,
    succeededRows: row.succeeded_rows,
    failedRows: row.failed_rows,
    error: row.error,
    sealed: row.sealed,
    idColumn: row.id_column,
    provider: row.provider,
    batchRowsMin: row.batch_rows_min,
    batchRowsMax: row.batch_rows_max,
    batchRowsSum: BigInt(row.batch_rows_sum),
    batchedRows: row.batched_rows,
    createdAt: row.created_at,
    startedAt: row.started_at,
    completedAt: row.completed_at,
    expiresAt: row.expires_at,
    webhookUrl: row.webhook_url,
  };
}

/**
 * Writes jobs and all their rows (as chunks) in one statement, so atomically: nothing is queued
 * before it commits. Taking many jobs at once lets the API write concurrent submissions together.
 */
export async function createJobs(db: Database, inputs: CreateJobInput[], sharing?: QueueSharing): Promise<(CreatedJob | VersionGone)[]> {
  const jobs = inputs.map((input) => ({
    id: newId("job"),
    tenant_id: input.tenantId,
    model_version_id: input.modelVersionId,
    total_rows: input.rows.length,
    priority: input.priority,
    expires_after: input.expiresAfterSeconds ?? null,
    webhook_url: input.webhookUrl ?? null,
    alias: input.alias?.name ?? null,
    alias_id: input.alias?.id ?? null,
    alias_revision: input.alias?.revision ?? null,
  }));
  // Packed rows travel as a bytea[] beside the JSON recordset, matched by position.
  const packed: (Uint8Array | null)[] = [];
  const chunks: ChunkRow[][] = inputs.map((input, i) => {
    const jobChunks: ChunkRow[] = [];
    for (let first = 0, seq = 0; first < input.rows.length; first += input.chunkRows, seq++) {
      const rows = input.rows.slice(first, first + input.chunkRows);
      const packedRows = input.packRows?.(rows) ?? null;
      packed.push(packedRows);
      jobChunks.push({
        id: newId("chunk"),
        job_id: jobs[i]?.id as string,
        seq,
        first_row: first,
        row_count: rows.length,
        inputs: packedRows ? null : rows,
        queue_job_id: null,
      });
    }
    return jobChunks;
  });
  if (sharing) shareQueueJobs(inputs, chunks, sharing);
  const { rows } = await db.pool.query<JobSqlRow>({
    name: "create-jobs",
    text: `WITH j AS (
       INSERT INTO jobs (id, tenant_id, model_version_id, total_rows, priority, expires_at, webhook_url, alias, alias_id, alias_revision)
       SELECT x.id, x.tenant_id, x.model_version_id, x.total_rows, x.priority::job_priority,
              now() + make_interval(secs => x.expires_after), x.webhook_url, x.alias,
              -- An alias deleted since the API routed by it (another replica's, or a lookup in flight) is
              -- as if deleted after: its name stays, its id goes (no foreign-key violation, no 500).
              (SELECT a.id FROM model_aliases a WHERE a.id = x.alias_id), x.alias_revision
         FROM json_to_recordset($1::json) AS x(id text, tenant_id text, model_version_id text, total_rows int, priority text, expires_after int,
                                               webhook_url text, alias text, alias_id text, alias_revision int)
        WHERE EXISTS (SELECT 1 FROM model_versions v WHERE v.id = x.model_version_id AND v.deleted_at IS NULL)
       RETURNING *
     ), c AS (
       INSERT INTO job_chunks (id, job_id, seq, first_row, row_count, inputs, inputs_packed, queue_job_id)
       SELECT c.id, c.job_id, c.seq, c.first_row, c.row_count, c.inputs, p.inputs_packed, c.queue_job_id
         FROM ROWS FROM (json_to_recordset($2::json) AS (id text, job_id text, seq int, first_row int, row_count int, inputs json, queue_job_id text))
              WITH ORDINALITY AS c(id, job_id, seq, first_row, row_count, inputs, queue_job_id, n)
         JOIN unnest($3::bytea[]) WITH ORDINALITY AS p(inputs_packed, n) USING (n)
        WHERE c.job_id IN (SELECT id FROM j)
     )
     SELECT ${JOB_COLUMNS} FROM j ${JOB_JOINS}`,
    values: [JSON.stringify(jobs), JSON.stringify(chunks.flat()), packed.map(toBuffer)],
  });
  const byId = new Map(rows.map((row) => [row.id, fromSqlRow(row)]));
  return jobs.map((job, i): CreatedJob | VersionGone => {
    const record = byId.get(job.id);
    if (!record) return { gone: true, modelVersionId: job.model_version_id };
    return { job: record, chunks: (chunks[i] ?? []).map((chunk) => ({ id: chunk.id, seq: chunk.seq, queueJobId: chunk.queue_job_id })) };
  });
}

type ChunkRow = { id: string; job_id: string; seq: number; first_row: number; row_count: number; inputs: TensorRow[] | null; queue_job_id: string | null };

/** Gives chunks that can share a queue job (see QueueSharing) a common queue job id. */
function shareQueueJobs(inputs: CreateJobInput[], chunks: ChunkRow[][], sharing: QueueSharing): void {
  const open = new Map<string, { id: string; members: ChunkRow[]; rows: number }>();
  chunks.forEach((jobChunks, i) => {
    const input = inputs[i] as CreateJobInput;
    for (const chunk of jobChunks) {
      const key = `${input.modelVersionId}|${input.priority}|${chunk.seq}`;
      let group = open.get(key);
      if (!group || group.rows + chunk.row_count > sharing.maxRows || group.members.length >= sharing.maxChunks) {
        group = { id: newId("queueJob"), members: [], rows: 0 };
        open.set(key, group);
      }
      group.members.push(chunk);
      group.rows += chunk.row_count;
      // A chunk alone keeps a queue job of its own (id = chunk id), which a cancel can remove.
      if (group.members.length > 1) for (const member of group.members) member.queue_job_id = group.id;
    }
  });
}

/** One job: see createJobs. */
export async function createJob(db: Database, input: CreateJobInput): Promise<CreatedJob> {
  const [created] = await createJobs(db, [input]);
  if (!created || "gone" in created) throw new Error(`model version ${input.modelVersionId} does not exist or was deleted`);
  return created;
}

/** A tenant's job; another tenant's job id reads as absent. */
export async function findJob(db: Database, tenantId: string, id: string): Promise<JobRecord | null> {
  const { rows } = await db.pool.query<JobSqlRow>({
    name: "find-job",
    text: `SELECT ${JOB_COLUMNS} FROM ${JOB_FROM} WHERE j.id = $1 AND j.tenant_id = $2`,
    values: [id, tenantId],
  });
  return rows[0] ? fromSqlRow(rows[0]) : null;
}

/** Newest first; `cursor` is the last id of the previous page (ids sort by creation time). */
export async function listJobs(
  db: Database,
  tenantId: string,
  page: { cursor?: string; limit: number },
): Promise<{ jobs: JobRecord[]; nextCursor: string | null }> {
  const { rows } = await db.pool.query<JobSqlRow>(
    `SELECT ${JOB_COLUMNS} FROM ${JOB_FROM}
      WHERE j.tenant_id = $1 AND ($2::text IS NULL OR j.id < $2) ORDER BY j.id DESC LIMIT $3`,
    [tenantId, page.cursor ?? null, page.limit + 1],
  );
  const jobs = rows.slice(0, page.limit).map(fromSqlRow);
  return { jobs, nextCursor: rows.length > page.limit ? (jobs.at(-1)?.id ?? null) : null };
}

/**
 * Opens a job for a streaming upload: rows arrive in chunks (insertChunk) and the job cannot finish
 * until sealJob says how many rows there are. Until then the API keeps showing the upload is alive
 * (recordUploadAlive); an upload not seen for a while is ended by endAbandonedUploads.
 */
export async function openUploadJob(
  db: Database,
  input: Pick<CreateJobInput, "tenantId" | "modelVersionId" | "priority" | "expiresAfterSeconds" | "webhookUrl" | "alias"> & { idColumn: string | null },
): Promise<JobRecord | null> {
  const { rows } = await db.pool.query<JobSqlRow>(
    `WITH j AS (
       INSERT INTO jobs (id, tenant_id, model_version_id, total_rows, sealed, id_column, priority, expires_at, webhook_url, upload_seen_at,
                         alias, alias_id, alias_revision)
       SELECT $1, $2, $3, 0, false, $4, $5::job_priority, now() + make_interval(secs => $6::int), $7, now(), $8,
              (SELECT a.id FROM model_aliases a WHERE a.id = $9::text), $10
        WHERE EXISTS (SELECT 1 FROM model_versions v WHERE v.id = $3 AND v.deleted_at IS NULL)
       RETURNING *
     )
     SELECT ${JOB_COLUMNS} FROM j ${JOB_JOINS}`,
    [
      newId("job"),
      input.tenantId,
      input.modelVersionId,
      input.idColumn,
      input.priority,
      input.expiresAfterSeconds ?? null,
      input.webhookUrl ?? null,
      input.alias?.name ?? null,
      input.alias?.id ?? null,
      input.alias?.revision ?? null,
    ],
  );
  // Null: the version was deleted since the request resolved it (see VersionGone).
  return rows[0] ? fromSqlRow(rows[0]) : null;
}

/** What sealJob found: the job as sealed (or as it had ended meanwhile), gone, or its key lost. */
export type SealOutcome = { kind: "sealed"; job: JobRecord } | { kind: "gone" } | { kind: "key_lost" };

const SEAL_SQL = `WITH s AS (
    UPDATE jobs SET total_rows = $2, sealed = true, upload_seen_at = NULL,
      status = (CASE
        WHEN status NOT IN ('queued', 'running') OR succeeded_rows + failed_rows < $2 THEN status::text
        WHEN succeeded_rows = 0 THEN 'failed'
        ELSE 'succeeded' END)::job_status,
      completed_at = CASE WHEN status IN ('queued', 'running') AND succeeded_rows + failed_rows >= $2 THEN now() ELSE completed_at END,
      error = CASE WHEN status IN ('queued', 'running') AND succeeded_rows = 0 AND failed_rows >= $2 THEN $3::jsonb ELSE error END
    -- A job sealed already was ended by the upload sweep (interrupted): its count stays the rows it had.
    WHERE id = $1 AND NOT sealed
    RETURNING *
  )
  SELECT ${JOB_COLUMNS} FROM s j ${JOB_JOINS}`;

/**
 * Ends an upload: sets the row count and lets the job finish, finishing it now if the workers
 * already scored every row while the upload was still running. A job that ended meanwhile
 * (cancelled, expired) keeps its status; one the upload sweep ended as interrupted is returned as
 * it is, unchanged. Returns the job as it is now, so the upload's answer needs no second read.
 *
 * With `idempotencyKey`, the key is tied to the job in the same transaction, guarded by the claim
 * (see KeyClaim): the key names the job exactly when the job is sealed, so no crash between the two
 * leaves a sealed job whose key a retry could take afresh. A key no longer this claim's rolls the
 * seal back (`key_lost`): the job stays unsealed for the caller to discard. A job the sweep ended
 * does not get the key (the sweep frees it, so a retry starts afresh).
 */
export async function sealJob(
  db: Database,
  jobId: string,
  totalRows: number,
  idempotencyKey?: { claim: KeyClaim; requestHash: string },
): Promise<SealOutcome> {
  if (!idempotencyKey) {
    const { rows } = await db.pool.query<JobSqlRow>(SEAL_SQL, [jobId, totalRows, ALL_ROWS_FAILED]);
    const job = rows[0] ? fromSqlRow(rows[0]) : await findJobById(db.pool, jobId);
    return job ? { kind: "sealed", job } : { kind: "gone" };
  }
  const client = await db.pool.connect();
  let done = false;
  try {
    await client.query("BEGIN");
    // Jobs before keys, the order recordUploadAlive locks them in, so the two never deadlock.
    const { rows } = await client.query<JobSqlRow>(SEAL_SQL, [jobId, totalRows, ALL_ROWS_FAILED]);
    const sealed = rows[0] ? fromSqlRow(rows[0]) : null;
    if (!sealed) {
      await client.query("ROLLBACK");
      done = true;
      const job = await findJobById(db.pool, jobId);
      return job ? { kind: "sealed", job } : { kind: "gone" };
    }
    if (!(await recordIdempotentJob(client, idempotencyKey.claim, jobId, idempotencyKey.requestHash))) {
      await client.query("ROLLBACK");
      done = true;
      return { kind: "key_lost" };
    }
    await client.query("COMMIT");
    done = true;
    return { kind: "sealed", job: sealed };
  } finally {
    // A failure mid-way: the connection may be broken or inside the transaction; it is not reused.
    client.release(done ? undefined : true);
  }
}

async function findJobById(pool: pg.Pool, id: string): Promise<JobRecord | null> {
  const { rows } = await pool.query<JobSqlRow>(`SELECT ${JOB_COLUMNS} FROM ${JOB_FROM} WHERE j.id = $1`, [id]);
  return rows[0] ? fromSqlRow(rows[0]) : null;
}

/**
 * An upload in progress says it is alive: its job (when it has one yet) shows the rows received so
 * far (stored in chunks) and when it was last seen, and so does its Idempotency-Key claim (when it
 * has one, and it is still this upload's). The API calls this every few seconds while it reads a
 * file; one statement for both.
 */
export async function recordUploadAlive(
  db: Database,
  upload: { jobId: string | null; receivedRows: number; idempotencyKey: KeyClaim | null },
): Promise<void> {
  await db.pool.query(
    `WITH j AS (
       UPDATE jobs SET upload_seen_at = now(), total_rows = GREATEST(total_rows, $2)
        WHERE id = $1 AND NOT sealed AND status IN ('queued', 'running')
        RETURNING id
     )
     UPDATE idempotency_keys SET seen_at = now() WHERE tenant_id = $3 AND key = $4 AND job_id IS NULL AND created_at = $5`,
    [upload.jobId, upload.receivedRows, upload.idempotencyKey?.tenantId ?? null, upload.idempotencyKey?.key ?? null, upload.idempotencyKey?.claimedAt ?? null],
  );
}

/**
 * Deletes a rejected upload's job with its rows and results (the chunks cascade), unless it is
 * sealed: then it was answered for (by the upload, or by the sweep that ended it) and may have
 * finished and been announced. Returns whether it went.
 */
export async function discardUploadJob(db: Database, jobId: string): Promise<boolean> {
  const deleted = await db.pool.query(`DELETE FROM jobs WHERE id = $1 AND NOT sealed`, [jobId]);
  return (deleted.rowCount ?? 0) > 0;
}

/** Code of a job ended because its upload stopped before the file did (see endAbandonedUploads). */
export const UPLOAD_INTERRUPTED = "upload_interrupted";

/**
 * Ends the uploads whose API process has not been seen for `staleMs` (it died mid-file): each job
 * fails with `upload_interrupted`, keeping the rows scored so far, its row count set to the rows
 * stored; its chunks still waiting are returned for the caller to unqueue (workers skip chunks of a
 * job that is not running, and results of one are not written). One UPDATE decides, so several
 * sweepers at once end each job once.
 */
export async function endAbandonedUploads(
  db: Database,
  staleMs: number,
  limit = 100,
): Promise<{ jobId: string; receivedRows: number; queuedChunkIds: string[] }[]> {
  const { rows } = await db.pool.query<{ job_id: string; received_rows: number; chunk_ids: (string | null)[] }>(
    `WITH stale AS (
       SELECT s.id, (SELECT COALESCE(sum(c.row_count), 0)::int FROM job_chunks c WHERE c.job_id = s.id) AS received
         FROM jobs s
        WHERE s.upload_seen_at < now() - make_interval(secs => $1::float8 / 1000) AND s.status IN ('queued', 'running')
        LIMIT $2
     ), ended AS (
       UPDATE jobs j SET status = 'failed', completed_at = now(), sealed = true, upload_seen_at = NULL, total_rows = stale.received,
         error = jsonb_build_object(
           'code', '${UPLOAD_INTERRUPTED}',
           'message', format('the upload stopped before the file ended (the API serving it went away); %s rows had been received; resubmit the file', stale.received))
         FROM stale
        -- Checked again once the row is locked, so two sweepers never both end one job.
        WHERE j.id = stale.id AND j.upload_seen_at < now() - make_interval(secs => $1::float8 / 1000) AND j.status IN ('queued', 'running')
        RETURNING j.id, j.total_rows
     )
     SELECT ended.id AS job_id, ended.total_rows AS received_rows, array_agg(c.id) AS chunk_ids
       FROM ended LEFT JOIN job_chunks c ON c.job_id = ended.id AND c.status = 'queued' AND c.queue_job_id IS NULL
      GROUP BY ended.id, ended.total_rows`,
    [staleMs, limit],
  );
  return rows.map((row) => ({
    jobId: row.job_id,
    receivedRows: row.received_rows,
    queuedChunkIds: row.chunk_ids.filter((id): id is string => id !== null),
  }));
}

export const ALL_ROWS_FAILED = JSON.stringify({
  code: "all_rows_failed",
  message: "every row of the job failed; see each row's error in the results",
});

/**
 * Cancels a tenant's unfinished job: it ends `cancelled` at once, rows already scored keep their
 * results, and the chunks still waiting in queue jobs of their own are returned so the caller can
 * take them off the queue (a worker that picks one up anyway, or finds one in a shared queue job,
 * skips it). Null when there is no such job; `cancelled: false`
 * when it had already finished.
 */
export async function cancelJob(
  db: Database,
  tenantId: string,
  id: string,
): Promise<{ job: JobRecord; cancelled: boolean; queuedChunkIds: string[] } | null> {
  const updated = await db.pool.query(
    `UPDATE jobs SET status = 'cancelled', completed_at = now()
      WHERE id = $1 AND tenant_id = $2 AND status IN ('queued', 'running')`,
    [id, tenantId],
  );
  const job = await findJob(db, tenantId, id);
  if (!job) return null;
  const cancelled = (updated.rowCount ?? 0) > 0;
  const { rows } = cancelled
    ? await db.pool.query<{ id: string }>(`SELECT id FROM job_chunks WHERE job_id = $1 AND status = 'queued' AND queue_job_id IS NULL`, [id])
    : { rows: [] };
  return { job, cancelled, queuedChunkIds: rows.map((row) => row.id) };
}

/**
 * Deletes a tenant's job with its rows and results now, whatever its state. Returns the ids of the
 * chunks it still had waiting (for the caller to take off the queue), or null when there is no
 * such job.
 */
export async function deleteTenantJob(db: Database, tenantId: string, id: string): Promise<{ queuedChunkIds: string[] } | null> {
  const { rows } = await db.pool.query<{ chunk_id: string | null }>(
    `WITH gone AS (DELETE FROM jobs WHERE id = $1 AND tenant_id = $2 RETURNING id)
     SELECT c.id AS chunk_id FROM gone LEFT JOIN job_chunks c ON c.job_id = gone.id AND c.status = 'queued' AND c.queue_job_id IS NULL`,
    [id, tenantId],
  );
  if (rows.length === 0) return null;
  return { queuedChunkIds: rows.map((row) => row.chunk_id).filter((chunkId): chunkId is string => chunkId !== null) };
}

/**
 * Retention: deletes finished jobs (with their rows and results) completed more than `olderThanDays`
 * ago, at most `limit` per call so one sweep never holds locks for long. Returns how many went.
 */
export async function deleteExpiredJobs(db: Database, olderThanDays: number, limit = 1000): Promise<number> {
  const result = await db.pool.query(
    `DELETE FROM jobs WHERE id IN (
       SELECT id FROM jobs
        WHERE completed_at < now() - make_interval(days => $1) AND status IN ('succeeded', 'failed', 'cancelled', 'expired')
        LIMIT $2)`,
    [olderThanDays, limit],
  );
  return result.rowCount ?? 0;
}

/**
 * Retention of the webhook events that are about no job (model.alias.rolled_back), which a job's
 * deletion does not take with it: those older than `olderThanDays`, their deliveries with them.
 */
export async function deleteExpiredTenantEvents(db: Database, olderThanDays: number, limit = 1000): Promise<number> {
  const result = await db.pool.query(
    `DELETE FROM webhook_events WHERE id IN (
       SELECT id FROM webhook_events WHERE job_id IS NULL AND created_at < now() - make_interval(days => $1) LIMIT $2)`,
    [olderThanDays, limit],
  );
  return result.rowCount ?? 0;
}

/**
 * Ends the unfinished jobs whose expires_at has passed: they become `expired` and keep the rows
 * scored so far. Returns each with the chunks it still had waiting, for the caller to unqueue.
 */
export async function expireJobs(db: Database, limit = 1000): Promise<{ jobId: string; queuedChunkIds: string[] }[]> {
  const { rows } = await db.pool.query<{ job_id: string; chunk_ids: (string | null)[] }>(
    `WITH ended AS (
       UPDATE jobs SET status = 'expired', completed_at = now()
        -- completed_at IS NULL (unfinished) matches the sweep's partial index.
        WHERE id IN (SELECT id FROM jobs WHERE completed_at IS NULL AND expires_at < now() AND status IN ('queued', 'running') LIMIT $1)
          -- Checked again once the row is locked, so two sweepers never both end one job.
          AND status IN ('queued', 'running')
        RETURNING id
     )
     SELECT ended.id AS job_id, array_agg(c.id) AS chunk_ids
       FROM ended LEFT JOIN job_chunks c ON c.job_id = ended.id AND c.status = 'queued' AND c.queue_job_id IS NULL
      GROUP BY ended.id`,
    [limit],
  );
  return rows.map((row) => ({ jobId: row.job_id, queuedChunkIds: row.chunk_ids.filter((id): id is string => id !== null) }));
}

/**
 * Per lane, how long the oldest row not yet scored has waited (from its job's creation), or null
 * when the lane has none; read at every Prometheus scrape. Walks the unfinished jobs' partial index
 * oldest first and stops at the first with a chunk left, so it reads a row or two per lane while the
 * oldest job still has work; a lane with no unfinished job of its own scans the other lane's.
 */
export async function oldestUnscoredRows(db: Database): Promise<{ lane: JobPriority; ageSeconds: number | null }[]> {
  const { rows } = await db.pool.query<{ lane: JobPriority; age_seconds: number | null }>(
    `SELECT l.lane::text AS lane, EXTRACT(EPOCH FROM now() - o.created_at)::float8 AS age_seconds
       FROM unnest(enum_range(NULL::job_priority)) AS l(lane)
       LEFT JOIN LATERAL (
         SELECT j.created_at FROM jobs j
          WHERE j.completed_at IS NULL AND j.priority = l.lane
            AND EXISTS (SELECT 1 FROM job_chunks c WHERE c.job_id = j.id AND c.status = 'queued')
          ORDER BY j.created_at LIMIT 1
       ) o ON true`,
  );
  return rows.map((row) => ({ lane: row.lane, ageSeconds: row.age_seconds }));
}
