import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import * as ort from "onnxruntime-node";
import * as tar from "tar-stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InvalidModelError } from "./inspect-model.ts";
import { InvalidArchiveError, storeModelArchive, unpackModelArchive, type ArchiveLimits } from "./model-archive.ts";
import { createModelStore } from "./model-store.ts";
import { buildIdentityModel, buildOnnxModelWithExternalData, type TinyExternalInitializer } from "./tiny-onnx.ts";

type TarEntry = { name: string; data?: Uint8Array | string; type?: tar.Headers["type"]; linkname?: string };

async function makeTar(entries: TarEntry[]): Promise<Uint8Array> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise((resolve, reject) => pack.on("end", resolve).on("error", reject));
  for (const entry of entries) {
    const data = typeof entry.data === "string" ? Buffer.from(entry.data) : Buffer.from(entry.data ?? new Uint8Array());
    const header = { name: entry.name, type: entry.type ?? "file", ...(entry.linkname ? { linkname: entry.linkname } : {}) };
    await new Promise<void>((resolve, reject) => pack.entry(header, header.type === "file" ? data : undefined, (error) => (error ? reject(error) : resolve())));
  }
  pack.finalize();
  await done;
  return new Uint8Array(Buffer.concat(chunks));
}

/** The body as an upload delivers it: in pieces. */
async function* chunked(bytes: Uint8Array, size = 1000): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += size) yield bytes.subarray(i, i + size);
}

/** `y = x @ w + b` over float32[batch, 3] -> [batch, 2], `w` and `b` kept in `location` (or each in its own). */
function linearModel(locations: { w: string; b: string } = { w: "weights.bin", b: "weights.bin" }): { model: Uint8Array; files: Map<string, Uint8Array> } {
  const external: TinyExternalInitializer[] = [
    { name: "w", dims: [3, 2], data: Float32Array.from([1, 2, 3, 4, 5, 6]), location: locations.w },
    { name: "b", dims: [2], data: Float32Array.from([0.5, -0.5]), location: locations.b },
  ];
  return buildOnnxModelWithExternalData(
    {
      inputs: [{ name: "x", type: "float32", shape: ["batch", 3] }],
      outputs: [{ name: "y", type: "float32", shape: ["batch", 2] }],
      nodes: [
        { opType: "MatMul", inputs: ["x", "w"], outputs: ["m"] },
        { opType: "Add", inputs: ["m", "b"], outputs: ["y"] },
      ],
    },
    external,
  );
}

function linearEntries(onnxName = "model.onnx", prefix = ""): TarEntry[] {
  const { model, files } = linearModel();
  return [{ name: `${prefix}${onnxName}`, data: model }, ...[...files].map(([name, data]) => ({ name: `${prefix}${name}`, data }))];
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const LIMITS: ArchiveLimits = { maxTotalBytes: 1024 * 1024 };

let dir: string;
let into: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "coalesce-model-archive-"));
  into = join(dir, "sandbox", "into");
  await mkdir(into, { recursive: true });
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function unpack(entries: TarEntry[] | Uint8Array, limits = LIMITS) {
  const bytes = entries instanceof Uint8Array ? entries : await makeTar(entries);
  return unpackModelArchive(chunked(bytes), into, limits);
}

