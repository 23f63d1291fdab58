import { describeFailure, isTransientError, type FieldError, type JobPriority, type RowError, type TensorRow } from "@coalesce/contracts";
import {
  discardUploadJob,
  insertChunk,
  openUploadJob,
  recordUploadAlive,
  sealJob,
  UPLOAD_HEARTBEAT_MS,
  UPLOAD_INTERRUPTED,
  type JobRecord,
  type KeyClaim,
  type JobAlias,
  type ModelVersionRecord,
} from "@coalesce/db";
import { packRows } from "@coalesce/models";
import { publishJobFinished, unqueueChunks } from "@coalesce/queue";
import { CsvError, parse } from "csv-parse";
import { pipeline, type Readable } from "node:stream";
import type { Logger } from "pino";
import type { ApiDeps } from "../context.ts";
import { ApiError, validationError } from "../errors.ts";
import { ColumnMappingError, mapColumns, type ColumnMapping, type MappingOptions } from "./csv-columns.ts";
import { DEFAULT_CSV_LIMITS, guardCsv, type CsvLimits } from "./csv-guard.ts";
import { looksNumeric, parseRecord } from "./csv-row.ts";
import { enqueueWithin } from "./job-writer.ts";
import { ClientGoneError } from "./upload-body.ts";
import { keyTakenOver } from "../routes/jobs/idempotency.ts";

/** Errors listed in a 422; the count says how many there were. */
const MAX_REPORTED_ERRORS = 100;
/**
 * Chunks being written while parsing goes on: Postgres works on one while this process parses the
 * next, and the bounded number keeps a fast upload from queueing unbounded memory.
 */
const WRITES_IN_FLIGHT = 3;
/**
 * After Redis refused a chunk, how long the upload leaves its next chunks to the reconciler without
 * asking Redis again: enqueues go one after another in chunk order, and each wait on a Redis that
 * does not answer (up to ENQUEUE_WAIT_MS) would otherwise hold the whole upload back.
 */
const ENQUEUE_RETRY_MS = 1_000;

export type CsvIngestInput = {
  tenantId: string;
  priority: JobPriority;
  expiresAfterSeconds?: number | undefined;
  webhookUrl?: string | undefined;
  modelVersion: ModelVersionRecord;
  /** The alias that routed the upload to its version, if it came through one. */
  alias?: JobAlias | null | undefined;
  mapping: MappingOptions;
  /** False: the first line is a row too, and columns are named by their position ("0", "1", ...). */
  header: boolean;
  maxErrors: number;
  csv: Readable;
  /** Bounds on fields, blank lines and record size. @defaultValue DEFAULT_CSV_LIMITS */
  limits?: CsvLimits | undefined;
  /**
   * The upload's Idempotency-Key claim, kept alive with the upload (see recordUploadAlive) and tied
   * to the job as it is sealed, with the hash of the whole request (read once the file has ended).
   */
  idempotencyKey?: { claim: KeyClaim; requestHash: () => string } | undefined;
  log: Logger;
};

type PendingChunk = { inputs: (TensorRow | null)[]; ids: string[]; errors: (RowError | null)[]; failed: number };

/**
 * Streams a CSV into a job: the header is checked against the model before anything is stored;
 * rows are parsed as they arrive, written to Postgres a chunk at a time and enqueued at once, so
 * workers score the start of the file while the rest is still uploading. A row that does not parse
 * becomes a failed row naming its line and column. Past `maxErrors` such rows, past a limit of
 * CsvLimits, or on any failure mid-way (too large, client gone, Postgres gone), the job and
 * everything of it is deleted and the error thrown. A chunk that Redis will not take is no such
 * failure: it is stored, and the worker's reconciler queues it (as for JSON jobs). While it reads,
 * the upload records every few seconds that it is alive (and how many rows it has stored), so a
 * worker can end it if this process dies. Once sealed the job is the client's: nothing after that
 * deletes it.
 */
