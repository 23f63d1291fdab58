import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline, Readable, Transform, type TransformCallback } from "node:stream";
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

/** The client closed the connection before its upload ended: nobody is left to answer. */
export class ClientGoneError extends Error {
  constructor() {
    super("the client closed the connection before the upload ended");
  }
}

/** The Node request and response under @hono/node-server; absent for in-process `app.request`. */
export type NodeConnection = { incoming?: IncomingMessage | undefined; outgoing?: ServerResponse | undefined };

const noop = () => {};

function isZlibError(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return code === "Z_DATA_ERROR" || code === "Z_BUF_ERROR";
}

/** What a reader of the upload sees of a failure anywhere upstream, as the client should read it. */
function uploadError(error: Error, multipart: boolean): Error {
  if (error instanceof ApiError || error instanceof ClientGoneError) return error;
  if (isZlibError(error)) {
    return new ApiError(
      "validation_failed",
      multipart ? "the file part says gzip (.gz or application/gzip) but is not valid gzip data" : "the body says Content-Encoding: gzip but is not valid gzip data",
    );
  }
  // busboy's own errors ("Unexpected end of form": no closing boundary, "Malformed part header").
  if (multipart) return new ApiError("validation_failed", `the multipart body cannot be read: ${error.message}`);
  return error;
}

/**
 * The last stream of the chain, the one the upload's reader holds: `source` piped into a stream
 * that ends only once `ready` resolves (a multipart body must end well after its file), fails only
 * with the error the client should see (it is destroyed by nothing else: a stream destroyed with an
 * error keeps that one as `errored`, which a reader arriving later is given), and stops the source
 * when its reader stops.
 */
function readerEnd(source: Readable, multipart: boolean, ready?: Promise<void>): Readable {
  const end = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      callback(null, chunk);
    },
    flush(callback) {
      if (!ready) callback();
      else ready.then(() => callback(), (error: Error) => callback(uploadError(error, multipart)));
    },
  });
  // The reader may not be listening yet (the stream is handed over a tick after busboy's 'file',
  // and the whole body may have been read by then): it finds the error as the stream's `errored`.
  end.on("error", noop);
  source.on("error", (error: Error) => end.destroy(uploadError(error, multipart)));
  end.once("close", () => source.destroy());
  return source.pipe(end);
}

/**
 * The CSV bytes of an upload as a stream, never buffered whole: the raw body (text/csv) or the
 * `file` part of a multipart body, gunzipped when the request or the part says gzip, and held to
 * `maxBytes` both as sent and as decompressed.
 *
 * Every stream of the chain has an error listener from the moment it exists (an 'error' without
 * one takes the process down: busboy's file stream on a body without its closing boundary did), and
 * any failure reaches the reader as an ApiError, or as ClientGoneError when the client went away.
 * Destroying the returned stream stops the work upstream, but not the request itself, so the
 * response can still be sent.
 */
export async function openCsvStream(request: Request, maxBytes: number, node: NodeConnection = {}): Promise<Readable> {
  const { incoming, outgoing } = node;
  // Touching request.body would start a second reader on the Node stream, so check it only without one.
  if (!incoming && !request.body) throw new ApiError("validation_failed", "the request has no body; send the CSV file as the body");
  const contentType = request.headers.get("content-type") ?? "";
  const encoding = (request.headers.get("content-encoding") ?? "identity").toLowerCase();
  if (encoding !== "identity" && encoding !== "gzip") {
    throw new ApiError("unsupported_media_type", `Content-Encoding ${encoding} is not supported; send gzip or plain bytes`);
  }
  const multipart = contentType.toLowerCase().startsWith("multipart/form-data");
  // The Node request stream when there is one: the web stream wrapped around it for `Request` does
  // not hold the client back, so a fast upload would pile up in memory ahead of the parser.
  const raw = incoming ?? Readable.fromWeb(request.body as import("node:stream/web").ReadableStream);
  const sent = limitBytes(maxBytes, "the upload");
  // Not in the pipeline: destroying the request would close the socket the answer goes out on.
  raw.on("error", (error: Error) => sent.destroy((error as { code?: string }).code === "ECONNRESET" ? new ClientGoneError() : error));
  raw.pipe(sent);
  if (incoming) {
    incoming.once("aborted", () => sent.destroy(new ClientGoneError()));
    // The whole body may be in hand (a small gzip of a huge file) when the client goes: the response
    // closing before it was sent says so.
    outgoing?.once("close", () => {
      if (!outgoing.writableEnded) sent.destroy(new ClientGoneError());
    });
  }
  const body: Readable = encoding === "gzip" ? pipeline(sent, createGunzip(), limitBytes(maxBytes, "the decompressed upload"), noop) : sent;
  if (!multipart) return readerEnd(body, false);

  return new Promise<Readable>((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers: { "content-type": contentType }, limits: { files: 1, fields: 100 } });
    } catch (error) {
      body.destroy();
      reject(new ApiError("validation_failed", `the multipart body cannot be read: ${(error as Error).message}`));
      return;
    }
    let found = false;
    // The file's reader sees its end only once the whole form has been read well.
    const formRead = new Promise<void>((resolveForm, rejectForm) => {
      pipeline(body, parser, (error) => {
        if (error) {
          const failure = uploadError(error, true);
          rejectForm(failure);
          reject(failure);
          return;
        }
        if (!found) reject(new ApiError("validation_failed", "the multipart body has no 'file' field; send the CSV as the field named file"));
        resolveForm();
      });
    });
    formRead.catch(noop);
    parser.on("file", (field, stream, info) => {
      if (field !== "file" || found) {
        stream.on("error", noop);
        stream.resume();
        return;
      }
      found = true;
      const gzipped = info.mimeType === "application/gzip" || info.filename?.endsWith(".gz") === true;
      const file = readerEnd(
        gzipped ? pipeline(stream, createGunzip(), limitBytes(maxBytes, "the decompressed upload"), noop) : stream,
        true,
        formRead,
      );
      // A reader that stops early stops the form too (the file stream would hold busboy back forever).
      file.once("close", () => {
        if (!file.readableEnded) parser.destroy();
      });
      resolve(file);
    });
  });
}
