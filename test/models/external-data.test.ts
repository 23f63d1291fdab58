// A model whose weights live in an external data file, uploaded as a tar archive through the API
// (in process) and scored by a real worker, through a job and through predict; pushed over HTTP by
// the CLI and the client; and the archive rules as a user meets them: 422 problem+json naming the
// entry, nothing stored.
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { createClient } from "@coalesce/client";
import type { Job, JobResults, ModelList, ModelVersion, PredictResponse } from "@coalesce/contracts";
import { serve, type ServerType } from "@hono/node-server";
import * as tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { buildOnnxModelWithExternalData } from "../../packages/models/src/tiny-onnx.ts";
import { useApiSuite } from "../support/api-suite.ts";
import { runCli } from "../support/cli.ts";
import { errorFields, expectJson, expectProblem, get, requestJson, submitJob, uploadModel, waitForJob } from "../support/http.ts";
import { startTestWorker } from "../support/worker.ts";

/** `y = x @ w + b`, float32[batch, 3] -> [batch, 2], with `w` and `b` in weights.bin. */
const LINEAR = buildOnnxModelWithExternalData(
  {
    inputs: [{ name: "x", type: "float32", shape: ["batch", 3] }],
    outputs: [{ name: "y", type: "float32", shape: ["batch", 2] }],
    nodes: [
      { opType: "MatMul", inputs: ["x", "w"], outputs: ["m"] },
      { opType: "Add", inputs: ["m", "b"], outputs: ["y"] },
    ],
  },
  [
    { name: "w", dims: [3, 2], data: Float32Array.from([1, 2, 3, 4, 5, 6]), location: "weights.bin" },
    { name: "b", dims: [2], data: Float32Array.from([0.5, -0.5]), location: "weights.bin" },
  ],
);
const WEIGHTS = LINEAR.files.get("weights.bin")!;
const ROWS = [{ x: [1, 1, 1] }, { x: [1, 0, 0] }, { x: [0.5, -1, 2] }];
// Worked by hand: every value is exact in float32.
const EXPECTED = [{ y: [9.5, 11.5] }, { y: [1.5, 1.5] }, { y: [8, 8.5] }];

type TarEntry = { name: string; data?: Uint8Array; type?: tar.Headers["type"]; linkname?: string };

async function makeTar(entries: TarEntry[]): Promise<Uint8Array> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise((resolve, reject) => pack.on("end", resolve).on("error", reject));
  for (const { name, data, type = "file", linkname } of entries) {
    await new Promise<void>((resolve, reject) =>
      pack.entry({ name, type, ...(linkname ? { linkname } : {}) }, type === "file" ? Buffer.from(data ?? new Uint8Array()) : undefined, (error) =>
        error ? reject(error) : resolve(),
      ),
    );
  }
  pack.finalize();
  await done;
  return new Uint8Array(Buffer.concat(chunks));
}

const MODEL_ENTRIES: TarEntry[] = [
  { name: "linear.onnx", data: LINEAR.model },
  { name: "weights.bin", data: WEIGHTS },
];
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

const suite = useApiSuite("external-data");
let worker: RunningWorker;

beforeAll(async () => {
  worker = await startTestWorker(suite.services);
});
afterAll(async () => {
  await worker?.close();
});

describe("a model with external data, uploaded as a tar archive", () => {
  let version: ModelVersion;

  it("registers it: 201 with its signature, the files' total size and a hash over their listing", async () => {
    const archive = await makeTar(MODEL_ENTRIES);
    version = await expectJson<ModelVersion>(await uploadModel(suite.api, suite.auth, "linear", archive, "application/x-tar"), 201);
    expect(version).toMatchObject({
      name: "linear",
      version: 1,
      size_bytes: LINEAR.model.byteLength + WEIGHTS.byteLength,
      inputs: [{ name: "x", type: "float32", shape: ["batch", 3] }],
      outputs: [{ name: "y", type: "float32", shape: ["batch", 2] }],
    });
    const listing = [`${sha256(LINEAR.model)}  model.onnx\n`, `${sha256(WEIGHTS)}  weights.bin\n`].join("");
    expect(version.sha256).toBe(sha256(new TextEncoder().encode(`coalesce-model-folder-v1\n${listing}`)));
    const folder = join(suite.services.modelStoreDir, version.sha256.slice(0, 2), version.sha256);
    expect((await readdir(folder)).sort()).toEqual(["model.onnx", "weights.bin"]);
  });

  it("scores a job's rows on a worker with the weights from the data file", async () => {
    const job = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "linear@1", inputs: ROWS }), 202);
    expect(await waitForJob(suite.api, suite.auth, job.id)).toMatchObject({ status: "succeeded" });
    const results = await expectJson<JobResults>(await get(suite.api, suite.auth, `/v1/jobs/${job.id}/results`), 200);
    expect(results.data.map((row) => row.outputs)).toEqual(EXPECTED);
  });

  it("answers predict with the same numbers", async () => {
    const response = await requestJson(suite.api, suite.auth, "POST", "/v1/models/linear/predict", { inputs: ROWS });
    const answer = await expectJson<PredictResponse>(response, 200);
    expect(answer.outputs.map((row) => row.outputs)).toEqual(EXPECTED);
  });

  it("is the same version when the same files come again: reordered, gzip'd, the .onnx renamed, in a folder", async () => {
    const again = await makeTar([
      { name: "export/", type: "directory" },
      { name: "export/weights.bin", data: WEIGHTS },
      { name: "export/model.onnx", data: LINEAR.model },
    ]);
    for (const type of ["application/gzip", "application/x-gtar"]) {
      const response = await uploadModel(suite.api, suite.auth, "linear", new Uint8Array(gzipSync(again)), type);
      expect(await expectJson<ModelVersion>(response, 200)).toMatchObject({ version: 1, sha256: version.sha256 });
    }
  });
});

