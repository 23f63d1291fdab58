import { rename, rm, stat } from "node:fs/promises";
import { createWriteStream } from "node:fs";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import type { ResultsDownload } from "@coalesce/client";
import { CliError } from "./errors.ts";

/** Fails before any work when the output's folder is missing, rather than after a long wait. */
export async function checkWritable(file: string): Promise<void> {
  const folder = path.dirname(path.resolve(file));
  const stats = await stat(folder).catch(() => null);
  if (!stats?.isDirectory()) throw new CliError(`cannot write ${file}: the folder ${folder} does not exist`);
  const existing = await stat(file).catch(() => null);
  if (existing?.isDirectory()) throw new CliError(`cannot write ${file}: it is a directory`);
}

function bodyStream(download: ResultsDownload): Readable {
  return Readable.fromWeb(download.body as NodeReadableStream<Uint8Array>);
}

/**
 * Streams the results into `file` in constant memory. It is written as `file.part` and renamed at
 * the end, so an interrupted download never looks like a whole one. Returns the bytes written.
 */
export async function writeResultsFile(download: ResultsDownload, file: string): Promise<number> {
  const partial = `${file}.part`;
  let bytes = 0;
  const count = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.byteLength;
      done(null, chunk);
    },
  });
  try {
    await pipeline(bodyStream(download), count, createWriteStream(partial));
    await rename(partial, file);
  } catch (error) {
    await rm(partial, { force: true });
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "EACCES" || code === "EISDIR") throw new CliError(`cannot write ${file}: ${code}`);
    throw error;
  }
  return bytes;
}

/** Streams the results to stdout; a reader that stops early (`| head`) is not an error. */
export async function writeResultsStdout(download: ResultsDownload, stdout: NodeJS.WritableStream): Promise<void> {
  try {
    await pipeline(bodyStream(download), stdout, { end: false });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPIPE") throw error;
  }
}

/** `warning: ...` on stderr when the job was not finished, so partial results are never taken for whole ones. */
export function warnIfIncomplete(download: ResultsDownload, jobId: string, stderr: NodeJS.WritableStream): void {
  if (!download.complete) {
    stderr.write(`warning: job ${jobId} is ${download.jobStatus}: these are only the rows scored so far\n`);
  }
}
