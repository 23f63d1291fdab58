import { createHash, randomUUID } from "node:crypto";
import { statSync } from "node:fs";
import { mkdir, mkdtemp, open, rename, rm, stat, unlink } from "node:fs/promises";
import { join, relative, isAbsolute } from "node:path";

export type StoredModel = {
  /** Lowercase hex SHA-256: of the file's bytes, or of a folder's listing (see `hashModelFolder`); also its name in the store. */
  sha256: string;
  /** The .onnx file's size, or all of a folder's files together. */
  sizeBytes: number;
  /** The .onnx file onnxruntime opens, with any data files beside it; absolute or dir-relative, as `dir` was given. */
  path: string;
};

/** One file of a model kept as a folder, as whoever wrote it hashed it. */
export type ModelFile = {
  /** Relative to the model's folder, `/`-separated. */
  path: string;
  sha256: string;
  sizeBytes: number;
};

/** A fresh, empty folder inside the store to write a model into before `putFolder` moves it in. */
export type StagingFolder = {
  readonly path: string;
  /** Removes the folder and whatever is left in it; safe to call after `putFolder` took its contents. */
  discard(): Promise<void>;
};

export type ModelStore = {
  readonly dir: string;
  /** Stores `bytes` under their hash. Storing the same bytes again is a no-op that returns the same result. */
  put(bytes: Uint8Array): Promise<StoredModel>;
  /** A folder on the store's filesystem to unpack a model into, so that `putFolder` can move it in atomically. */
  stage(): Promise<StagingFolder>;
  /**
   * Moves the model in `root` (a folder inside a `stage()` folder) into the store: `files` lists
   * every file in it, `modelFile` names the .onnx among them. A lone .onnx is stored as `put` would
   * store its bytes; with data files the folder is stored whole, its .onnx renamed `model.onnx`.
   * Storing the same files again is a no-op that returns the same result.
   */
  putFolder(root: string, files: readonly ModelFile[], modelFile: string): Promise<StoredModel>;
  /**
   * The .onnx file onnxruntime should open for this hash: the folder's `model.onnx` when the model is
   * stored as a folder, else where the single file lives (or would live). Looks at the disk once
   * (synchronously: callers build session options from it). Throws on a string that is not a SHA-256 hex digest.
   */
  pathOf(sha256: string): string;
  /** The .onnx file of a stored model, or undefined when nothing is stored under this hash (or it is not a digest). */
  locate(sha256: string): Promise<string | undefined>;
  /** Whether a model with this hash is stored; false for a string that is not a SHA-256 hex digest. */
  has(sha256: string): Promise<boolean>;
  /**
   * Deletes the model stored under this hash, file or folder; false when there was none. A folder
   * disappears at once (it is renamed away before it is emptied), so no reader sees half of it.
   */
  remove(sha256: string): Promise<boolean>;
};

/** What a model stored as a folder calls its .onnx file, whatever the upload called it. */
export const FOLDER_MODEL_FILE = "model.onnx";

const SHA256_HEX = /^[0-9a-f]{64}$/;
// Shards are two hex characters, so this name never meets one.
const STAGING_DIR = ".staging";
const FOLDER_HASH_HEADER = "coalesce-model-folder-v1\n";

/**
 * The hash a model folder is stored under: SHA-256 over a sha256sum-style listing (`<sha256>  <path>\n`
 * per file, sorted by path, the .onnx listed as `model.onnx`), so the same files under the same
 * names make the same version however the archive ordered them or named its .onnx file.
 */
