// CSV uploads through the API in process and a worker in process, on the real services.
import { gzipSync } from "node:zlib";
import type { Job, JobResults } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { buildIdentityModel } from "../../packages/models/src/tiny-onnx.ts";
import { waitForJob } from "../support/http.ts";
import { readModel } from "../support/fixtures.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "../support/services.ts";
import { startTestWorker } from "../support/worker.ts";

let services: TestServices;
let api: TestApi;
let worker: RunningWorker;
let auth: string;

beforeAll(async () => {
  services = await createTestServices();
  api = createTestApi(services, { chunkRows: 3 });
  auth = await api.createTenant("csv");
  worker = await startTestWorker(services);
  for (const [name, bytes] of [
    ["iris", await readModel("iris")],
    ["wide", buildIdentityModel("float32", ["batch", 100_000])],
    ["flags", buildIdentityModel("bool", ["batch", 2])],
    ["ids", buildIdentityModel("int64", ["batch"])],
  ] as const) {
    const response = await api.app.request(`/v1/models/${name}/versions`, {
      method: "POST",
      headers: { Authorization: auth, "Content-Type": "application/octet-stream" },
      body: bytes,
    });
    expect(response.status).toBe(201);
  }
});

afterAll(async () => {
  await worker?.close();
  await api?.close();
  await services?.cleanup();
});

const IRIS_HEADER = "row_id,sepal_length,sepal_width,petal_length,petal_width,target";

async function upload(query: string, body: string | Uint8Array, headers: Record<string, string> = {}): Promise<Response> {
  return api.app.request(`/v1/jobs?${query}`, {
    method: "POST",
    headers: { Authorization: auth, "Content-Type": "text/csv", ...headers },
    body,
  });
}


async function accepted(response: Response): Promise<Job> {
  const text = await response.text();
  expect(response.status, text).toBe(202);
  return waitForJob(api, auth, (JSON.parse(text) as Job).id);
}

async function resultsCsv(id: string): Promise<string> {
  const response = await api.app.request(`/v1/jobs/${id}/results`, { headers: { Authorization: auth, Accept: "text/csv" } });
  expect(response.headers.get("content-type")).toMatch(/^text\/csv/);
  return response.text();
}

async function resultsJson(id: string): Promise<JobResults["data"]> {
  const response = await api.app.request(`/v1/jobs/${id}/results?limit=1000`, { headers: { Authorization: auth } });
  return ((await response.json()) as JobResults).data;
}

async function problemOf(response: Response, status: number): Promise<{ code: string; detail: string; errors?: { field: string; message: string }[] }> {
  const text = await response.text();
  expect(response.status, text).toBe(status);
  expect(response.headers.get("content-type")).toBe("application/problem+json");
  return JSON.parse(text) as { code: string; detail: string };
}

