// Hostile CSV uploads against a real API process (`npm start`'s entry point), since the worst of them
// crash or exhaust a process rather than fail a request: each must be a 4xx problem+json (or, for a
// row that does not parse, a 202 with that row failed), the process must still serve afterwards, and
// its peak memory (VmHWM from /proc) must stay bounded. Sizes are kept to a few MB of gzip so that CI
// can afford them; the shapes are the ones that took the API down at hundreds of MB.
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { API_MAIN, freePort, startProcess, stopProcess, waitUntilReady, type ServiceProcess } from "../../scripts/processes.ts";
import { readModel } from "../support/fixtures.ts";
import { createTestServices, type TestServices } from "../support/services.ts";

const KEY = "csk_hostile_0123456789abcdef";
/** Generous: the API idles near 150 MB; a field array or a buffered upload of these bombs is many times that. */
const MAX_PEAK_RSS_MB = 400;
const MiB = 1024 * 1024;

let services: TestServices;
let api: ServiceProcess;
let baseUrl: string;
let output = "";

/** Starts the API; again after a case crashed it, so that each case is judged on its own (the crash is that case's failure). */
async function ensureApi(): Promise<void> {
  if (api) {
    const health = await fetch(`${baseUrl}/healthz`, { signal: AbortSignal.timeout(5_000) }).catch(() => null);
    if (health?.status === 200) return;
    crashes += 1;
    // A crashing process may take a moment to exit; make sure it is gone before taking its port.
    api.child.kill("SIGKILL");
    await api.exited;
  }
  output = "";
  api = startProcess("api", API_MAIN, { ...services.env, PORT: String(port), BOOTSTRAP_API_KEY: KEY, LOG_LEVEL: "warn" }, "pipe");
  api.child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  api.child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  await waitUntilReady(baseUrl, [api]);
}

let port = 0;
let crashes = 0;
let peakMb = 0;