export function hashModelFolder(files: readonly ModelFile[], modelFile: string): string {
  const listing = files
    .map((file) => ({ path: file.path === modelFile ? FOLDER_MODEL_FILE : file.path, sha256: file.sha256 }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const hash = createHash("sha256").update(FOLDER_HASH_HEADER);
  for (const file of listing) hash.update(`${file.sha256}  ${file.path}\n`);
  return hash.digest("hex");
}

/**
 * Content-addressed store of ONNX models on local disk: a single file at `${dir}/${sha.slice(0, 2)}/${sha}.onnx`,
 * or a model with external data files as the folder `${dir}/${sha.slice(0, 2)}/${sha}/` holding `model.onnx` and its files.
 */
export function createModelStore(dir: string): ModelStore {
  function checkDigest(sha256: string): void {
    // The hash ends up in a file path, so anything but a digest could escape `dir`.
    if (!SHA256_HEX.test(sha256)) throw new Error(`not a lowercase hex SHA-256 digest: ${JSON.stringify(sha256)}`);
  }
  const shardOf = (sha256: string) => join(dir, sha256.slice(0, 2));
  const filePathOf = (sha256: string) => join(shardOf(sha256), `${sha256}.onnx`);
  const folderOf = (sha256: string) => join(shardOf(sha256), sha256);

  function pathOf(sha256: string): string {
    checkDigest(sha256);
    const inFolder = join(folderOf(sha256), FOLDER_MODEL_FILE);
    return statSync(inFolder, { throwIfNoEntry: false }) ? inFolder : filePathOf(sha256);
  }

  async function locate(sha256: string): Promise<string | undefined> {
    if (!SHA256_HEX.test(sha256)) return undefined;
    const inFolder = join(folderOf(sha256), FOLDER_MODEL_FILE);
    if ((await sizeOf(inFolder)) !== undefined) return inFolder;
    const file = filePathOf(sha256);
    return (await sizeOf(file)) !== undefined ? file : undefined;
  }

  async function has(sha256: string): Promise<boolean> {
    return (await locate(sha256)) !== undefined;
  }

  async function put(bytes: Uint8Array): Promise<StoredModel> {
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const path = filePathOf(sha256);
    const stored = { sha256, sizeBytes: bytes.byteLength, path };
    // Files only ever appear by rename, so one of the right size is complete; a different size
    // would mean someone wrote there by hand, and we replace it below.
    if ((await sizeOf(path)) === bytes.byteLength) return stored;

    const shardDir = shardOf(sha256);
    await mkdir(shardDir, { recursive: true });
    // The temp file sits in the same directory so the rename is atomic (same filesystem), and its
    // name is unique so concurrent writers of the same model never share one.
    const tempPath = join(shardDir, `.${sha256}.${process.pid}.${randomUUID()}.tmp`);
    try {
      const handle = await open(tempPath, "wx");
      try {
        await handle.writeFile(bytes);
        // Without fsync a crash soon after the rename can leave the final name pointing at an
        // empty or short file on filesystems that delay allocation.
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tempPath, path);
    } catch (error) {
      await unlink(tempPath).catch(() => undefined);
      throw error;
    }
    return stored;
  }

  async function stage(): Promise<StagingFolder> {
    const stagingRoot = join(dir, STAGING_DIR);
    await mkdir(stagingRoot, { recursive: true });
    const path = await mkdtemp(join(stagingRoot, `${process.pid}-`));
    return { path, discard: () => rm(path, { recursive: true, force: true }) };
  }

  async function putFolder(root: string, files: readonly ModelFile[], modelFile: string): Promise<StoredModel> {
    // Only a rename within one filesystem is atomic, and only the staging area is sure to be on the store's.
    const inStaging = relative(join(dir, STAGING_DIR), root);
    if (inStaging === "" || inStaging.startsWith("..") || isAbsolute(inStaging)) {
      throw new Error(`putFolder takes a folder inside one from stage(), not ${root}`);
    }
    const model = files.find((file) => file.path === modelFile);
    if (!model) throw new Error(`the model file ${modelFile} is not among the files given`);
    if (files.some((file) => file.path === FOLDER_MODEL_FILE && file !== model)) {
      throw new Error(`a data file is named ${FOLDER_MODEL_FILE}, the name the model file takes in the store`);
    }
    if (files.length === 1) return putStagedFile(join(root, modelFile), model);

    const sha256 = hashModelFolder(files, modelFile);
    const folder = folderOf(sha256);
    const stored = { sha256, sizeBytes: files.reduce((sum, file) => sum + file.sizeBytes, 0), path: join(folder, FOLDER_MODEL_FILE) };
    // Folders only ever appear by rename, so one that is there is complete.
    if ((await sizeOf(stored.path)) !== undefined) return stored;
    if (modelFile !== FOLDER_MODEL_FILE) await rename(join(root, modelFile), join(root, FOLDER_MODEL_FILE));
    await mkdir(shardOf(sha256), { recursive: true });
    try {
      await rename(root, folder);
    } catch (error) {
      // A writer of the same files got there first: its folder is the same model.
      if (isErrnoException(error) && (error.code === "ENOTEMPTY" || error.code === "EEXIST")) return stored;
      throw error;
    }
    return stored;
  }

  /** A lone .onnx from the staging area, stored as `put` stores bytes (its writer has synced it). */
  async function putStagedFile(source: string, model: ModelFile): Promise<StoredModel> {
    checkDigest(model.sha256);
    const path = filePathOf(model.sha256);
    const stored = { sha256: model.sha256, sizeBytes: model.sizeBytes, path };
    if ((await sizeOf(path)) === model.sizeBytes) return stored;
    await mkdir(shardOf(model.sha256), { recursive: true });
    await rename(source, path);
    return stored;
  }

  async function remove(sha256: string): Promise<boolean> {
    checkDigest(sha256);
    let removed = false;
    try {
      await unlink(filePathOf(sha256));
      removed = true;
    } catch (error) {
      if (!isErrnoException(error) || error.code !== "ENOENT") throw error;
    }
    const stagingRoot = join(dir, STAGING_DIR);
    await mkdir(stagingRoot, { recursive: true });
    const trash = join(stagingRoot, `removed-${sha256}-${randomUUID()}`);
    try {
      await rename(folderOf(sha256), trash);
      removed = true;
    } catch (error) {
      if (!isErrnoException(error) || error.code !== "ENOENT") throw error;
      return removed;
    }
    await rm(trash, { recursive: true, force: true });
    return removed;
  }

  return { dir, put, stage, putFolder, pathOf, locate, has, remove };
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (error) {
    if (isErrnoException(error) && (error.code === "ENOENT" || error.code === "ENOTDIR")) return undefined;
    throw error;
  }
}

function isErrnoException(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && "code" in error;
}
