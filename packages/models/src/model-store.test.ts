import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createModelStore, hashModelFolder, type ModelFile, type ModelStore } from "./model-store.ts";

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "coalesce-model-store-"));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const bytes = new TextEncoder().encode("not really onnx, but the store does not care");
const sha = createHash("sha256").update(bytes).digest("hex");

describe("createModelStore", () => {
  it("stores bytes under their SHA-256, sharded by its first two characters", async () => {
    const store = createModelStore(join(dir, "models"));
    const stored = await store.put(bytes);

    expect(stored).toEqual({ sha256: sha, sizeBytes: bytes.byteLength, path: join(dir, "models", sha.slice(0, 2), `${sha}.onnx`) });
    expect(store.pathOf(sha)).toBe(stored.path);
    expect(new Uint8Array(await readFile(stored.path))).toEqual(bytes);
    expect(await store.has(sha)).toBe(true);
  });

  it("is idempotent: a second put returns the same result and does not rewrite the file", async () => {
    const store = createModelStore(dir);
    const first = await store.put(bytes);
    const before = await stat(first.path);
    await new Promise((resolve) => setTimeout(resolve, 20));

    const second = await store.put(Uint8Array.from(bytes));

    expect(second).toEqual(first);
    expect((await stat(second.path)).mtimeMs).toBe(before.mtimeMs);
    expect(await readdir(join(dir, sha.slice(0, 2)))).toEqual([`${sha}.onnx`]);
  });

  it("leaves exactly one complete file and no temp files when writers race", async () => {
    const store = createModelStore(dir);
    const big = new Uint8Array(1024 * 1024).map((_, i) => i % 251);
    const results = await Promise.all(Array.from({ length: 8 }, () => store.put(big)));

    expect(new Set(results.map((r) => r.path)).size).toBe(1);
    const path = results[0]!.path;
    expect(await readdir(join(dir, results[0]!.sha256.slice(0, 2)))).toEqual([`${results[0]!.sha256}.onnx`]);
    // Buffer.equals: a deep toEqual over a megabyte of elements takes seconds.
    expect((await readFile(path)).equals(big)).toBe(true);
  });

  it("hashes only the view's bytes when given a slice of a larger buffer", async () => {
    const backing = new Uint8Array(bytes.byteLength + 10);
    backing.set(bytes, 5);
    const stored = await createModelStore(dir).put(backing.subarray(5, 5 + bytes.byteLength));
    expect(stored.sha256).toBe(sha);
    expect(new Uint8Array(await readFile(stored.path))).toEqual(bytes);
  });

  it("replaces a file of the wrong size found at the model's path", async () => {
    const store = createModelStore(dir);
    const { path } = await store.put(bytes);
    await writeFile(path, "truncated");

    await store.put(bytes);

    expect(new Uint8Array(await readFile(path))).toEqual(bytes);
  });

  it("answers has() false for unknown or malformed hashes and refuses to build paths from them", async () => {
    const store = createModelStore(dir);
    expect(await store.has(sha)).toBe(false);
    expect(await store.has("../../etc/passwd")).toBe(false);
    expect(await store.has(sha.toUpperCase())).toBe(false);
    expect(() => store.pathOf("../../etc/passwd")).toThrow(/not a lowercase hex SHA-256/);
  });
});

/** Writes `files` into a fresh staging folder of `store`, as an unpacked archive would be. */
async function stageFiles(store: ModelStore, files: Record<string, string>): Promise<{ root: string; listing: ModelFile[] }> {
  const staging = await store.stage();
  const root = join(staging.path, "model");
  const listing: ModelFile[] = [];
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, ".."), { recursive: true });
    await writeFile(join(root, path), text);
    listing.push({ path, sha256: createHash("sha256").update(text).digest("hex"), sizeBytes: Buffer.byteLength(text) });
  }
  return { root, listing };
}