describe("pushed over HTTP", () => {
  let server: ServerType;
  let baseUrl: string;
  let tmp: string;

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), "coalesce-external-data-"));
    server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: suite.api.app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
    });
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("by `coalesce models push NAME FILE.tar.gz` and `FILE.tar`, as the same version", async () => {
    const archive = await makeTar(MODEL_ENTRIES);
    await writeFile(join(tmp, "linear.tar.gz"), gzipSync(archive));
    await writeFile(join(tmp, "linear.tar"), archive);
    const env = { COALESCE_URL: baseUrl, COALESCE_API_KEY: suite.auth.replace(/^Bearer /, "") };

    const first = await runCli(["models", "push", "cli-linear", join(tmp, "linear.tar.gz")], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain("cli-linear version 1");
    expect(first.stdout).toContain("x float32[batch,3]");
    const again = await runCli(["models", "push", "cli-linear", join(tmp, "linear.tar")], env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain("cli-linear version 1");
  });

  it("by the client, which tells an archive from its bytes", async () => {
    const client = createClient({ baseUrl, apiKey: suite.auth.replace(/^Bearer /, "") });
    const archive = await makeTar(MODEL_ENTRIES);
    const pushed = await client.pushModel("client-linear", new Uint8Array(gzipSync(archive)));
    expect(pushed).toMatchObject({ version: 1, size_bytes: LINEAR.model.byteLength + WEIGHTS.byteLength });
    expect(await client.pushModel("client-linear", archive)).toMatchObject({ version: 1, sha256: pushed.sha256 });
    expect(await client.pushModel("client-linear", archive, { format: "tar" })).toMatchObject({ version: 1, sha256: pushed.sha256 });
  });
});

describe("archives that are refused with 422 naming the entry", () => {
  it.each<[string, TarEntry[], string, RegExp]>([
    ["a '..' path", [...MODEL_ENTRIES, { name: "../escape.bin", data: WEIGHTS }], "../escape.bin", /has a '\.\.' in its path/],
    ["an absolute path", [...MODEL_ENTRIES, { name: "/tmp/escape.bin", data: WEIGHTS }], "/tmp/escape.bin", /is an absolute path/],
    ["a symlink", [...MODEL_ENTRIES, { name: "extra.bin", type: "symlink", linkname: "/etc/passwd" }], "extra.bin", /is a symbolic link/],
    ["a missing data file", [MODEL_ENTRIES[0]!], "weights.bin", /keeps tensor 'w' in 'weights\.bin', which the archive does not hold/],
    ["two .onnx files", [...MODEL_ENTRIES, { name: "second.onnx", data: LINEAR.model }], "second.onnx", /holds 2 \.onnx files \('linear\.onnx', 'second\.onnx'\)/],
  ])("%s", async (_, entries, entry, message) => {
    const response = await uploadModel(suite.api, suite.auth, "refused", await makeTar(entries), "application/x-tar");
    const problem = await expectProblem(response, 422, "invalid_model");
    expect(problem.detail).toMatch(message);
    expect(errorFields(problem)).toEqual([`archive[${JSON.stringify(entry)}]`]);
  });

  it("refuses files larger than MAX_MODEL_BYTES together, unpacked (a gzip'd archive fits the body limit)", async () => {
    const big = new Uint8Array(40 * 1024 * 1024);
    const archive = new Uint8Array(gzipSync(await makeTar([...MODEL_ENTRIES, { name: "padding.bin", data: big }])));
    const problem = await expectProblem(await uploadModel(suite.api, suite.auth, "refused", archive, "application/gzip"), 422, "invalid_model");
    expect(problem.detail).toMatch(/^unpacked, the archive is larger than the limit of 33554432 bytes/);
  });

  it("turns away the .onnx file alone, pointing at the archive form", async () => {
    const problem = await expectProblem(await uploadModel(suite.api, suite.auth, "refused", LINEAR.model), 422, "invalid_model");
    expect(problem.detail).toMatch(/keeps tensor data in files beside it \('weights\.bin'\); upload a tar archive/);
  });

  it("refuses a body that is not a tar archive", async () => {
    const problem = await expectProblem(await uploadModel(suite.api, suite.auth, "refused", LINEAR.model, "application/x-tar"), 422, "invalid_model");
    expect(problem.detail).toMatch(/^the body is not a valid tar archive/);
  });

  it("stored none of them", async () => {
    const list = await expectJson<ModelList>(await get(suite.api, suite.auth, "/v1/models"), 200);
    expect(list.data.map((model) => model.name)).toEqual(["cli-linear", "client-linear", "linear"]);
    expect(await readdir(join(suite.services.modelStoreDir, ".staging"))).toEqual([]);
  });
});