describe("CSV upload edge cases", () => {
  it("reads quotes, escaped quotes, CRLF, a BOM, blank lines and no trailing newline", async () => {
    const csv =
      "\uFEFF" +
      [IRIS_HEADER, '"a ""quoted"" id",5.1,3.5,1.4,0.2,0', "", '"b,comma","6.7","3.1","4.7","1.5",1', "  ", "c,6.3,3.3,6.0,2.5,2"].join("\r\n");
    const job = await accepted(await upload("model=iris&id_column=row_id&ignore=target", csv));
    expect(job).toMatchObject({ status: "succeeded", counts: { total: 4, succeeded: 3, failed: 1 }, id_column: "row_id" });
    const rows = await resultsJson(job.id);
    expect(rows.map((row) => row.id)).toEqual(['a "quoted" id', "b,comma", "  ", "c"]);
    expect(rows.map((row) => row.outputs?.label ?? row.error?.code)).toEqual([0, 1, "invalid_row", 2]);
    expect(rows[2]?.error?.message).toMatch(/^line 5: expected 6 columns, got 1/);
    const csvOut = await resultsCsv(job.id);
    expect(csvOut.split("\n")[0]).toBe("row_id,probabilities_0,probabilities_1,probabilities_2,label,error");
    expect(csvOut.split("\n")[1]).toMatch(/^"a ""quoted"" id",0\.99\d*,[^,]+,[^,]+,0,$/);
    expect(csvOut.split("\n")[2]).toMatch(/^"b,comma",/);
  });

  it("keeps a field with an embedded newline and numbers rows from 0 without an id column", async () => {
    const csv = `note,a,b,c,d\n"two\nlines",5.1,3.5,1.4,0.2\nplain,6.7,3.1,4.7,1.5\n`;
    const job = await accepted(await upload("model=iris&ignore=note", csv));
    expect(job.counts).toEqual({ total: 2, received: 2, succeeded: 2, failed: 0 });
    const rows = await resultsJson(job.id);
    expect(rows.map((row) => [row.index, row.id])).toEqual([[0, undefined], [1, undefined]]);
    expect((await resultsCsv(job.id)).split("\n")[0]).toBe("index,probabilities_0,probabilities_1,probabilities_2,label,error");
  });

  it("fails ragged rows and non-numeric cells alone, naming line and column", async () => {
    const csv = [IRIS_HEADER, "0,5.1,3.5,1.4,0.2,0", "1,5.1,abc,1.4,0.2,0", "2,5.1,3.5,1.4", "3,,3.5,1.4,0.2,0", "4,0x10,3.5,1.4,0.2,0", "5,6.7,3.1,4.7,1.5,1"].join("\n");
    const job = await accepted(await upload("model=iris&id_column=row_id&ignore=target", csv));
    expect(job.counts).toEqual({ total: 6, received: 6, succeeded: 2, failed: 4 });
    const errors = (await resultsJson(job.id)).filter((row) => row.error).map((row) => row.error?.message);
    expect(errors).toEqual([
      "line 3, column 'sepal_width': 'abc' is not a number",
      "line 4: expected 6 columns, got 4",
      "line 5, column 'sepal_length': the cell is empty",
      "line 6, column 'sepal_length': '0x10' is not a number",
    ]);
    const csvOut = (await resultsCsv(job.id)).trim().split("\n");
    expect(csvOut[2]).toBe(`1,,,,,"invalid_row: line 3, column 'sepal_width': 'abc' is not a number"`);
  });

  it("reads a 1 MB line", async () => {
    const values = Array.from({ length: 100_000 }, (_, i) => ((i % 1000) / 7).toFixed(4));
    const header = values.map((_, i) => `v${i}`).join(",");
    const csv = `${header}\n${values.join(",")}\n${values.join(",")}\n`;
    expect(csv.length / 2).toBeGreaterThan(1_000_000);
    const job = await accepted(await upload("model=wide", csv));
    expect(job).toMatchObject({ status: "succeeded", counts: { succeeded: 2 } });
    const [row] = await resultsJson(job.id);
    const y = row?.outputs?.y as number[];
    expect(y).toHaveLength(100_000);
    expect(y[999]).toBeCloseTo(999 / 7, 3);
  });

  it("accepts a gzip body (Content-Encoding: gzip) and a gzipped multipart file", async () => {
    const csv = [IRIS_HEADER, "0,5.1,3.5,1.4,0.2,0", "1,6.7,3.1,4.7,1.5,1"].join("\n");
    const job = await accepted(await upload("model=iris&id_column=row_id&ignore=target", gzipSync(csv), { "Content-Encoding": "gzip" }));
    expect(job.counts.succeeded).toBe(2);
    const form = new FormData();
    form.set("file", new Blob([gzipSync(csv)], { type: "application/gzip" }), "data.csv.gz");
    const multipart = await api.app.request("/v1/jobs?model=iris&id_column=row_id&ignore=target", {
      method: "POST",
      headers: { Authorization: auth },
      body: form,
    });
    expect((await accepted(multipart)).counts.succeeded).toBe(2);
  });

  it("parses bool and int64 cells, keeping int64 beyond 2^53 exact", async () => {
    const flags = await accepted(await upload("model=flags", "a,b\ntrue,0\nFALSE,1\n"));
    expect((await resultsJson(flags.id)).map((row) => row.outputs?.y)).toEqual([[true, false], [false, true]]);
    const ids = await accepted(await upload("model=ids", "n\n42\n9007199254740993\n-9223372036854775808\n"));
    expect((await resultsJson(ids.id)).map((row) => row.outputs?.y)).toEqual([42, "9007199254740993", "-9223372036854775808"]);
  });

  it("maps columns explicitly with map.INPUT, in any order", async () => {
    const csv = "d,c,b,a,row_id\n0.2,1.4,3.5,5.1,r0\n";
    const job = await accepted(await upload("model=iris&id_column=row_id&map.features=a,b,c,d", csv));
    const [row] = await resultsJson(job.id);
    expect(row).toMatchObject({ id: "r0", outputs: { label: 0 } });
  });
});