export async function ingestCsv(deps: ApiDeps, input: CsvIngestInput): Promise<JobRecord> {
  // Line numbers are counted here rather than with csv-parse's `info`, which costs more than the
  // parsing itself; so empty lines come through as [""] and are skipped below. relax_quotes: a quote
  // inside an unquoted field is text (5'10"), as in real files, not a reason to refuse the file; the
  // row then fails alone if its cell is not what the model takes.
  const limits = input.limits ?? DEFAULT_CSV_LIMITS;
  const parser = parse({ bom: true, relax_column_count: true, relax_quotes: true });
  // The guard counts each record's fields and bytes before the parser builds the record (so the
  // parser needs no max_record_size of its own: it would count less, field characters only). pipeline
  // gives every stream an error listener and destroys them all together, whichever fails.
  pipeline(input.csv, guardCsv(limits), parser, () => {});

  let mapping: ColumnMapping | null = null;
  let job: JobRecord | null = null;
  const chunkIds: string[] = [];
  const reported: FieldError[] = [];
  let errorCount = 0;
  let rowCount = 0;
  let storedRows = 0;
  let seq = 0;
  let pending: PendingChunk = newPending();
  const writing = new Set<Promise<void>>();
  let writeFailure: unknown = null;

  // A timer rather than a write per chunk: a slow client may send no full chunk for minutes and is
  // still alive; one UPDATE every few seconds per upload costs nothing beside the chunk inserts.
  // While Postgres is away every beat fails: said once for the streak, and once when it works again
  // (the outage itself is reported by the pool's own status line).
  let beat: Promise<void> | null = null;
  let beatsFailed = 0;
  /** Over the whole upload, for its summary line (the streak above starts again when a beat works). */
  let beatsFailedInAll = 0;
  const heartbeat = setInterval(() => {
    if (beat || (!job && !input.idempotencyKey)) return;
    beat = recordUploadAlive(deps.db, { jobId: job?.id ?? null, receivedRows: storedRows, idempotencyKey: input.idempotencyKey?.claim ?? null })
      .then(
        () => {
          if (beatsFailed > 0) input.log.info({ jobId: job?.id, beatsFailed }, "recording that the upload is alive works again");
          beatsFailed = 0;
        },
        (error: unknown) => {
          beatsFailedInAll++;
          if (beatsFailed++ === 0) {
            input.log.warn(
              isTransientError(error) ? { jobId: job?.id, reason: describeFailure(error) } : { jobId: job?.id, err: error },
              "could not record that the upload is alive; will keep trying (said once)",
            );
          }
        },
      )
      .finally(() => (beat = null));
  }, UPLOAD_HEARTBEAT_MS);
  heartbeat.unref();

  // Inserts run side by side; enqueues follow in chunk order, so workers take the file front to
  // back and partial results grow from the start.
  let enqueued: Promise<unknown> = Promise.resolve();
  // Chunks stored but left for the reconciler because Redis would not take them: one line at the end.
  let deferredChunks = 0;
  let deferReason: string | null = null;
  let enqueueRetryAt = 0;
  const enqueueChunk = async (chunkId: string, jobId: string, chunkSeq: number): Promise<void> => {
    if (Date.now() < enqueueRetryAt) {
      deferredChunks++;
      return;
    }
    try {
      await enqueueWithin(deps.queue, [{ chunkId, jobId, modelVersionId: input.modelVersion.id, seq: chunkSeq, priority: input.priority }]);
    } catch (error) {
      if (!isTransientError(error)) throw error;
      // The chunk row is committed: the reconciler queues every unfinished chunk of a running job,
      // sealed or still uploading.
      deferredChunks++;
      deferReason ??= describeFailure(error);
      enqueueRetryAt = Date.now() + ENQUEUE_RETRY_MS;
    }
  };
  const writeChunk = (jobId: string, chunk: PendingChunk, chunkSeq: number, firstRow: number): Promise<void> => {
    const inserted = insertChunk(deps.db, {
      jobId,
      seq: chunkSeq,
      firstRow,
      rowCount: chunk.inputs.length,
      packedInputs: packRows(chunk.inputs, input.modelVersion.inputs),
      rowIds: mapping?.idIndex === null ? null : chunk.ids,
      inputErrors: chunk.failed > 0 ? chunk.errors : null,
    }).then((chunkId) => {
      storedRows += chunk.inputs.length;
      return chunkId;
    });
    const queued = Promise.all([inserted, enqueued]).then(async ([chunkId]) => {
      chunkIds.push(chunkId);
      await enqueueChunk(chunkId, jobId, chunkSeq);
    });
    enqueued = queued.catch(() => {});
    return queued;
  };
  const flush = async () => {
    if (!job || pending.inputs.length === 0) return;
    const write = writeChunk(job.id, pending, seq++, rowCount - pending.inputs.length)
      .catch((error: unknown) => {
        writeFailure ??= error;
      })
      .finally(() => writing.delete(write));
    writing.add(write);
    // The tenant's rows per minute and queued rows count the file as it is stored.
    deps.rateLimits?.countRows(input.tenantId, pending.inputs.length);
    pending = newPending();
    if (writing.size >= WRITES_IN_FLIGHT) await Promise.race(writing);
    if (writeFailure) throw writeFailure;
  };

  let line = 0;
  let emptyLines = 0;
  let outcome: Awaited<ReturnType<typeof sealJob>>;
  try {
    for await (const record of parser as AsyncIterable<string[]>) {
      line++;
      const first = line;
      // A quoted field may span lines; the record's number is that of its first line.
      for (const field of record) for (let at = field.indexOf("\n"); at !== -1; at = field.indexOf("\n", at + 1)) line++;
      if (record.length === 1 && record[0] === "") {
        if (++emptyLines > limits.maxBlankLines) {
          throw new ApiError(
            "validation_failed",
            `the CSV cannot be read: it has more than ${limits.maxBlankLines} blank lines (line ${first}); remove them and send it again`,
          );
        }
        continue;
      }
      if (!mapping) {
        if (input.header) {
          checkHeader(record, first);
          mapping = mapColumns(record, input.modelVersion.inputs, input.mapping);
          continue;
        }
        mapping = mapColumns(
          record.map((_, index) => String(index)),
          input.modelVersion.inputs,
          { ...input.mapping, inModelOrder: true },
        );
      }
      if (!job) {
        const opened = await openUploadJob(deps.db, {
          tenantId: input.tenantId,
          modelVersionId: input.modelVersion.id,
          idColumn: input.mapping.idColumn ?? null,
          priority: input.priority,
          expiresAfterSeconds: input.expiresAfterSeconds,
          webhookUrl: input.webhookUrl,
          alias: input.alias ?? undefined,
        });
        if (!opened) {
          // Deleted between this request resolving the version (remembered for a second) and now.
          throw new ApiError("not_found", `model '${input.modelVersion.modelName}' has no version ${input.modelVersion.version} (it was just deleted)`);
        }
        job = opened;
      }
      const parsed = parseRecord(record, first, mapping);
      if ("error" in parsed) {
        errorCount++;
        if (reported.length < MAX_REPORTED_ERRORS) reported.push({ field: `line ${first}`, message: parsed.error.message });
        if (errorCount > input.maxErrors) {
          throw new ApiError(
            "validation_failed",
            `more than max_errors=${input.maxErrors} rows could not be read, so nothing of the upload was kept; the first: ${reported[0]?.message}`,
            reported,
          );
        }
        pending.inputs.push(null);
        pending.errors.push(parsed.error);
        pending.failed++;
      } else {
        pending.inputs.push(parsed.row);
        pending.errors.push(null);
      }
      pending.ids.push(parsed.id ?? "");
      rowCount++;
      if (pending.inputs.length >= deps.limits.chunkRows) await flush();
    }
    if (!mapping) throw new ApiError("validation_failed", "the file is empty; send a CSV with a header line and rows");
    if (!job) throw new ApiError("validation_failed", "the file has a header but no rows");
    await flush();
    await Promise.all(writing);
    if (writeFailure) throw writeFailure;
    clearInterval(heartbeat);
    // A beat still in flight locks the job row: sealing waits for it rather than racing it.
    await beat;
    const key = input.idempotencyKey;
    outcome = await sealJob(deps.db, job.id, rowCount, key ? { claim: key.claim, requestHash: key.requestHash() } : undefined);
    if (outcome.kind === "key_lost") throw keyTakenOver();
    if (outcome.kind === "gone") throw new ApiError("conflict", "the job was deleted while its file was still being uploaded");
  } catch (error) {
    parser.destroy();
    input.csv.destroy();
    await Promise.all(writing);
    // Unless sealed: a seal whose answer was lost may have committed, and then the job is the client's.
    if (job) await discardUpload(deps, job.id, chunkIds, input.log);
    throw translateParseError(error);
  } finally {
    clearInterval(heartbeat);
  }

  // Sealed: from here on nothing deletes the job, whatever fails.
  const sealed = outcome.job;
  if (sealed.error?.code === UPLOAD_INTERRUPTED) {
    // This process went unseen past the staleness bound (stalled), and a worker ended the upload
    // (and announced it): the job stays as the sweep left it.
    throw new ApiError("conflict", "the upload was ended as interrupted while it was still being read (the API was not seen alive in time); send the file again");
  }
  // Every chunk may have been scored before the upload ended: then the job finished just now.
  if (sealed.status === "succeeded" || sealed.status === "failed") {
    await publishJobFinished(deps.redis, deps.queuePrefix, sealed.id).catch((error: unknown) =>
      input.log.warn({ err: error, jobId: sealed.id }, "could not announce the finished upload; long-polls see it at their next look"),
    );
  }
  if (deferredChunks > 0) {
    input.log.warn(
      { jobId: sealed.id, deferredChunks, chunks: chunkIds.length, reason: deferReason },
      `${deferredChunks} of ${chunkIds.length} chunks were stored but not queued (Redis would not take them); the reconciler queues them`,
    );
  }
  input.log.info(
    { jobId: sealed.id, rows: rowCount, failedRows: errorCount, chunks: chunkIds.length, ...(beatsFailedInAll > 0 ? { heartbeatsFailed: beatsFailedInAll } : {}) },
    "csv upload accepted",
  );
  // As the seal left it: most of a long file's rows may be scored already.
  return sealed;
}