/** The InvalidArchiveError an unpack fails with. */
async function refusal(entries: TarEntry[] | Uint8Array, limits = LIMITS): Promise<InvalidArchiveError> {
  const error = await unpack(entries, limits).then(
    () => null,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(InvalidArchiveError);
  return error as InvalidArchiveError;
}

describe("unpackModelArchive", () => {
  it("unpacks a model and its data file, hashing each file and listing its external tensors", async () => {
    const { model, files } = linearModel();
    const weights = files.get("weights.bin")!;
    const unpacked = await unpack(linearEntries());

    expect(unpacked.root).toBe(into);
    expect(unpacked.modelFile).toBe("model.onnx");
    expect(unpacked.files).toEqual([
      { path: "model.onnx", sha256: sha256(model), sizeBytes: model.byteLength },
      { path: "weights.bin", sha256: sha256(weights), sizeBytes: weights.byteLength },
    ]);
    expect(unpacked.externalData).toEqual([
      { tensor: "w", location: "weights.bin", offset: 0, length: 24 },
      { tensor: "b", location: "weights.bin", offset: 24, length: 8 },
    ]);
    expect(new Uint8Array(await readFile(join(into, "weights.bin")))).toEqual(weights);
  });

  it("reads a gzip'd archive, told by its first bytes", async () => {
    const unpacked = await unpack(new Uint8Array(gzipSync(await makeTar(linearEntries()))));
    expect(unpacked.files.map((file) => file.path)).toEqual(["model.onnx", "weights.bin"]);
  });

  it("takes a single folder holding everything as the model's folder, with data files in subfolders", async () => {
    const { model, files } = linearModel({ w: "data/w.bin", b: "b.bin" });
    const unpacked = await unpack([
      { name: "./my-model/", type: "directory" },
      { name: "./my-model/net.onnx", data: model },
      { name: "./my-model/data/w.bin", data: files.get("data/w.bin")! },
      { name: "./my-model/b.bin", data: files.get("b.bin")! },
    ]);
    expect(unpacked.root).toBe(join(into, "my-model"));
    expect(unpacked.modelFile).toBe("net.onnx");
    expect(unpacked.files.map((file) => file.path).sort()).toEqual(["b.bin", "data/w.bin", "net.onnx"]);
  });

  it.each([
    ["a '..' path", "../x", /'\.\.\/x' has a '\.\.' in its path/],
    ["a '..' inside a path", "data/../../x", /has a '\.\.' in its path/],
    ["an absolute path", "/etc/cron.d/x", /'\/etc\/cron\.d\/x' is an absolute path/],
    ["a backslash", "..\\x", /has a backslash/],
  ])("refuses an entry with %s, naming it, and writes nothing outside its folder", async (_, name, message) => {
    const error = await refusal([...linearEntries(), { name, data: "owned" }]);
    expect(error.message).toMatch(message);
    expect(error.entry).toBe(name);
    expect(await readdir(join(dir, "sandbox"))).toEqual(["into"]);
  });

  it.each([
    ["symlink", "symbolic link"],
    ["link", "hard link"],
    ["character-device", "character device"],
    ["fifo", "FIFO"],
  ] as const)("refuses a %s entry, naming it", async (type, what) => {
    const error = await refusal([...linearEntries(), { name: "weights2.bin", type, linkname: "/etc/passwd" }]);
    expect(error.message).toBe(`archive entry 'weights2.bin' is a ${what}; a model archive holds only regular files and folders`);
    expect(error.entry).toBe("weights2.bin");
  });

  it("refuses a name given twice", async () => {
    const error = await refusal([...linearEntries(), { name: "./weights.bin", data: "again" }]);
    expect(error.message).toMatch(/'weights\.bin' appears more than once/);
  });

  it("refuses a file that is also a folder", async () => {
    const error = await refusal([...linearEntries(), { name: "weights.bin/inner", data: "x" }]);
    expect(error.message).toMatch(/'weights\.bin\/inner' is inside 'weights\.bin', which is a file/);
  });

  it("refuses two .onnx files, naming both", async () => {
    const error = await refusal([...linearEntries(), { name: "other.onnx", data: buildIdentityModel("float32", ["batch", 2]) }]);
    expect(error.message).toBe("the archive holds 2 .onnx files ('model.onnx', 'other.onnx'); it must hold exactly one model");
  });

  it("refuses an archive without an .onnx file, saying what it holds", async () => {
    const error = await refusal([{ name: "weights.bin", data: "x" }]);
    expect(error.message).toBe("the archive holds no .onnx file (it holds 'weights.bin'); it must hold exactly one");
  });

  it("refuses an .onnx file below the top level", async () => {
    const error = await refusal([...linearEntries("model.onnx", "sub/"), { name: "README", data: "x" }]);
    expect(error.message).toBe("the .onnx file must be at the top level of the archive, not 'sub/model.onnx'");
  });

  it("refuses a model whose data file is missing, naming the file", async () => {
    const { model, files } = linearModel({ w: "weights.bin", b: "bias.bin" });
    const error = await refusal([
      { name: "model.onnx", data: model },
      { name: "weights.bin", data: files.get("weights.bin")! },
    ]);
    expect(error.message).toBe("the model keeps tensor 'b' in 'bias.bin', which the archive does not hold");
    expect(error.entry).toBe("bias.bin");
  });

  it("refuses a data file too short for the tensors read from it", async () => {
    const { model } = linearModel();
    const error = await refusal([
      { name: "model.onnx", data: model },
      { name: "weights.bin", data: new Uint8Array(30) },
    ]);
    expect(error.message).toBe("tensor 'b' reads bytes 24 to 32 of 'weights.bin', which holds 30 bytes");
  });

  it("refuses a model that names a location outside its folder", async () => {
    const { model, files } = linearModel({ w: "../weights.bin", b: "b.bin" });
    const error = await refusal([
      { name: "model.onnx", data: model },
      { name: "b.bin", data: files.get("b.bin")! },
    ]);
    expect(error.message).toMatch(/^tensor 'w' keeps its data in '\.\.\/weights\.bin', outside the model's folder/);
  });

  it("refuses a file no tensor names", async () => {
    const error = await refusal([...linearEntries(), { name: "README.md", data: "hello" }]);
    expect(error.message).toMatch(/^archive entry 'README\.md' is not a data file of the model/);
    expect(error.entry).toBe("README.md");
  });

  it("refuses an archive larger than the limit unpacked, before writing the entry past it", async () => {
    const error = await refusal([...linearEntries(), { name: "big.bin", data: new Uint8Array(4096) }], { maxTotalBytes: 2048 });
    expect(error.message).toMatch(/^unpacked, the archive is larger than the limit of 2048 bytes \(at 'big\.bin', 4096 bytes\)$/);
    expect(await readdir(into)).not.toContain("big.bin");
  });

  it("cuts off a gzip stream that inflates past the limit without a file to show for it", async () => {
    // Zero blocks read as the end of an archive, so a tar reader alone would inflate all of them.
    const bomb = new Uint8Array(gzipSync(Buffer.concat([Buffer.from(await makeTar(linearEntries())), Buffer.alloc(64 * 1024 * 1024)])));
    const error = await refusal(bomb, { maxTotalBytes: 4096, maxEntries: 4 });
    expect(error.message).toBe("unpacked, the archive is larger than the limit of 4096 bytes");
  });

  it("refuses more entries than the limit", async () => {
    const entries = Array.from({ length: 5 }, (_, i): TarEntry => ({ name: `d${i}/`, type: "directory" }));
    const error = await refusal([...linearEntries(), ...entries], { maxTotalBytes: 1 << 20, maxEntries: 4 });
    expect(error.message).toBe("the archive has more than 4 entries (at 'd2/')");
  });

  it("refuses a body that is not a tar archive, or broken gzip", async () => {
    expect((await refusal(buildIdentityModel("float32", ["batch", 2]))).message).toMatch(/^the body is not a valid tar archive: /);
    const gzip = gzipSync(await makeTar(linearEntries()));
    expect((await refusal(new Uint8Array(gzip.subarray(0, gzip.byteLength - 100)))).message).toMatch(/^the archive is not valid gzip: /);
  });
});

describe("storeModelArchive", () => {
  const store = () => createModelStore(join(dir, "store"));

  it("stores the model as a folder that onnxruntime runs from its path, with the numbers of x @ w + b", async () => {
    const models = store();
    const { stored, signature } = await storeModelArchive(models, chunked(await makeTar(linearEntries("net.onnx"))), LIMITS);

    expect(signature).toEqual({ inputs: [{ name: "x", type: "float32", shape: ["batch", 3] }], outputs: [{ name: "y", type: "float32", shape: ["batch", 2] }] });
    expect(stored.path).toBe(join(models.dir, stored.sha256.slice(0, 2), stored.sha256, "model.onnx"));
    expect(models.pathOf(stored.sha256)).toBe(stored.path);
    expect((await readdir(join(models.dir, stored.sha256.slice(0, 2), stored.sha256))).sort()).toEqual(["model.onnx", "weights.bin"]);
    expect(stored.sizeBytes).toBe(linearModel().model.byteLength + 32);

    const session = await ort.InferenceSession.create(models.pathOf(stored.sha256));
    const { y } = await session.run({ x: new ort.Tensor("float32", Float32Array.from([1, 1, 1, 1, 0, 0]), [2, 3]) });
    await session.release();
    expect(Array.from(y!.data as Float32Array)).toEqual([9.5, 11.5, 1.5, 1.5]);
    expect(await readdir(join(models.dir, ".staging"))).toEqual([]);
  });

  it("gives the same files the same hash, whatever their order, compression or the .onnx file's name", async () => {
    const models = store();
    const first = await storeModelArchive(models, chunked(await makeTar(linearEntries())), LIMITS);
    const reordered = [...linearEntries("renamed.onnx")].reverse();
    const second = await storeModelArchive(models, chunked(new Uint8Array(gzipSync(await makeTar(reordered)))), LIMITS);
    expect(second.stored).toEqual(first.stored);
  });

  it("stores an archive of a lone .onnx file as that file, under the file's own hash", async () => {
    const models = store();
    const bytes = buildIdentityModel("float32", ["batch", 2]);
    const { stored } = await storeModelArchive(models, chunked(await makeTar([{ name: "id.onnx", data: bytes }])), LIMITS);
    expect(stored).toEqual(await models.put(bytes));
    expect(stored.path).toBe(join(models.dir, sha256(bytes).slice(0, 2), `${sha256(bytes)}.onnx`));
  });

  it("leaves nothing behind when the archive or the model is refused", async () => {
    const models = store();
    await expect(storeModelArchive(models, chunked(await makeTar([...linearEntries(), { name: "x.txt", data: "x" }])), LIMITS)).rejects.toBeInstanceOf(
      InvalidArchiveError,
    );
    // Its files all check out; only onnxruntime refuses it (no such operator).
    const broken = buildOnnxModelWithExternalData(
      { inputs: [{ name: "x", type: "float32", shape: ["batch", 3] }], outputs: [{ name: "y", type: "float32", shape: ["batch", 2] }], nodes: [{ opType: "NoSuchOp", inputs: ["x", "w"], outputs: ["y"] }] },
      [{ name: "w", dims: [3, 2], data: new Float32Array(6), location: "w.bin" }],
    );
    const error = await storeModelArchive(
      models,
      chunked(await makeTar([{ name: "model.onnx", data: broken.model }, { name: "w.bin", data: broken.files.get("w.bin")! }])),
      LIMITS,
    ).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InvalidModelError);
    expect((error as Error).message).toMatch(/^the file is not a loadable ONNX model: /);
    expect(await readdir(models.dir)).toEqual([".staging"]);
    expect(await readdir(join(models.dir, ".staging"))).toEqual([]);
  });
});
