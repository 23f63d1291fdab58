import type { FieldError, JobPriority, RowError, TensorRow } from "@coalesce/contracts";
import { deleteJob, insertChunk, openUploadJob, sealJob, type JobRecord, type ModelVersionRecord } from "@coalesce/db";
import { packRows } from "@coalesce/models";
import { enqueueChunks, publishJobFinished, unqueueChunks } from "@coalesce/queue";
import { parse } from "csv-parse";
import type { Readable } from "node:stream";
import type { Logger } from "pino";
import type { ApiDeps } from "../context.ts";
import { ApiError, validationError } from "../errors.ts";
import { ColumnMappingError, mapColumns, type ColumnMapping, type MappingOptions } from "./csv-columns.ts";
import { parseRecord } from "./csv-row.ts";

/** A 1 MB line is ordinary (an image row); far beyond that is a broken file, not a row. */
const MAX_RECORD_BYTES = 64 * 1024 * 1024;
/** Errors listed in a 422; the count says how many there were. */
const MAX_REPORTED_ERRORS = 100;
/**
 * Chunks being written while parsing goes on: Postgres works on one while this process parses the
 * next, and the bounded number keeps a fast upload from queueing unbounded memory.
 */
const WRITES_IN_FLIGHT = 3;

export type CsvIngestInput = {
  tenantId: string;
  priority: JobPriority;
  expiresAfterSeconds?: number | undefined;
  webhookUrl?: string | undefined;
  modelVersion: ModelVersionRecord;
  mapping: MappingOptions;
  maxErrors: number;
  csv: Readable;
  log: Logger;
};

type PendingChunk = { inputs: (TensorRow | null)[]; ids: string[]; errors: (RowError | null)[]; failed: number };

/**
 * Streams a CSV into a job: the header is checked against the model before anything is stored;
 * rows are parsed as they arrive, written to Postgres a chunk at a time and enqueued at once, so
 * workers score the start of the file while the rest is still uploading. A row that does not parse
 * becomes a failed row naming its line and column. Past `maxErrors` such rows, or on any failure
 * mid-way (too large, client gone), the job and everything of it is deleted and the error thrown.
 */
export async function ingestCsv(deps: ApiDeps, input: CsvIngestInput): Promise<JobRecord> {
  // Line numbers are counted here rather than with csv-parse's `info`, which costs more than the
  // parsing itself; so empty lines come through as [""] and are skipped below.
  const parser = parse({ bom: true, relax_column_count: true, max_record_size: MAX_RECORD_BYTES });
  input.csv.on("error", (error) => parser.destroy(error));
  input.csv.pipe(parser);

  let mapping: ColumnMapping | null = null;
  let job: JobRecord | null = null;
  const chunkIds: string[] = [];
  const reported: FieldError[] = [];
  let errorCount = 0;
  let rowCount = 0;
  let seq = 0;
  let pending: PendingChunk = newPending();
  const writing = new Set<Promise<void>>();
  let writeFailure: unknown = null;

  // Inserts run side by side; enqueues follow in chunk order, so workers take the file front to
  // back and partial results grow from the start.
  let enqueued: Promise<unknown> = Promise.resolve();
  const writeChunk = (jobId: string, chunk: PendingChunk, chunkSeq: number, firstRow: number): Promise<void> => {
    const inserted = insertChunk(deps.db, {
      jobId,
      seq: chunkSeq,
      firstRow,
      rowCount: chunk.inputs.length,
      packedInputs: packRows(chunk.inputs, input.modelVersion.inputs),
      rowIds: mapping?.idIndex === null ? null : chunk.ids,
      inputErrors: chunk.failed > 0 ? chunk.errors : null,
    });
    const queued = Promise.all([inserted, enqueued]).then(async ([chunkId]) => {
      chunkIds.push(chunkId);
      await enqueueChunks(deps.queue, [{ chunkId, jobId, modelVersionId: input.modelVersion.id, seq: chunkSeq, priority: input.priority }]);
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
    pending = newPending();
    if (writing.size >= WRITES_IN_FLIGHT) await Promise.race(writing);
    if (writeFailure) throw writeFailure;
  };

  let line = 0;
  try {
    for await (const record of parser as AsyncIterable<string[]>) {
      line++;
      const first = line;
      // A quoted field may span lines; the record's number is that of its first line.
      for (const field of record) for (let at = field.indexOf("\n"); at !== -1; at = field.indexOf("\n", at + 1)) line++;
      if (record.length === 1 && record[0] === "") continue;
      if (!mapping) {
        mapping = mapColumns(record, input.modelVersion.inputs, input.mapping);
        continue;
      }
      if (!job) {
        job = await openUploadJob(deps.db, {
          tenantId: input.tenantId,
          modelVersionId: input.modelVersion.id,
          idColumn: input.mapping.idColumn ?? null,
          priority: input.priority,
          expiresAfterSeconds: input.expiresAfterSeconds,
          webhookUrl: input.webhookUrl,
        });
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
    const sealed = await sealJob(deps.db.prisma, job.id, rowCount);
    // Every chunk may have been scored before the upload ended: then the job finished just now.
    if (sealed === "succeeded" || sealed === "failed") await publishJobFinished(deps.redis, deps.queuePrefix, job.id);
    input.log.info({ jobId: job.id, rows: rowCount, failedRows: errorCount, chunks: chunkIds.length }, "csv upload accepted");
    return { ...job, totalRows: rowCount, sealed: true };
  } catch (error) {
    parser.destroy();
    input.csv.destroy();
    await Promise.all(writing);
    if (job) await discardUpload(deps, job.id, chunkIds, input.log);
    throw translateParseError(error);
  }
}

function newPending(): PendingChunk {
  return { inputs: [], ids: [], errors: [], failed: 0 };
}

/** Nothing of a rejected upload is kept: its rows, results and queued chunks go. */
async function discardUpload(deps: ApiDeps, jobId: string, chunkIds: string[], log: Logger): Promise<void> {
  try {
    await deleteJob(deps.db.prisma, jobId);
    await unqueueChunks(deps.queue, chunkIds);
  } catch (error) {
    log.error({ err: error, jobId }, "could not discard a rejected upload");
  }
}

function translateParseError(error: unknown): unknown {
  if (error instanceof ApiError) return error;
  if (error instanceof ColumnMappingError) return validationError(error.errors);
  const code = (error as { code?: string }).code;
  if (typeof code === "string" && code.startsWith("CSV_")) {
    // csv-parse's own errors name the line: an unclosed quote, a record past the size limit.
    return new ApiError("validation_failed", `the CSV cannot be read: ${(error as Error).message}`);
  }
  if (code === "Z_DATA_ERROR" || code === "Z_BUF_ERROR") {
    return new ApiError("validation_failed", "the body says Content-Encoding: gzip but is not valid gzip data");
  }
  return error;
}
