import { createHash } from "node:crypto";
import { mkdir, open, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import type { ModelSignature } from "@coalesce/contracts";
import * as tar from "tar-stream";
import { findExternalData, MalformedModelError, type ExternalDataRef } from "./external-data.ts";
import { InvalidModelError, inspectModel } from "./inspect-model.ts";
import type { ModelFile, ModelStore, StoredModel } from "./model-store.ts";

/**
 * An uploaded archive cannot be a model version. `message` is written for the user who uploaded it;
 * `entry` is the archive path it is about, when there is one.
 */
export class InvalidArchiveError extends InvalidModelError {
  readonly entry: string | undefined;
  constructor(message: string, entry?: string) {
    super(message);
    this.entry = entry;
  }
}

export type ArchiveLimits = {
  /** Most bytes all of the archive's files may take together, unpacked (MAX_MODEL_BYTES). */
  maxTotalBytes: number;
  /**
   * Most entries (files and folders). Exports that write one file per tensor make thousands.
   * @defaultValue 10_000
   */
  maxEntries?: number;
};

export type UnpackedModel = {
  /** The folder holding the model: the one unpacked into, or the single folder that every entry was under. */
  root: string;
  /** The .onnx file, relative to `root`. */
  modelFile: string;
  /** Every file, relative to `root`, the .onnx among them. */
  files: ModelFile[];
  /** The tensors whose data lives in the other files. */
  externalData: ExternalDataRef[];
};

export const DEFAULT_MAX_ARCHIVE_ENTRIES = 10_000;
// Linux's NAME_MAX and a bound on the whole path well inside PATH_MAX, with the store's own prefix.
const MAX_NAME_BYTES = 255;
const MAX_PATH_BYTES = 1024;
const GZIP_MAGIC = [0x1f, 0x8b] as const;
// A header block, a pax or long-name header with its own block, and padding, with room to spare.
const TAR_OVERHEAD_PER_ENTRY = 4096;

const ENTRY_TYPE_NAMES: Record<string, string> = {
  link: "hard link",
  symlink: "symbolic link",
  "character-device": "character device",
  "block-device": "block device",
  fifo: "FIFO",
};

/**
 * Unpacks a tar archive (gzip'd or not: it is told by its first bytes) of one ONNX model and its
 * external data files into `into`, an empty folder, and checks it is exactly that: regular files
 * and folders only, every path inside the model's folder and given once, one .onnx file at the top
 * level, every file a tensor names present (and long enough), no file that none names, within
 * `limits`. A single folder holding everything (`tar czf m.tgz my-model/`) is taken as the model's
 * folder. Throws InvalidArchiveError for each of these, naming the entry; what was unpacked is
 * left for the caller to discard.
 */
export async function unpackModelArchive(body: AsyncIterable<Uint8Array>, into: string, limits: ArchiveLimits): Promise<UnpackedModel> {
  const maxEntries = limits.maxEntries ?? DEFAULT_MAX_ARCHIVE_ENTRIES;
  const files: ModelFile[] = [];
  const fileNames = new Set<string>();
  const folders = new Set<string>();
  let entries = 0;
  let totalBytes = 0;

  const claim = (path: string, asFolder: boolean) => {
    const segments = path.split("/");
    for (let i = 1; i < segments.length; i++) {
      const parent = segments.slice(0, i).join("/");
      if (fileNames.has(parent)) throw new InvalidArchiveError(`archive entry '${path}' is inside '${parent}', which is a file`, path);
      folders.add(parent);
    }
    if (fileNames.has(path)) {
      throw new InvalidArchiveError(`archive entry '${path}' appears more than once; every path must be given once`, path);
    }
    if (asFolder) {
      folders.add(path);
    } else {
      if (folders.has(path)) throw new InvalidArchiveError(`archive entry '${path}' is both a folder and a file`, path);
      fileNames.add(path);
    }
  };

  const { bytes, gzipped } = await sniffGzip(body);
  // Past the files' own bytes a tar only holds headers and padding; a stream that goes on longer
  // (a gzip of endless zero blocks, say) is cut off here rather than decompressed to the end.
  const maxTarBytes = limits.maxTotalBytes + (maxEntries + 16) * TAR_OVERHEAD_PER_ENTRY;
  async function* capped(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    let seen = 0;
    for await (const chunk of source) {
      seen += chunk.byteLength;
      if (seen > maxTarBytes) throw new InvalidArchiveError(`unpacked, the archive is larger than the limit of ${limits.maxTotalBytes} bytes`);
      yield chunk;
    }
  }
  const extract = tar.extract();
  const feeding = gzipped ? pipeline(Readable.from(bytes), createGunzip(), capped, extract) : pipeline(Readable.from(bytes), capped, extract);
  // Observed below; this only keeps an early failure from counting as unhandled meanwhile.
  feeding.catch(() => undefined);
  try {
    for await (const entry of extract) {
      const header = entry.header;
      entries++;
      if (entries > maxEntries) {
        throw new InvalidArchiveError(`the archive has more than ${maxEntries} entries (at '${header.name}')`, header.name);
      }
      const path = normalizeEntryName(header.name);
      if (header.type === "directory") {
        if (path !== "") claim(path, true);
        entry.resume();
        continue;
      }
      if (header.type !== "file" && header.type !== "contiguous-file") {
        const what = (header.type && ENTRY_TYPE_NAMES[header.type]) ?? `entry of type ${String(header.type)}`;
        throw new InvalidArchiveError(
          `archive entry '${header.name}' is a ${what}; a model archive holds only regular files and folders`,
          header.name,
        );
      }
      if (path === "") throw new InvalidArchiveError(`archive entry '${header.name}' is a file without a name`, header.name);
      claim(path, false);
      const declared = header.size ?? 0;
      if (totalBytes + declared > limits.maxTotalBytes) {
        throw new InvalidArchiveError(
          `unpacked, the archive is larger than the limit of ${limits.maxTotalBytes} bytes (at '${path}', ${declared} bytes)`,
          path,
        );
      }
      totalBytes += declared;
      files.push(await writeEntry(entry, join(into, path), path));
    }
    await feeding;
  } catch (error) {
    extract.destroy();
    // A broken gzip or tar stream surfaces in the entry being read only as "destroyed"; the
    // pipeline holds the reason.
    const fed = await feeding.then(() => undefined, (caught: unknown) => caught);
    throw describeReadError(error instanceof InvalidModelError ? error : (readerFailure(fed) ?? error));
  }

  return checkModelFiles(into, files);
}

/**
 * Stages, unpacks, checks and loads an archive in onnxruntime, then stores it: the model's
 * signature and where it is stored. Nothing is left behind when any step fails.
 */
export async function storeModelArchive(
  store: ModelStore,
  body: AsyncIterable<Uint8Array>,
  limits: ArchiveLimits,
): Promise<{ stored: StoredModel; signature: ModelSignature; unpacked: UnpackedModel }> {
  const staging = await store.stage();
  try {
    const unpacked = await unpackModelArchive(body, staging.path, limits);
    // From a path, so onnxruntime finds the data files beside the model as the worker will.
    const signature = await inspectModel(join(unpacked.root, unpacked.modelFile));
    const stored = await store.putFolder(unpacked.root, unpacked.files, unpacked.modelFile);
    return { stored, signature, unpacked };
  } finally {
    await staging.discard();
  }
}

/** `./a//b/` -> `a/b`; "" for the archive's root. Refuses what could leave the folder or mislead. */
export function normalizeEntryName(name: string): string {
  if (/[\u0000-\u001f\u007f]/.test(name)) {
    throw new InvalidArchiveError(`archive entry ${JSON.stringify(name)} has a control character in its name`, name);
  }
  if (name.startsWith("/") || /^[A-Za-z]:/.test(name)) {
    throw new InvalidArchiveError(`archive entry '${name}' is an absolute path; paths must be relative to the model's folder`, name);
  }
  if (name.includes("\\")) {
    throw new InvalidArchiveError(`archive entry '${name}' has a backslash in its name; separate folders with '/'`, name);
  }
  const segments = name.split("/").filter((segment) => segment !== "" && segment !== ".");
  if (segments.includes("..")) {
    throw new InvalidArchiveError(`archive entry '${name}' has a '..' in its path; every path must stay inside the model's folder`, name);
  }
  const path = segments.join("/");
  if (Buffer.byteLength(path) > MAX_PATH_BYTES || segments.some((segment) => Buffer.byteLength(segment) > MAX_NAME_BYTES)) {
    throw new InvalidArchiveError(`archive entry '${name.slice(0, 80)}...' has a name too long to store`, name);
  }
  return path;
}

/** The body, and whether it is gzip'd: told by its first bytes, whatever the Content-Type said. */
async function sniffGzip(body: AsyncIterable<Uint8Array>): Promise<{ bytes: AsyncIterable<Uint8Array>; gzipped: boolean }> {
  const iterator = body[Symbol.asyncIterator]();
  const head: Uint8Array[] = [];
  let headBytes = 0;
  while (headBytes < GZIP_MAGIC.length) {
    const next = await iterator.next();
    if (next.done) break;
    head.push(next.value);
    headBytes += next.value.byteLength;
  }
  const first = Buffer.concat(head);
  async function* replay(): AsyncGenerator<Uint8Array> {
    if (first.byteLength > 0) yield first;
    // yield* hands an early return on to the body, so an abandoned upload stops being read.
    yield* { [Symbol.asyncIterator]: () => iterator };
  }
  return { bytes: replay(), gzipped: first[0] === GZIP_MAGIC[0] && first[1] === GZIP_MAGIC[1] };
}

async function writeEntry(entry: AsyncIterable<Uint8Array>, target: string, path: string): Promise<ModelFile> {
  // Parents are folders claimed above, made here in a folder nobody else writes to, and no link is
  // ever created, so nothing written can land outside `into`.
  await mkdir(dirname(target), { recursive: true });
  const handle = await open(target, "wx");
  const hash = createHash("sha256");
  let sizeBytes = 0;
  try {
    for await (const chunk of entry) {
      hash.update(chunk);
      sizeBytes += chunk.byteLength;
      await handle.write(chunk);
    }
    // The folder is renamed into the store later; its files must be on disk before that rename is.
    await handle.sync();
  } finally {
    await handle.close();
  }
  return { path, sha256: hash.digest("hex"), sizeBytes };
}

async function checkModelFiles(into: string, unpacked: ModelFile[]): Promise<UnpackedModel> {
  const { root, files } = stripCommonFolder(into, unpacked);
  const onnxFiles = files.filter((file) => file.path.toLowerCase().endsWith(".onnx"));
  if (onnxFiles.length === 0) {
    const held = files.length === 0 ? "nothing" : files.slice(0, 5).map((file) => `'${file.path}'`).join(", ") + (files.length > 5 ? ", ..." : "");
    throw new InvalidArchiveError(`the archive holds no .onnx file (it holds ${held}); it must hold exactly one`);
  }
  if (onnxFiles.length > 1) {
    const names = onnxFiles.map((file) => `'${file.path}'`);
    throw new InvalidArchiveError(
      `the archive holds ${onnxFiles.length} .onnx files (${names.slice(0, 5).join(", ")}${names.length > 5 ? ", ..." : ""}); it must hold exactly one model`,
      onnxFiles[1]?.path,
    );
  }
  const model = onnxFiles[0] as ModelFile;
  if (model.path.includes("/")) {
    throw new InvalidArchiveError(`the .onnx file must be at the top level of the archive, not '${model.path}'`, model.path);
  }

  let externalData: ExternalDataRef[];
  try {
    externalData = findExternalData(await readFile(join(root, model.path)));
  } catch (error) {
    if (error instanceof MalformedModelError) throw new InvalidArchiveError(`'${model.path}' is not a loadable ONNX model: ${error.message}`, model.path);
    throw error;
  }

  const byPath = new Map(files.map((file) => [file.path, file]));
  const referenced = new Set<string>([model.path]);
  for (const ref of externalData) {
    let location: string;
    try {
      location = normalizeEntryName(ref.location);
    } catch {
      throw new InvalidArchiveError(
        `tensor '${ref.tensor}' keeps its data in '${ref.location}', outside the model's folder; locations must be relative paths inside it`,
        ref.location,
      );
    }
    const file = byPath.get(location);
    if (!file) {
      throw new InvalidArchiveError(`the model keeps tensor '${ref.tensor}' in '${ref.location}', which the archive does not hold`, ref.location);
    }
    if (file === model) {
      throw new InvalidArchiveError(`tensor '${ref.tensor}' keeps its data in the .onnx file itself; it must name a separate data file`, ref.location);
    }
    const end = ref.offset + (ref.length ?? 0);
    if (end > file.sizeBytes) {
      throw new InvalidArchiveError(
        `tensor '${ref.tensor}' reads bytes ${ref.offset} to ${end} of '${location}', which holds ${file.sizeBytes} bytes`,
        location,
      );
    }
    referenced.add(location);
  }
  const stray = files.find((file) => !referenced.has(file.path));
  if (stray) {
    throw new InvalidArchiveError(
      `archive entry '${stray.path}' is not a data file of the model (no tensor names it); a model archive holds only the .onnx file and the files its tensors keep their data in`,
      stray.path,
    );
  }
  return { root, modelFile: model.path, files, externalData };
}

/** When every file sits under one top folder, that folder is the model's and paths are taken relative to it. */
function stripCommonFolder(into: string, files: ModelFile[]): { root: string; files: ModelFile[] } {
  const tops = new Set(files.map((file) => (file.path.includes("/") ? file.path.slice(0, file.path.indexOf("/")) : null)));
  const [top] = tops;
  if (tops.size !== 1 || top === null || top === undefined) return { root: into, files };
  return { root: join(into, top), files: files.map((file) => ({ ...file, path: file.path.slice(top.length + 1) })) };
}

function readerFailure(error: unknown): Error | undefined {
  if (!(error instanceof Error)) return undefined;
  const code = (error as NodeJS.ErrnoException).code;
  return code === "ERR_STREAM_PREMATURE_CLOSE" || code === "STREAM_DESTROYED" ? undefined : error;
}

/** Failures of the tar and gzip readers become the user's error; the disk's and our own stay as they are. */
function describeReadError(error: unknown): unknown {
  if (error instanceof InvalidModelError) return error;
  if (!(error instanceof Error)) return error;
  const code = (error as NodeJS.ErrnoException).code;
  if (typeof code === "string" && code.startsWith("Z_")) return new InvalidArchiveError(`the archive is not valid gzip: ${error.message}`);
  if (code === undefined && /tar|Unexpected end of data/i.test(error.message)) {
    return new InvalidArchiveError(`the body is not a valid tar archive: ${error.message}`);
  }
  return error;
}