describe("models stored as folders", () => {
  const FILES = { "net.onnx": "the graph", "weights.bin": "some weights", "data/more.bin": "more weights" };

  it("moves the folder in under its listing's hash, the .onnx renamed model.onnx, and says where the .onnx is", async () => {
    const store = createModelStore(join(dir, "models"));
    const { root, listing } = await stageFiles(store, FILES);
    const stored = await store.putFolder(root, listing, "net.onnx");

    const folder = join(dir, "models", stored.sha256.slice(0, 2), stored.sha256);
    expect(stored).toEqual({ sha256: hashModelFolder(listing, "net.onnx"), sizeBytes: 9 + 12 + 12, path: join(folder, "model.onnx") });
    expect((await readdir(folder)).sort()).toEqual(["data", "model.onnx", "weights.bin"]);
    expect(await readFile(join(folder, "data", "more.bin"), "utf8")).toBe("more weights");
    expect(store.pathOf(stored.sha256)).toBe(stored.path);
    expect(await store.locate(stored.sha256)).toBe(stored.path);
    expect(await store.has(stored.sha256)).toBe(true);
  });

  it("hashes a folder by its files and names, not their order or the .onnx file's name", () => {
    const listing: ModelFile[] = [
      { path: "a.onnx", sha256: "1".repeat(64), sizeBytes: 1 },
      { path: "w.bin", sha256: "2".repeat(64), sizeBytes: 1 },
    ];
    const reversed = [...listing].reverse();
    expect(hashModelFolder(reversed, "a.onnx")).toBe(hashModelFolder(listing, "a.onnx"));
    expect(hashModelFolder([{ ...listing[0]!, path: "b.onnx" }, listing[1]!], "b.onnx")).toBe(hashModelFolder(listing, "a.onnx"));
    expect(hashModelFolder([listing[0]!, { ...listing[1]!, path: "w2.bin" }], "a.onnx")).not.toBe(hashModelFolder(listing, "a.onnx"));
    expect(hashModelFolder([listing[0]!, { ...listing[1]!, sha256: "3".repeat(64) }], "a.onnx")).not.toBe(hashModelFolder(listing, "a.onnx"));
  });

  it("is idempotent: the same files again, even from racing writers, leave one folder", async () => {
    const store = createModelStore(dir);
    const staged = await Promise.all(Array.from({ length: 4 }, () => stageFiles(store, FILES)));
    const results = await Promise.all(staged.map(({ root, listing }) => store.putFolder(root, listing, "net.onnx")));

    expect(new Set(results.map((result) => JSON.stringify(result))).size).toBe(1);
    expect(await readdir(join(dir, results[0]!.sha256.slice(0, 2)))).toEqual([results[0]!.sha256]);
  });

  it("stores a lone .onnx file as put() would store its bytes", async () => {
    const store = createModelStore(dir);
    const { root, listing } = await stageFiles(store, { "only.onnx": new TextDecoder().decode(bytes) });
    const stored = await store.putFolder(root, listing, "only.onnx");
    expect(stored).toEqual(await store.put(bytes));
    expect(store.pathOf(sha)).toBe(join(dir, sha.slice(0, 2), `${sha}.onnx`));
  });

  it("refuses a folder from outside its staging area (a rename across filesystems is not atomic)", async () => {
    const store = createModelStore(join(dir, "models"));
    await expect(store.putFolder(dir, [{ path: "m.onnx", sha256: sha, sizeBytes: 1 }], "m.onnx")).rejects.toThrow(/inside one from stage\(\)/);
  });

  it("locates nothing for an unknown hash, but pathOf still says where a single file would be", async () => {
    const store = createModelStore(dir);
    expect(await store.locate(sha)).toBeUndefined();
    expect(await store.locate("../../etc/passwd")).toBeUndefined();
    expect(store.pathOf(sha)).toBe(join(dir, sha.slice(0, 2), `${sha}.onnx`));
  });
});

describe("remove", () => {
  it("deletes a single file", async () => {
    const store = createModelStore(dir);
    const stored = await store.put(bytes);
    expect(await store.remove(stored.sha256)).toBe(true);
    expect(await store.has(stored.sha256)).toBe(false);
    expect(await store.remove(stored.sha256)).toBe(false);
  });

  it("deletes a folder whole and leaves nothing of it in the staging area", async () => {
    const store = createModelStore(dir);
    const { root, listing } = await stageFiles(store, { "m.onnx": "graph", "w.bin": "weights" });
    const stored = await store.putFolder(root, listing, "m.onnx");

    expect(await store.remove(stored.sha256)).toBe(true);
    expect(await store.has(stored.sha256)).toBe(false);
    expect(store.pathOf(stored.sha256)).toBe(join(dir, stored.sha256.slice(0, 2), `${stored.sha256}.onnx`));
    expect(await readdir(join(dir, stored.sha256.slice(0, 2)))).toEqual([]);
    const left = await readdir(join(dir, ".staging"));
    // Only the (now empty) folder stageFiles made: nothing named after the removed model.
    expect(left.filter((name) => name.includes(stored.sha256))).toEqual([]);
  });

  it("answers false for an unknown hash and throws on a string that is not one", async () => {
    const store = createModelStore(dir);
    expect(await store.remove(sha)).toBe(false);
    await expect(store.remove("../x")).rejects.toThrow(/not a lowercase hex SHA-256/);
  });
});
