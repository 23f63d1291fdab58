import { Readable, Transform, type TransformCallback } from "node:stream";
import { createGunzip } from "node:zlib";
import busboy from "busboy";
import { ApiError } from "../errors.ts";

/** Counts bytes through and fails the stream with a 413 past `maxBytes`. */
export function limitBytes(maxBytes: number, what: string): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      seen += chunk.length;
      if (seen > maxBytes) {
        callback(new ApiError("payload_too_large", `${what} is larger than the limit of ${maxBytes} bytes (MAX_UPLOAD_BYTES)`));
        return;
      }
      callback(null, chunk);
    },
  });
}

function gunzip(source: Readable): Readable {
  const unzip = createGunzip();
  source.on("error", (error) => unzip.destroy(error));
  unzip.on("error", () => {});
  return source.pipe(unzip).on("error", () => {});
}

function pipeLimited(source: Readable, maxBytes: number, what: string): Readable {
  const limiter = limitBytes(maxBytes, what);
  source.on("error", (error) => limiter.destroy(error));
  return source.pipe(limiter);
}

/**
 * The CSV bytes of an upload as a stream, never buffered whole: the raw body (text/csv) or the
 * `file` part of a multipart body, gunzipped when the request or the part says gzip, and held to
 * `maxBytes` both as sent and as decompressed.
 */
export async function openCsvStream(request: Request, maxBytes: number, incoming?: Readable): Promise<Readable> {
  // Touching request.body would start a second reader on the Node stream, so check it only without one.
  if (!incoming && !request.body) throw new ApiError("validation_failed", "the request has no body; send the CSV file as the body");
  const contentType = request.headers.get("content-type") ?? "";
  const encoding = (request.headers.get("content-encoding") ?? "identity").toLowerCase();
  if (encoding !== "identity" && encoding !== "gzip") {
    throw new ApiError("unsupported_media_type", `Content-Encoding ${encoding} is not supported; send gzip or plain bytes`);
  }
  // The Node request stream when there is one: the web stream wrapped around it for `Request` does
  // not hold the client back, so a fast upload would pile up in memory ahead of the parser.
  const raw = incoming ?? Readable.fromWeb(request.body as import("node:stream/web").ReadableStream);
  let body: Readable = pipeLimited(raw, maxBytes, "the upload");
  if (encoding === "gzip") body = pipeLimited(gunzip(body), maxBytes, "the decompressed upload");
  if (!contentType.toLowerCase().startsWith("multipart/form-data")) return body;

  const file = await new Promise<{ stream: Readable; gzipped: boolean }>((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers: { "content-type": contentType }, limits: { files: 1, fields: 100 } });
    } catch (error) {
      reject(new ApiError("validation_failed", `the multipart body cannot be read: ${(error as Error).message}`));
      return;
    }
    let found = false;
    parser.on("file", (field, stream, info) => {
      if (field !== "file" || found) {
        stream.resume();
        return;
      }
      found = true;
      // A failure of the request itself (too large, client gone) must reach whoever reads the file.
      body.on("error", (error) => stream.destroy(error));
      resolve({ stream, gzipped: info.mimeType === "application/gzip" || info.filename?.endsWith(".gz") === true });
    });
    parser.on("error", (error) =>
      reject(new ApiError("validation_failed", `the multipart body cannot be read: ${(error as Error).message}`)),
    );
    parser.on("close", () => {
      if (!found) reject(new ApiError("validation_failed", "the multipart body has no 'file' field; send the CSV as the field named file"));
    });
    body.on("error", (error) => parser.destroy(error));
    body.pipe(parser);
  });
  return file.gzipped ? pipeLimited(gunzip(file.stream), maxBytes, "the decompressed upload") : file.stream;
}
