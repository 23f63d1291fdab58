// Uploads built to hurt the API, sent over a real HTTP server (an unhandled stream 'error' takes the
// whole process down, which app.request in process would not show): a multipart body cut short,
// field-count and blank-line bombs, a client that goes away mid-file, quotes in unquoted fields,
// headerless files and cells that a spreadsheet would run as formulas.
import { connect } from "node:net";
import { gzipSync } from "node:zlib";
import type { Job, JobResults, Problem } from "@coalesce/contracts";
import { serve, type ServerType } from "@hono/node-server";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../apps/api/src/app.ts";
import { mapColumns } from "../../apps/api/src/ingest/csv-columns.ts";
import { DEFAULT_CSV_LIMITS } from "../../apps/api/src/ingest/csv-guard.ts";
import { openCsvStream } from "../../apps/api/src/ingest/upload-body.ts";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { buildIdentityModel } from "../../packages/models/src/tiny-onnx.ts";
import { readModel } from "../support/fixtures.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "../support/services.ts";
import { startTestWorker } from "../support/worker.ts";

let services: TestServices;
let api: TestApi;
let worker: RunningWorker;
let auth: string;
let server: ServerType;
let baseUrl: string;
let port: number;
/** The API's log lines, as JSON. */
const logs: Record<string, unknown>[] = [];

const MiB = 1024 * 1024;
const IRIS_HEADER = "row_id,a,b,c,d";

