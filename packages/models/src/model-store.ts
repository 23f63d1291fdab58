import { createHash, randomUUID } from "node:crypto";
import { mkdir, open, rename, stat, unlink } from "node:fs/promises";
import { join } from "node:path";

export type StoredModel = {
  /** Lowercase hex SHA-256 of the file's bytes; also its name in the store. */
  sha256: string;
  sizeBytes: number;
  /** Absolute or dir-relative path, as `dir` was given. */
  path: string;
};

export type ModelStore = {
  readonly dir: string;
  /** Stores `bytes` under their hash. Storing the same bytes again is a no-op that returns the same result. */
  put(bytes: Uint8Array): Promise<StoredModel>;
  /** Where a model with this hash lives (or would live). Throws on a string that is not a SHA-256 hex digest. */
  pathOf(sha256: string): string;
  /** Whether a model with this hash is stored; false for a string that is not a SHA-256 hex digest. */
  has(sha256: string): Promise<boolean>;
};

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Content-addressed store of ONNX files on local disk: `${dir}/${sha.slice(0, 2)}/${sha}.onnx`. */
export function createModelStore(dir: string): ModelStore {
  function pathOf(sha256: string): string {
    // The hash ends up in a file path, so anything but a digest could escape `dir`.
    if (!SHA256_HEX.test(sha256)) throw new Error(`not a lowercase hex SHA-256 digest: ${JSON.stringify(sha256)}`);
    return join(dir, sha256.slice(0, 2), `${sha256}.onnx`);
  }

  async function sizeOf(path: string): Promise<number | undefined> {
    try {
      return (await stat(path)).size;
    } catch (error) {
      if (isErrnoException(error) && error.code === "ENOENT") return undefined;
      throw error;
    }
  }

  async function has(sha256: string): Promise<boolean> {
    if (!SHA256_HEX.test(sha256)) return false;
    return (await sizeOf(pathOf(sha256))) !== undefined;
  }

  async function put(bytes: Uint8Array): Promise<StoredModel> {
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const path = pathOf(sha256);
    const stored = { sha256, sizeBytes: bytes.byteLength, path };
    // Files only ever appear by rename, so one of the right size is complete; a different size
    // would mean someone wrote there by hand, and we replace it below.
    if ((await sizeOf(path)) === bytes.byteLength) return stored;

    const shardDir = join(dir, sha256.slice(0, 2));
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

  return { dir, put, pathOf, has };
}

function isErrnoException(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && "code" in error;
}