beforeAll(async () => {
  services = await createTestServices();
  port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  await ensureApi();
  const model = await fetch(`${baseUrl}/v1/models/iris/versions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/octet-stream" },
    body: await readModel("iris"),
  });
  expect(model.status, await model.text()).toBe(201);
}, 120_000);

beforeEach(ensureApi, 120_000);

afterEach(() => {
  if (api.child.exitCode === null && api.child.signalCode === null) peakMb = Math.max(peakMb, peakRssMb());
});

afterAll(async () => {
  if (api) await stopProcess(api);
  await services?.cleanup();
});

/** Peak resident memory of the API process, in MB. */
function peakRssMb(): number {
  const status = readFileSync(`/proc/${api.child.pid}/status`, "utf8");
  // A process that has exited but is not yet reaped has no VmHWM line.
  const kb = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

type Upload = { query?: string; contentType?: string; encoding?: string; body: Uint8Array | string };

async function upload({ query = "model=iris", contentType = "text/csv", encoding, body }: Upload): Promise<{ status: number; type: string; text: string }> {
  const headers: Record<string, string> = { Authorization: `Bearer ${KEY}`, "Content-Type": contentType };
  if (encoding) headers["Content-Encoding"] = encoding;
  const response = await fetch(`${baseUrl}/v1/jobs?${query}`, { method: "POST", headers, body, signal: AbortSignal.timeout(90_000) });
  return { status: response.status, type: response.headers.get("content-type") ?? "", text: await response.text() };
}

async function expectAlive(): Promise<void> {
  expect(api.child.exitCode, `the API exited:\n${output.slice(-3000)}`).toBeNull();
  const health = await fetch(`${baseUrl}/healthz`).catch((error: unknown) => error as Error);
  expect(health instanceof Response && health.status === 200, `GET /healthz after the upload:\n${output.slice(-3000)}`).toBe(true);
}

/** A 4xx problem+json whose detail (or `errors`) says what is wrong. */
function expectClientProblem(answer: { status: number; type: string; text: string }, statuses: number[] = [400, 413, 415, 422]): void {
  expect(statuses, answer.text.slice(0, 500)).toContain(answer.status);
  expect(answer.type).toMatch(/^application\/problem\+json/);
  const problem = JSON.parse(answer.text) as { status: number; detail: string; code: string };
  expect(problem.status).toBe(answer.status);
  expect(problem.detail.length).toBeGreaterThan(0);
}

const HEADER = "a,b,c,d\n";

function truncatedGzip(): Buffer {
  const rows = Array.from({ length: 20_000 }, (_, i) => `${(i * 7919) % 1000}.${i % 97},${(i * 104729) % 1000},${i % 13}.5,${(i * 31) % 7}`).join("\n");
  const whole = gzipSync(Buffer.from(`${HEADER}${rows}\n`));
  return whole.subarray(0, Math.floor(whole.length / 2));
}
const latin = (text: string) => Uint8Array.from(text, (char) => char.charCodeAt(0));
const peaks: [string, number][] = [];

describe("CSV uploads that took the API down", () => {
  it("a multipart body that ends without its closing boundary: 4xx, and the process stays up", async () => {
    const body = '--B\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\na,b,c,d\n1,2,3,4\n';
    expectClientProblem(await upload({ contentType: "multipart/form-data; boundary=B", body }), [400, 422]);
    await expectAlive();
  });

  it("a field-count bomb (one record of 16 MiB of delimiters, 16 KB gzip): 422, bounded memory", async () => {
    const body = gzipSync(Buffer.concat([Buffer.from(`${HEADER}1,2,3,4\n`), Buffer.alloc(16 * MiB, ",")]));
    expectClientProblem(await upload({ body, encoding: "gzip" }), [413, 422]);
    await expectAlive();
    peaks.push(["field-count bomb", peakRssMb()]);
  });

  it("a field-count bomb of `1,` (8 MiB of one-digit fields): 422, bounded memory", async () => {
    const body = gzipSync(Buffer.concat([Buffer.from(HEADER), Buffer.from("1,".repeat(4 * MiB))]));
    expectClientProblem(await upload({ body, encoding: "gzip" }), [413, 422]);
    await expectAlive();
    peaks.push(["1, field bomb", peakRssMb()]);
  });

  it("a blank-line bomb (one row, then 48 MiB of blank lines, 48 KB gzip): 422, not a job", async () => {
    const body = gzipSync(Buffer.concat([Buffer.from(`${HEADER}1,2,3,4\n`), Buffer.alloc(48 * MiB, "\n")]));
    expectClientProblem(await upload({ body, encoding: "gzip" }), [413, 422]);
    await expectAlive();
    peaks.push(["blank-line bomb", peakRssMb()]);
  });
});

describe("CSV bodies that answered 500", () => {
  it("a stray quote inside an unquoted field of a row (5'10\"): 202, that row failed and the job goes on", async () => {
    const answer = await upload({ body: `${HEADER}5'10",1,2,3\n1,2,3,4\n` });
    expect(answer.status, answer.text).toBe(202);
    await expectAlive();
  });

  it("a stray quote in the header: read as part of the name (202) or refused naming the header (422), never a 5xx", async () => {
    const answer = await upload({ body: `a,b"x,c,d\n1,2,3,4\n` });
    if (answer.status !== 202) expectClientProblem(answer, [422]);
    await expectAlive();
  });

  it("a header made only of numbers: 422 that says how to send a headerless file", async () => {
    const answer = await upload({ body: "5.1,3.5,1.4,0.2\n6.7,3.1,4.7,1.5\n" });
    expectClientProblem(answer, [422]);
    expect(answer.text).toContain("header=false");
  });

  it.each([
    ["NUL bytes in a row", latin(`${HEADER}1,2,\u0000,4\n1,2,3,4\n`)],
    ["NUL bytes in the header", latin(`a,b\u0000,c,d\n1,2,3,4\n`)],
    ["invalid UTF-8 in a row", latin(`${HEADER}1,2,\u00ff\u00fe,4\n1,2,3,4\n`)],
    ["invalid UTF-8 in the header", latin(`a\u00ff,b,c,d\n1,2,3,4\n`)],
    ["only a header", HEADER],
    ["nothing at all", ""],
    ["CR line ends", "a,b,c,d\r1,2,3,4\r"],
    ["an unterminated quoted field", `${HEADER}"1,2,3,4\n`],
  ])("%s: a 202 or a 4xx problem, never a 5xx", async (_what, body) => {
    const answer = await upload({ body });
    expect(answer.status, answer.text.slice(0, 500)).toBeLessThan(500);
    if (answer.status !== 202) expectClientProblem(answer);
    await expectAlive();
  });

  it.each([
    ["gzip that is not gzip", { body: `${HEADER}1,2,3,4\n`, encoding: "gzip" }],
    // Cut in the middle of its data (rows that do not repeat, so the deflate stream is long): a partial file is not the file.
    ["truncated gzip", { body: truncatedGzip(), encoding: "gzip" }],
    ["an unknown Content-Encoding", { body: `${HEADER}1,2,3,4\n`, encoding: "br" }],
    ["multipart without a boundary", { body: `${HEADER}1,2,3,4\n`, contentType: "multipart/form-data" }],
    ["multipart without a file field", { body: '--B\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--B--\r\n', contentType: "multipart/form-data; boundary=B" }],
    ["an id_column with a NUL", { body: `id,${HEADER}`.replace("\n", "") + "\n1,1,2,3,4\n", query: "model=iris&id_column=%00" }],
    // The column exists, so the name would be stored with the job (Postgres text refuses the NUL).
    ["an id_column with a NUL that names a header column", { body: latin("id\u0000,a,b,c,d\n1,1,2,3,4\n"), query: "model=iris&id_column=id%00" }],
    ["a model name with a NUL", { body: `${HEADER}1,2,3,4\n`, query: "model=ir%00is" }],
    ["max_errors out of range", { body: `${HEADER}1,2,3,4\n`, query: "model=iris&max_errors=-1" }],
  ] satisfies [string, Upload][])("%s: a 4xx problem", async (_what, request) => {
    expectClientProblem(await upload(request));
    await expectAlive();
  });
});

describe("the API after the corpus", () => {
  it(`is alive and its peak RSS stayed under ${MAX_PEAK_RSS_MB} MB`, async () => {
    await expectAlive();
    const peak = Math.max(peakMb, peakRssMb());
    console.log(
      `csv bombs: API peak RSS (VmHWM) ${peak} MB over the corpus; after each bomb: ${peaks.map(([what, mb]) => `${what} ${mb} MB`).join(", ")}; ` +
        `restarts after a crash: ${crashes}`,
    );
    expect(crashes, "cases above crashed the API").toBe(0);
    expect(peak).toBeLessThan(MAX_PEAK_RSS_MB);
  });
});