/**
 * A header of numbers alone is a data row: read as a header, the file's first row would be lost
 * and its values become column names. Refused, saying how to send a file without a header.
 */
function checkHeader(header: string[], line: number): void {
  if (!header.every((name) => looksNumeric(name))) return;
  const shown = header.slice(0, 4).join(",");
  throw validationError([
    {
      field: "header",
      message:
        `line ${line} (${header.length > 4 ? `${shown},...` : shown}) holds only numbers, so it is a row, not a header naming the columns; ` +
        "add a header line, or send the file with header=false (every line a row, columns in the model's input order)",
    },
  ]);
}

function newPending(): PendingChunk {
  return { inputs: [], ids: [], errors: [], failed: 0 };
}

/**
 * Nothing of a rejected upload is kept: its rows, results and queued chunks go. A sealed job stays
 * (see discardUploadJob); one that cannot be deleted now (Postgres away) is unsealed and no longer
 * said alive, so the worker's upload sweep ends it.
 */
async function discardUpload(deps: ApiDeps, jobId: string, chunkIds: string[], log: Logger): Promise<void> {
  try {
    if (await discardUploadJob(deps.db, jobId)) await unqueueChunks(deps.queue, chunkIds);
  } catch (error) {
    if (isTransientError(error)) log.warn({ jobId, reason: describeFailure(error) }, "could not discard a rejected upload now; the upload sweep ends it");
    else log.error({ err: error, jobId }, "could not discard a rejected upload");
  }
}

function translateParseError(error: unknown): unknown {
  if (error instanceof ApiError || error instanceof ClientGoneError) return error;
  if (error instanceof ColumnMappingError) return validationError(error.errors);
  if (error instanceof CsvError) {
    // Every csv-parse error is about the file (an unclosed quote, a record past the size limit) and
    // names its line.
    return new ApiError("validation_failed", `the CSV cannot be read: ${error.message}`);
  }
  const code = (error as { code?: string }).code;
  if (code === "Z_DATA_ERROR" || code === "Z_BUF_ERROR") {
    return new ApiError("validation_failed", "the body says Content-Encoding: gzip but is not valid gzip data");
  }
  return error;
}
