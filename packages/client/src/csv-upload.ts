import { open } from "node:fs/promises";
import { Readable, Transform, pipeline } from "node:stream";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { createGzip } from "node:zlib";

/** Options of `client.uploadCsv`: the file and how its columns become the model's inputs. */
export type CsvUploadOptions = {
  /** `iris` (its `production` alias, else the latest version), `iris@2` for version 2, `iris@canary` for an alias. */
  model: string;
  /** A path to read, or a stream of the CSV's bytes (header line first). */
  file: string | ReadableStream<Uint8Array> | Readable;
  /** A column carried through to the results as each row's `id`. */
  idColumn?: string;
  /** Columns that are not model inputs (a label column, say). */
  ignore?: string[];
  /**
   * Which columns make up each input, in order: `{ features: ["a", "b", "c", "d"] }`.
   * @defaultValue the server's choice: every column not ignored, in file order, for a single input
   */
  map?: Record<string, string[]>;
  /**
   * Rows that fail to parse become failed rows; past this many the upload is refused (422).
   * @defaultValue the server's default (1000)
   */
  maxErrors?: number;
  /**
   * Compress the body on the fly and send `Content-Encoding: gzip`. Worth it on slow links: CSV shrinks several times.
   * @defaultValue false
   */
  gzip?: boolean;
  /**
   * Called as the file is read: bytes of the file so far (before compression), and the file's size
   * when it is known (a path) or null (a stream).
   */
  onUploadProgress?: (sentBytes: number, totalBytes: number | null) => void;
  /** Receives the job's final event, signed with the tenant's default webhook secret. */
  webhookUrl?: string;
  /** A retry of the same upload with the same key within 24 h returns the original job instead of a new one. */
  idempotencyKey?: string;
  /** With an alias that splits traffic: the same key is routed to the same version. */
  routingKey?: string;
};

/**
 * The query string of a CSV upload: `model`, `id_column`, `ignore=a,b`, `max_errors`, and one
 * `map.INPUT=colA,colB` per input.
 */
export function buildCsvUploadQuery(options: Omit<CsvUploadOptions, "file" | "gzip" | "onUploadProgress" | "idempotencyKey">): URLSearchParams {
  const query = new URLSearchParams({ model: options.model });
  if (options.webhookUrl !== undefined) query.set("webhook_url", options.webhookUrl);
  if (options.routingKey !== undefined) query.set("routing_key", options.routingKey);
  if (options.idColumn !== undefined) query.set("id_column", options.idColumn);
  if (options.ignore && options.ignore.length > 0) query.set("ignore", joinColumns("ignore", options.ignore));
  if (options.maxErrors !== undefined) {
    if (!Number.isInteger(options.maxErrors) || options.maxErrors < 0) {
      throw new RangeError(`maxErrors must be a whole number of 0 or more, got ${options.maxErrors}`);
    }
    query.set("max_errors", String(options.maxErrors));
  }
  for (const [input, columns] of Object.entries(options.map ?? {})) {
    if (columns.length === 0) throw new RangeError(`map.${input} names no columns`);
    query.set(`map.${input}`, joinColumns(`map.${input}`, columns));
  }
  return query;
}

// The query lists columns comma-separated, so a name with a comma cannot be said there.
function joinColumns(what: string, columns: readonly string[]): string {
  const bad = columns.find((column) => column.includes(",") || column === "");
  if (bad !== undefined) throw new RangeError(`${what}: column names must be non-empty and without commas, got '${bad}'`);
  return columns.join(",");
}

export type CsvBody = {
  /** The request body: the file's bytes, gzipped when asked. */
  body: ReadableStream<Uint8Array>;
  /** Why reading the source failed, if it did; fetch only reports that the body broke. */
  sourceError(): Error | undefined;
  /** Stops reading (the server answered early with an error). */
  stop(): void;
};

/** Opens the CSV as a stream for fetch, counting bytes as they are read. A missing file fails here, before any request. */
export async function openCsvBody(options: Pick<CsvUploadOptions, "file" | "gzip" | "onUploadProgress">): Promise<CsvBody> {
  let source: Readable;
  let total: number | null = null;
  if (typeof options.file === "string") {
    const handle = await open(options.file, "r");
    try {
      const stats = await handle.stat();
      if (stats.isDirectory()) throw Object.assign(new Error(`EISDIR: ${options.file} is a directory`), { code: "EISDIR" });
      total = stats.size;
    } catch (error) {
      await handle.close();
      throw error;
    }
    source = handle.createReadStream();
  } else if (options.file instanceof Readable) {
    source = options.file;
  } else {
    source = Readable.fromWeb(options.file as NodeReadableStream<Uint8Array>);
  }

  let sourceError: Error | undefined;
  source.once("error", (error) => (sourceError = error));
  let sent = 0;
  const onProgress = options.onUploadProgress;
  onProgress?.(0, total);
  const count = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      sent += chunk.byteLength;
      onProgress?.(sent, total);
      done(null, chunk);
    },
  });
  // pipeline destroys every stage when one fails, so a broken read aborts the request instead of hanging it.
  const ignore = () => {};
  const tail = options.gzip ? pipeline(source, count, createGzip(), ignore) : pipeline(source, count, ignore);
  return {
    body: Readable.toWeb(tail) as unknown as ReadableStream<Uint8Array>,
    sourceError: () => sourceError,
    stop: () => {
      source.destroy();
      tail.destroy();
    },
  };
}
