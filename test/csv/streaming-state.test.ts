// While a CSV upload streams, the job says what is true: rows received and scored so far, the total
// unknown; and the upload's 202 shows the job as it is when sent.
import type { Job, JobList } from "@coalesce/contracts";
import { endAbandonedUploads, openUploadJob } from "@coalesce/db";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { readModel } from "../support/fixtures.ts";
import { uploadModel } from "../support/http.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "../support/services.ts";
import { startTestWorker } from "../support/worker.ts";

let services: TestServices;
let api: TestApi;
let worker: RunningWorker;
let auth: string;

beforeAll(async () => {
  services = await createTestServices();
  api = createTestApi(services, { chunkRows: 50 });
  auth = await api.createTenant("streaming");
  expect((await uploadModel(api, auth, "iris", await readModel("iris"))).status).toBe(201);
  worker = await startTestWorker(services);
});

afterAll(async () => {
  await worker?.close();
  await api?.close();
  await services?.cleanup();
});

async function latestJob(): Promise<Job | undefined> {
  const list = (await (await api.app.request("/v1/jobs?limit=1", { headers: { Authorization: auth } })).json()) as JobList;
  return list.data[0];
}

const rows = (from: number, count: number) => Array.from({ length: count }, (_, i) => `r${from + i},5.1,3.5,1.4,0.2\n`).join("");

describe("a CSV upload while it streams", () => {
  it("shows rows received and scored so far with the total unknown, and its 202 the job as it is at the end", async () => {
    let send!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (controller) => void (send = controller) });
    const encoder = new TextEncoder();
    const response = Promise.resolve(
      api.app.request("/v1/jobs?model=iris&id_column=row_id", {
        method: "POST",
        headers: { Authorization: auth, "Content-Type": "text/csv" },
        body,
        duplex: "half",
      } as RequestInit),
    );
    // Ten full chunks and part of one (the parser may hold the last line until more bytes come).
    send.enqueue(encoder.encode(`row_id,a,b,c,d\n${rows(0, 510)}`));

    // Wait for the workers to score the rows sent so far while the file is still open.
    let streaming: Job | undefined;
    const deadline = Date.now() + 30_000;
    while (!streaming) {
      const job = await latestJob();
      if (job && job.counts.succeeded >= 500) streaming = job;
      else if (Date.now() > deadline) throw new Error(`the rows sent were not scored while the upload streamed: ${JSON.stringify(job)}`);
      else await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(streaming).toMatchObject({ status: "running", counts: { total: null, failed: 0 }, eta_seconds: null });
    // Rows received are recorded every few seconds, so they may lag what is scored by one beat.
    const received = Date.now() + 10_000;
    while (((await latestJob())?.counts.received ?? 0) < 500) {
      if (Date.now() > received) throw new Error("the rows received were never shown");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const now = (await latestJob()) as Job;
    expect(now.counts).toMatchObject({ total: null, received: 500, succeeded: 500 });
    // All rows received are done, but more may come.
    expect(now.progress).toBe(0.99);

    send.enqueue(encoder.encode(rows(510, 10)));
    send.close();
    const accepted = (await (await response).json()) as Job;
    expect(accepted.id).toBe(streaming.id);
    // Re-read after sealing: most of its rows were scored before the file ended.
    expect(accepted.counts.total).toBe(520);
    expect(accepted.counts.received).toBe(520);
    expect(accepted.counts.succeeded).toBeGreaterThanOrEqual(500);
  });
});

describe("an Idempotency-Key held by an upload", () => {
  it("answers 409 while the upload may be alive, and is free once it has not been seen for the staleness bound", async () => {
    const { rows: tenants } = await api.db.pool.query<{ tenant_id: string }>("SELECT tenant_id FROM jobs LIMIT 1");
    const tenantId = tenants[0]?.tenant_id as string;
    // A claim as an upload leaves it when its API process dies before the file has ended.
    await api.db.pool.query(`INSERT INTO idempotency_keys (tenant_id, key, request_hash) VALUES ($1, 'held', 'csv-upload-in-progress')`, [tenantId]);
    const retry = () =>
      api.app.request("/v1/jobs?model=iris&id_column=row_id", {
        method: "POST",
        headers: { Authorization: auth, "Content-Type": "text/csv", "Idempotency-Key": "held" },
        body: `row_id,a,b,c,d\n${rows(0, 3)}`,
      });
    expect((await retry()).status).toBe(409);
    await api.db.pool.query(`UPDATE idempotency_keys SET seen_at = now() - interval '2 minutes' WHERE key = 'held'`);
    const response = await retry();
    expect(response.status, await response.clone().text()).toBe(202);
    const job = (await response.json()) as Job;
    expect(job.counts.total).toBe(3);
    // And the key now replays that job.
    const again = await retry();
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(((await again.json()) as Job).id).toBe(job.id);
  });
});

describe("the upload sweep", () => {
  it("ends an abandoned upload once, however many workers sweep at the same moment", async () => {
    const { rows } = await api.db.pool.query<{ tenant_id: string; model_version_id: string }>("SELECT tenant_id, model_version_id FROM jobs LIMIT 1");
    const { tenant_id: tenantId, model_version_id: modelVersionId } = rows[0] as { tenant_id: string; model_version_id: string };
    const open = (await openUploadJob(api.db, { tenantId, modelVersionId, priority: "batch", idColumn: null }))!;
    const alive = (await openUploadJob(api.db, { tenantId, modelVersionId, priority: "batch", idColumn: null }))!;
    await api.db.pool.query(`UPDATE jobs SET upload_seen_at = now() - interval '10 minutes' WHERE id = $1`, [open.id]);
    const swept = await Promise.all(Array.from({ length: 4 }, () => endAbandonedUploads(api.db, 60_000)));
    expect(swept.flat().map((ended) => ended.jobId)).toEqual([open.id]);
    const job = (await (await api.app.request(`/v1/jobs/${open.id}`, { headers: { Authorization: auth } })).json()) as Job;
    expect(job).toMatchObject({ status: "failed", counts: { total: 0, received: 0 }, error: { code: "upload_interrupted" } });
    expect(job.error?.message).toMatch(/0 rows had been received; resubmit the file/);
    // The upload still seen alive is left alone.
    expect(((await (await api.app.request(`/v1/jobs/${alive.id}`, { headers: { Authorization: auth } })).json()) as Job).status).toBe("queued");
  });
});