beforeAll(async () => {
  services = await createTestServices();
  api = createTestApi(services, { chunkRows: 64, maxUploadBytes: 4096 * MiB });
  auth = await api.createTenant("hostile");
  const logger = pino({ level: "info" }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const app = createApp({ ...api.deps, logger });
  server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const address = server.address();
  port = typeof address === "object" && address ? address.port : 0;
  baseUrl = `http://127.0.0.1:${port}`;
  worker = await startTestWorker(services);
  for (const [name, bytes] of [
    ["iris", await readModel("iris")],
    ["ids", buildIdentityModel("int64", ["batch"])],
  ] as const) {
    const response = await fetch(`${baseUrl}/v1/models/${name}/versions`, {
      method: "POST",
      headers: { Authorization: auth, "Content-Type": "application/octet-stream" },
      body: bytes,
    });
    expect(response.status).toBe(201);
  }
});

afterAll(async () => {
  await worker?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await api?.close();
  await services?.cleanup();
});

function post(query: string, body: string | Uint8Array, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${baseUrl}/v1/jobs?${query}`, { method: "POST", headers: { Authorization: auth, "Content-Type": "text/csv", ...headers }, body });
}

async function problemOf(response: Response, status: number): Promise<Problem> {
  const text = await response.text();
  expect(response.status, text).toBe(status);
  expect(response.headers.get("content-type")).toBe("application/problem+json");
  return JSON.parse(text) as Problem;
}

async function acceptedJob(response: Response): Promise<Job> {
  const text = await response.text();
  expect(response.status, text).toBe(202);
  return JSON.parse(text) as Job;
}

async function finished(id: string): Promise<Job> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const job = (await (await fetch(`${baseUrl}/v1/jobs/${id}`, { headers: { Authorization: auth } })).json()) as Job;
    if (!["queued", "running"].includes(job.status)) return job;
    if (Date.now() > deadline) throw new Error(`job ${id} is still ${job.status}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function results(id: string): Promise<JobResults["data"]> {
  return ((await (await fetch(`${baseUrl}/v1/jobs/${id}/results?limit=1000`, { headers: { Authorization: auth } })).json()) as JobResults).data;
}

/** The API still serves a good upload. */
async function expectAlive(): Promise<void> {
  const job = await acceptedJob(await post("model=iris&id_column=row_id", `${IRIS_HEADER}\nr0,5.1,3.5,1.4,0.2\n`));
  expect((await finished(job.id)).status).toBe("succeeded");
}

/** `repeat` copies of `unit` gzip'd, as gzip members one after another (still one valid gzip stream). */
function gzipRepeated(head: string, unit: string, megabytes: number): Buffer {
  const member = gzipSync(Buffer.alloc(MiB, unit));
  return Buffer.concat([gzipSync(head), ...Array.from({ length: megabytes }, () => member)]);
}

async function storedJobs(): Promise<number> {
  return api.db.prisma.job.count();
}

describe("a multipart body cut short", () => {
  const form = (parts: string) => post("model=iris&ignore=a", parts, { "Content-Type": "multipart/form-data; boundary=B" });

  it("without its closing boundary: 422, and the API stays up", async () => {
    const before = await storedJobs();
    const cut = `--B\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\na,b,c,d\n1,2,3,4\n`;
    const problem = await problemOf(await form(cut), 422);
    expect(problem.detail).toMatch(/multipart body cannot be read: Unexpected end of form/);
    // Cut inside a part the API ignores, and inside a gzip'd file part.
    const ignored = `--B\r\nContent-Disposition: form-data; name="other"; filename="x.csv"\r\n\r\nx,y\n1,2\n`;
    expect((await problemOf(await form(ignored), 422)).code).toBe("validation_failed");
    const gzipped = Buffer.concat([
      Buffer.from(`--B\r\nContent-Disposition: form-data; name="file"; filename="a.csv.gz"\r\nContent-Type: application/gzip\r\n\r\n`),
      gzipSync("row_id,a,b,c,d\n0,5.1,3.5,1.4,0.2\n"),
    ]);
    expect((await problemOf(await post("model=iris&id_column=row_id", gzipped, { "Content-Type": "multipart/form-data; boundary=B" }), 422)).code).toBe(
      "validation_failed",
    );
    // A malformed part header, and a body that ends inside the headers of its first part.
    expect((await problemOf(await form(`--B\r\nContent-Disposition form-data\r\n\r\n`), 422)).code).toBe("validation_failed");
    expect((await problemOf(await form(`--B\r\nContent-Disp`), 422)).code).toBe("validation_failed");
    expect(await storedJobs()).toBe(before);
    await expectAlive();
  });

  it("a reader that takes the file stream late still gets the error, and nothing is left unhandled", async () => {
    const cut = `--B\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\na,b,c,d\n1,2,3,4\n`;
    const request = new Request("http://localhost/v1/jobs", {
      method: "POST",
      headers: { "Content-Type": "multipart/form-data; boundary=B" },
      body: cut,
    });
    const file = await openCsvStream(request, MiB);
    // The whole body is read (and the form found broken) before anyone reads the file.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const read = async () => {
      for await (const _ of file) {
        // drain
      }
    };
    await expect(read()).rejects.toMatchObject({ code: "validation_failed", message: expect.stringMatching(/Unexpected end of form/) as string });
  });

  it("a complete form still works, with its file as the field named file", async () => {
    const body = `--B\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n${IRIS_HEADER}\nr0,5.1,3.5,1.4,0.2\n\r\n--B--\r\n`;
    const job = await acceptedJob(await post("model=iris&id_column=row_id", body, { "Content-Type": "multipart/form-data; boundary=B" }));
    expect(job.counts.total).toBe(1);
  });
});

describe("work per upload is bounded", () => {
  it("a field-count bomb (300 MiB of ',' after the header, 300 KB of gzip) is refused at once, naming the line", async () => {
    const before = await storedJobs();
    const bomb = gzipRepeated("a,b,c,d\n", ",", 300);
    expect(bomb.length).toBeLessThan(MiB);
    const problem = await problemOf(await post("model=iris", bomb, { "Content-Encoding": "gzip" }), 422);
    expect(problem.detail).toMatch(/line 2 has more than 1004 fields \(the header has 4\)/);
    expect(problem.errors?.[0]?.field).toBe("line 2");
    // `1,` repeated: fields that also hold characters.
    const ones = gzipRepeated("row_id,a,b,c,d\nr0,5.1,3.5,1.4,0.2\n", "1,", 64);
    expect((await problemOf(await post("model=iris&id_column=row_id", ones, { "Content-Encoding": "gzip" }), 422)).detail).toMatch(/line 3 has more than/);
    // And in the header itself.
    expect((await problemOf(await post("model=iris", gzipRepeated("", ",", 64), { "Content-Encoding": "gzip" }), 422)).detail).toMatch(
      /the header \(line 1\) has more than 1000000 fields/,
    );
    expect(await storedJobs()).toBe(before);
    await expectAlive();
  });

  it("a row a few fields longer than the header is a failed row, and the job goes on", async () => {
    const job = await finished((await acceptedJob(await post("model=iris&id_column=row_id", `${IRIS_HEADER}\nr0,5.1,3.5,1.4,0.2\nr1,5.1,3.5,1.4,0.2,9,9\n`))).id);
    expect(job).toMatchObject({ status: "succeeded", counts: { total: 2, succeeded: 1, failed: 1 } });
    expect((await results(job.id))[1]?.error?.message).toBe("line 3: expected 5 columns, got 7");
  });

  it("a blank-line bomb (1 GiB of line breaks after one row) is refused at once", async () => {
    const before = await storedJobs();
    const bomb = gzipRepeated(`${IRIS_HEADER}\nr0,5.1,3.5,1.4,0.2\n`, "\n", 1024);
    const problem = await problemOf(await post("model=iris&id_column=row_id", bomb, { "Content-Encoding": "gzip" }), 422);
    expect(problem.detail).toMatch(/more than 10000 blank lines/);
    // Lines that parse to one empty field are skipped as well, so they count too.
    const quoted = gzipRepeated(`${IRIS_HEADER}\nr0,5.1,3.5,1.4,0.2\n`, '""\n\n', 1024);
    expect((await problemOf(await post("model=iris&id_column=row_id", quoted, { "Content-Encoding": "gzip" }), 422)).detail).toMatch(/more than 10000 blank lines/);
    // CRLF line breaks count once each, so 10,000 blank CRLF lines are still fine.
    const crlf = `${IRIS_HEADER}\r\nr0,5.1,3.5,1.4,0.2\r\n${"\r\n".repeat(10_000)}r1,6.7,3.1,4.7,1.5\r\n`;
    expect((await acceptedJob(await post("model=iris&id_column=row_id", crlf))).counts.total).toBe(2);
    expect(await storedJobs()).toBe(before + 1);
  });

  it("the bounds are configurable (MAX_CSV_EXTRA_FIELDS, MAX_CSV_BLANK_LINES)", async () => {
    const strict = createTestApi(services, { csv: { ...DEFAULT_CSV_LIMITS, maxExtraFields: 1, maxBlankLines: 2 } });
    try {
      const upload = (csv: string) =>
        strict.app.request("/v1/jobs?model=iris&id_column=row_id", { method: "POST", headers: { Authorization: auth, "Content-Type": "text/csv" }, body: csv });
      const oneMore = await acceptedJob(await upload(`${IRIS_HEADER}\nr0,5.1,3.5,1.4,0.2,9\n`));
      expect(oneMore.counts).toMatchObject({ total: 1 });
      expect((await problemOf(await upload(`${IRIS_HEADER}\nr0,5.1,3.5,1.4,0.2,9,9\n`), 422)).detail).toMatch(/line 2 has more than 6 fields/);
      expect((await acceptedJob(await upload(`${IRIS_HEADER}\n\nr0,5.1,3.5,1.4,0.2\n\n`))).counts.total).toBe(1);
      expect((await problemOf(await upload(`${IRIS_HEADER}\n\n\nr0,5.1,3.5,1.4,0.2\n\n`), 422)).detail).toMatch(/more than 2 blank lines/);
      // A lone "" before the header is a blank line to the guard as to the parser, not a 1-field header
      // that would hold the real header to 1 + MAX_CSV_EXTRA_FIELDS fields.
      expect((await acceptedJob(await upload(`""\n${IRIS_HEADER}\nr0,5.1,3.5,1.4,0.2\n`))).counts.total).toBe(1);
    } finally {
      await strict.close();
    }
  });

  it("a client that goes away mid-upload stops the work: its job is deleted and it is not logged as a 500", async () => {
    const before = await storedJobs();
    logs.length = 0;
    const socket = connect(port, "127.0.0.1");
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.on("error", () => {});
    socket.write(
      `POST /v1/jobs?model=iris&id_column=row_id HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${auth}\r\n` +
        "Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    const sendChunk = (text: string) => socket.write(`${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`);
    sendChunk(`${IRIS_HEADER}\n`);
    let row = 0;
    const rows = (count: number) => Array.from({ length: count }, () => `r${row++},5.1,3.5,1.4,0.2\n`).join("");
    // Enough rows for some chunks to be stored while the upload is still open.
    const deadline = Date.now() + 20_000;
    while ((await storedJobs()) === before || (await api.db.prisma.jobChunk.count()) === 0) {
      if (Date.now() > deadline) throw new Error("the upload never opened a job");
      sendChunk(rows(200));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    socket.destroy();
    const gone = Date.now() + 20_000;
    while ((await storedJobs()) !== before) {
      if (Date.now() > gone) throw new Error("the job of an upload whose client went away is still there");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // Nothing is written for it any more.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await storedJobs()).toBe(before);
    const wentAway = Date.now() + 5_000;
    while (!logs.some((line) => String(line.msg).includes("client went away")) && Date.now() < wentAway) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(logs.find((line) => String(line.msg).includes("client went away"))).toMatchObject({ level: 40 });
    expect(logs.filter((line) => line.msg === "unhandled error" || (line.msg === "request" && Number(line.status) >= 500))).toEqual([]);
    await expectAlive();
  });
});

describe("quotes inside unquoted fields", () => {
  it("are text: a row with one fails alone in a number column and is kept as an id, and the job goes on", async () => {
    const csv = [`height"in,a,b,c,d`, `5'10",5.1,3.5,1.4,0.2`, `r1,5"1,3.5,1.4,0.2`, `x"y,6.7,3.1,4.7,1.5`].join("\n");
    const job = await finished((await acceptedJob(await post(`model=iris&id_column=${encodeURIComponent('height"in')}`, csv))).id);
    expect(job).toMatchObject({ status: "succeeded", counts: { total: 3, succeeded: 2, failed: 1 } });
    const rows = await results(job.id);
    expect(rows.map((r) => r.id)).toEqual([`5'10"`, "r1", `x"y`]);
    expect(rows[1]?.error?.message).toBe(`line 3, column 'a': '5"1' is not a number`);
  });

  it("an unclosed quoted field is still a 422 naming the line, before anything is kept", async () => {
    const before = await storedJobs();
    const problem = await problemOf(await post("model=iris&id_column=row_id", `${IRIS_HEADER}\nr0,5.1,3.5,1.4,0.2\nr1,"6.7,3.1,4.7,1.5\n`), 422);
    expect(problem.detail).toMatch(/the CSV cannot be read: Quote Not Closed.*line/);
    expect(await storedJobs()).toBe(before);
  });
});

describe("files without a header", () => {
  it("a header of numbers alone is refused, saying how to send a headerless file", async () => {
    const before = await storedJobs();
    const problem = await problemOf(await post("model=iris", "5.1,3.5,1.4,0.2\n6.7,3.1,4.7,1.5\n"), 422);
    expect(problem.errors?.[0]?.field).toBe("header");
    expect(problem.detail).toMatch(/holds only numbers.*header=false/);
    expect(await storedJobs()).toBe(before);
  });

  it("header=false reads every line as a row, columns named by position", async () => {
    const job = await finished((await acceptedJob(await post("model=iris&header=false", "5.1,3.5,1.4,0.2\n6.7,3.1,4.7,1.5\n"))).id);
    expect(job).toMatchObject({ status: "succeeded", counts: { total: 2, succeeded: 2 } });
    expect((await results(job.id)).map((r) => r.outputs?.label)).toEqual([0, 1]);
    const withId = await finished((await acceptedJob(await post("model=iris&header=false&id_column=4", "5.1,3.5,1.4,0.2,a\n6.7,3.1,4.7,1.5,b\n"))).id);
    expect((await results(withId.id)).map((r) => [r.id, r.outputs?.label])).toEqual([["a", 0], ["b", 1]]);
    // A column named in the query that the file does not have.
    expect((await problemOf(await post("model=iris&header=false&id_column=row_id", "5.1,3.5,1.4,0.2,a\n"), 422)).errors?.[0]?.field).toBe("id_column");
  });

  it("header=false feeds a model of several inputs in its input order", () => {
    const inputs = [
      { name: "x", type: "float32", shape: ["batch", 2] },
      { name: "y", type: "float32", shape: ["batch", 3] },
    ];
    const mapping = mapColumns(["0", "1", "2", "3", "4", "5"], inputs, { idColumn: "0", ignore: [], map: {}, inModelOrder: true });
    expect(mapping.inputs.map((input) => [input.name, input.columns])).toEqual([["x", [1, 2]], ["y", [3, 4, 5]]]);
    expect(() => mapColumns(["0", "1", "2"], inputs, { ignore: [], map: {}, inModelOrder: true })).toThrow(/take 5 values per row in all/);
  });
});

describe("results exported as CSV", () => {
  it("never start a text cell with a formula: =, +, -, @, tab or CR get a leading ', numbers stay as they are", async () => {
    const ids = [`=cmd|' /C calc'!A0`, "+SUM(1+1)", "@SUM(A1)", "-2+3", "-1.5", "\tx", "plain"];
    const csv = `id,n\n${ids.map((id, i) => `"${id.replaceAll('"', '""')}",${i - 2}`).join("\n")}\n`;
    const job = await finished((await acceptedJob(await post("model=ids&id_column=id", csv))).id);
    expect(job.status).toBe("succeeded");
    const text = await (await fetch(`${baseUrl}/v1/jobs/${job.id}/results`, { headers: { Authorization: auth, Accept: "text/csv" } })).text();
    const lines = text.trimEnd().split("\n");
    expect(lines.slice(1)).toEqual([`'=cmd|' /C calc'!A0,-2,`, "'+SUM(1+1),-1,", "'@SUM(A1),0,", "'-2+3,1,", "-1.5,2,", "'\tx,3,", "plain,4,"]);
    // JSON results are not a spreadsheet: the ids come back as they were.
    expect((await results(job.id)).map((r) => r.id)).toEqual(ids);
  });
});