describe("CSV uploads refused", () => {
  it("a header that cannot feed the model, before anything is stored", async () => {
    const before = await api.db.prisma.job.count();
    const problem = await problemOf(await upload("model=iris", `${IRIS_HEADER}\n0,5.1,3.5,1.4,0.2,0\n`), 422);
    expect(problem.detail).toContain("takes 4 values per row");
    const missing = await problemOf(await upload("model=iris&id_column=nope", `${IRIS_HEADER}\n`), 422);
    expect(missing.errors?.[0]?.field).toBe("id_column");
    const unknownInput = await problemOf(await upload("model=iris&map.petals=a", "a\n1\n"), 422);
    expect(unknownInput.errors?.map((e) => e.field)).toEqual(["map.petals", "map.features"]);
    expect(await api.db.prisma.job.count()).toBe(before);
  });

  it("an empty file or a header alone", async () => {
    expect((await problemOf(await upload("model=iris", ""), 422)).detail).toMatch(/empty/);
    expect((await problemOf(await upload("model=iris&ignore=row_id,target", `${IRIS_HEADER}\n`), 422)).detail).toMatch(/header but no rows/);
  });

  it("an unknown model (404) and a missing model parameter (422)", async () => {
    expect((await problemOf(await upload("model=nope", `${IRIS_HEADER}\n`), 404)).code).toBe("not_found");
    expect((await problemOf(await upload("", `${IRIS_HEADER}\n`), 422)).errors?.[0]?.field).toBe("model");
  });

  it("past max_errors: 422 and nothing of the upload is kept", async () => {
    const before = { jobs: await api.db.prisma.job.count(), chunks: await api.db.prisma.jobChunk.count() };
    const rows = Array.from({ length: 20 }, (_, i) => (i % 2 ? `${i},x,3.5,1.4,0.2,0` : `${i},5.1,3.5,1.4,0.2,0`));
    const problem = await problemOf(await upload("model=iris&id_column=row_id&ignore=target&max_errors=3", [IRIS_HEADER, ...rows].join("\n")), 422);
    expect(problem.detail).toContain("max_errors=3");
    expect(problem.errors?.[0]).toEqual({ field: "line 3", message: "line 3, column 'sepal_length': 'x' is not a number" });
    expect({ jobs: await api.db.prisma.job.count(), chunks: await api.db.prisma.jobChunk.count() }).toEqual(before);
  });

  it("a body past MAX_UPLOAD_BYTES (413), also when only its decompressed size is too big", async () => {
    const small = createTestApi(services, { maxUploadBytes: 4096, chunkRows: 3 });
    try {
      const big = [IRIS_HEADER, ...Array.from({ length: 400 }, (_, i) => `${i},5.1,3.5,1.4,0.2,0`)].join("\n");
      const before = await small.db.prisma.job.count();
      for (const [body, headers] of [
        [big, {}],
        [gzipSync(big), { "Content-Encoding": "gzip" }],
      ] as const) {
        const response = await small.app.request("/v1/jobs?model=iris&id_column=row_id&ignore=target", {
          method: "POST",
          headers: { Authorization: auth, "Content-Type": "text/csv", ...headers },
          body,
        });
        expect((await problemOf(response, 413)).code).toBe("payload_too_large");
      }
      expect(await small.db.prisma.job.count()).toBe(before);
    } finally {
      await small.close();
    }
  });

  it("a body that claims gzip but is not", async () => {
    const problem = await problemOf(await upload("model=iris", "not gzip", { "Content-Encoding": "gzip" }), 422);
    expect(problem.detail).toMatch(/not valid gzip/);
  });

  it("an unclosed quote", async () => {
    const problem = await problemOf(await upload("model=iris&ignore=row_id,target", `${IRIS_HEADER}\n0,"5.1,3.5,1.4,0.2,0\n`), 422);
    expect(problem.detail).toMatch(/cannot be read/);
  });
});
