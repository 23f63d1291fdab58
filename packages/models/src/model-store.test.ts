import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createModelStore } from "./model-store.ts";

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
