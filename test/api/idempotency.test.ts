import type { Job } from "@coalesce/contracts";
import { claimIdempotencyKey, endAbandonedUploads, findIdempotencyKey, recordIdempotentJob, releaseAbandonedClaims, releaseIdempotencyKey } from "@coalesce/db";
import { describe, expect, it } from "vitest";
import { expectProblem, fixture, irisRows, uploadModel } from "../support/http.ts";
import { useApiSuite } from "../support/api-suite.ts";
import { createTestApi } from "../support/services.ts";

const suite = useApiSuite("idempotency", { iris: true });

async function submit(body: unknown, key?: string, who = suite.auth): Promise<Response> {
  return suite.api.app.request("/v1/jobs", {
    method: "POST",
    headers: { Authorization: who, "Content-Type": "application/json", ...(key === undefined ? {} : { "Idempotency-Key": key }) },
    body: JSON.stringify(body),
  });
}

async function jobCount(): Promise<number> {
  return suite.api.db.prisma.job.count();
}

describe("Idempotency-Key on POST /v1/jobs", () => {
  const body = { model: "iris", inputs: irisRows(3) };

  it("returns the original job for a repeat of the same request", async () => {
    const first = await submit(body, "key-1");
    expect(first.status).toBe(202);
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    const before = await jobCount();
    const again = await submit(body, "key-1");
    expect(again.status).toBe(202);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(((await again.json()) as Job).id).toBe(((await first.json()) as Job).id);
    expect(await jobCount()).toBe(before);
  });

  it("refuses the same key with another body", async () => {
    expect((await submit(body, "key-2")).status).toBe(202);
    const problem = await expectProblem(await submit({ ...body, inputs: irisRows(4) }, "key-2"), 422, "validation_failed");
    expect(problem.errors?.[0]?.field).toBe("Idempotency-Key");
  });

  it("creates one job for concurrent requests with one key", async () => {
    const before = await jobCount();
    const responses = await Promise.all(Array.from({ length: 6 }, () => submit(body, "key-3")));
    const ids = await Promise.all(responses.map(async (r) => ((await r.json()) as Job).id));
    expect(responses.map((r) => r.status)).toEqual(Array(6).fill(202));
    expect(new Set(ids).size).toBe(1);
    expect(await jobCount()).toBe(before + 1);
  });

  it("takes over a key whose first request died between claiming it and writing its job", async () => {
    // The claim a dead API process leaves: the same request's hash, no job, not seen for 10 s.
    expect((await submit(body, "key-template")).status).toBe(202);
    const { rows } = await suite.api.db.pool.query<{ tenant_id: string; request_hash: string }>(
      `SELECT tenant_id, request_hash FROM idempotency_keys WHERE key = 'key-template'`,
    );
    const template = rows[0] as { tenant_id: string; request_hash: string };
    await suite.api.db.pool.query(
      `INSERT INTO idempotency_keys (tenant_id, key, request_hash, created_at, seen_at) VALUES ($1, 'key-orphaned', $2, now() - interval '10 seconds', now() - interval '10 seconds')`,
      [template.tenant_id, template.request_hash],
    );
    const before = await jobCount();
    const retry = await submit(body, "key-orphaned");
    expect(retry.status).toBe(202);
    const job = (await retry.json()) as Job;
    expect(await jobCount()).toBe(before + 1);
    // The key is the retry's now: a repeat replays its job.
    const again = await submit(body, "key-orphaned");
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(((await again.json()) as Job).id).toBe(job.id);
  });

  it("keeps keys per tenant, and without a key every request is a new job", async () => {
    const other = await suite.api.createTenant("idempotency-other");
    expect((await uploadModel(suite.api, other, "iris", fixture("iris.onnx"))).status).toBe(201);
    const mine = (await (await submit(body, "shared")).json()) as Job;
    const theirs = (await (await submit(body, "shared", other)).json()) as Job;
    expect(theirs.id).not.toBe(mine.id);
    const a = (await (await submit(body)).json()) as Job;
    const b = (await (await submit(body)).json()) as Job;
    expect(a.id).not.toBe(b.id);
  });

  it("refuses an empty or overlong key", async () => {
    await expectProblem(await submit(body, "x".repeat(256)), 422, "validation_failed");
  });
});

describe("Idempotency-Key on CSV uploads", () => {
  const csv = "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n6.7,3.1,4.7,1.5\n";

  async function upload(body: string | FormData, key: string, query = "model=iris"): Promise<Response> {
    return suite.api.app.request(`/v1/jobs?${query}`, {
      method: "POST",
      headers: { Authorization: suite.auth, "Idempotency-Key": key, ...(typeof body === "string" ? { "Content-Type": "text/csv" } : {}) },
      body,
    });
  }

  function multipart(text: string): FormData {
    const form = new FormData();
    form.append("file", new Blob([text], { type: "text/csv" }), "rows.csv");
    return form;
  }

  it("returns the original job for the same file, even sent as multipart the second time", async () => {
    const first = await upload(csv, "csv-1");
    expect(first.status).toBe(202);
    const before = await jobCount();
    const again = await upload(multipart(csv), "csv-1");
    expect(again.status).toBe(202);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(((await again.json()) as Job).id).toBe(((await first.json()) as Job).id);
    expect(await jobCount()).toBe(before);
  });

  it("refuses the same key with another file or other options", async () => {
    expect((await upload(csv, "csv-2")).status).toBe(202);
    const otherFile = await upload(`${csv}4.9,3.0,1.4,0.2\n`, "csv-2");
    expect((await expectProblem(otherFile, 422, "validation_failed")).errors?.[0]?.field).toBe("Idempotency-Key");
    await expectProblem(await upload(csv, "csv-2", "model=iris&priority=interactive"), 422, "validation_failed");
    // A JSON request cannot reuse a CSV upload's key either.
    await expectProblem(await submit({ model: "iris", inputs: irisRows(2) }, "csv-2"), 422, "validation_failed");
  });

  it("frees the key when the upload is refused, so a corrected retry can use it", async () => {
    await expectProblem(await upload("a,b\n1,2\n", "csv-3"), 422, "validation_failed");
    expect((await upload(csv, "csv-3")).status).toBe(202);
  });

  it("answers 409 to a repeat while the first upload is still streaming", async () => {
    let push!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (controller) => void (push = controller) });
    push.enqueue(new TextEncoder().encode(csv));
    const first = suite.api.app.request("/v1/jobs?model=iris", {
      method: "POST",
      headers: { Authorization: suite.auth, "Idempotency-Key": "csv-4", "Content-Type": "text/csv" },
      body,
      duplex: "half",
    } as RequestInit);
    // The first upload has claimed the key once its first rows are stored.
    for (let i = 0; i < 200 && (await suite.api.db.pool.query(`SELECT 1 FROM idempotency_keys WHERE key = 'csv-4'`)).rowCount === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await expectProblem(await upload(csv, "csv-4"), 409, "conflict");
    push.close();
    expect((await first).status).toBe(202);
    expect((await upload(csv, "csv-4")).headers.get("idempotent-replayed")).toBe("true");
  });

  /** A streaming upload with `key` whose file goes on until `close()`; resolves once the key is claimed. */
  async function openUpload(app: { request: typeof suite.api.app.request }, key: string, firstPart: string) {
    let push!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (controller) => void (push = controller) });
    push.enqueue(new TextEncoder().encode(firstPart));
    const answer = app.request("/v1/jobs?model=iris", {
      method: "POST",
      headers: { Authorization: suite.auth, "Idempotency-Key": key, "Content-Type": "text/csv" },
      body,
      duplex: "half",
    } as RequestInit);
    for (let i = 0; i < 500 && (await suite.api.db.pool.query(`SELECT 1 FROM idempotency_keys WHERE key = $1`, [key])).rowCount === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return { answer, send: (text: string) => push.enqueue(new TextEncoder().encode(text)), close: () => push.close() };
  }

  it("a slow first upload whose key a retry took over gets 409 and keeps nothing; the key stays the retry's", async () => {
    // The staleness bound at 1 ms (UPLOAD_STALE_MS, at least 10 s in life): a first upload is stale
    // as soon as it has not said it is alive, as a stalled API process would be.
    const stale = createTestApi(suite.services, { uploadStaleMs: 1 });
    try {
      const before = await jobCount();
      const first = await openUpload(stale.app, "csv-5", csv);
      await suite.api.db.pool.query(`UPDATE idempotency_keys SET seen_at = now() - interval '1 hour' WHERE key = 'csv-5'`);
      const retry = await stale.app.request("/v1/jobs?model=iris", {
        method: "POST",
        headers: { Authorization: suite.auth, "Idempotency-Key": "csv-5", "Content-Type": "text/csv" },
        body: csv,
      });
      expect(retry.status).toBe(202);
      const retried = (await retry.json()) as Job;
      // The first upload's file ends after its key was taken over: it is not the key's, so not kept.
      first.close();
      const lost = await expectProblem(await first.answer, 409, "conflict");
      expect(lost.detail).toMatch(/taken over by a retry/);
      expect(await jobCount()).toBe(before + 1);
      const again = await upload(csv, "csv-5");
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      expect(((await again.json()) as Job).id).toBe(retried.id);
    } finally {
      await stale.close();
    }
  });

  it("an upload the sweep ended as interrupted while it was still read gets 409, and the failed job stays as the sweep left it", async () => {
    const rows = irisRows(100).map((row) => row.features.join(",")).join("\n");
    const upload1 = await openUpload(suite.api.app, "csv-6", `sepal_length,sepal_width,petal_length,petal_width\n${rows}\n`);
    // Its first chunk (64 rows here) stored, then the sweep takes it for dead (as after a stall).
    let ended: { jobId: string }[] = [];
    for (let i = 0; i < 500 && ended.length === 0; i++) {
      ended = await endAbandonedUploads(suite.api.db, 0);
      if (ended.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(ended).toHaveLength(1);
    const jobId = ended[0]?.jobId as string;
    await releaseAbandonedClaims(suite.api.db, 0);
    upload1.send(`${rows}\n`);
    upload1.close();
    await expectProblem(await upload1.answer, 409, "conflict");
    const job = (await (await suite.api.app.request(`/v1/jobs/${jobId}`, { headers: { Authorization: suite.auth } })).json()) as Job;
    expect(job).toMatchObject({ status: "failed", error: { code: "upload_interrupted" } });
    // Its count is the rows the sweep found stored, not the whole file's.
    expect(job.counts.total).toBe(job.counts.received);
    expect(job.counts.total).toBeLessThan(200);
    // The key was freed, not tied to the failed job: a retry starts afresh.
    const retry = await upload(csv, "csv-6");
    expect(retry.status).toBe(202);
    expect(retry.headers.get("idempotent-replayed")).toBeNull();
  });

  it("a CSV upload's key names its job from the moment the job is sealed", async () => {
    const response = await upload(csv, "csv-7");
    expect(response.status).toBe(202);
    const job = (await response.json()) as Job;
    const tenantId = (await suite.api.db.pool.query<{ tenant_id: string }>(`SELECT tenant_id FROM jobs WHERE id = $1`, [job.id])).rows[0]?.tenant_id as string;
    expect(await findIdempotencyKey(suite.api.db, tenantId, "csv-7")).toMatchObject({ jobId: job.id });
    expect(job.counts.total).toBe(2);
  });
});

describe("an Idempotency-Key claim is its request's alone", () => {
  it("a claim freed as abandoned and claimed again cannot be tied, or freed, by its first request", async () => {
    const [a, b] = await Promise.all([0, 1].map(async () => ((await submit({ model: "iris", inputs: irisRows(1) })).json() as Promise<Job>).then((job) => job.id)));
    const tenantId = (await suite.api.db.pool.query<{ tenant_id: string }>(`SELECT tenant_id FROM jobs WHERE id = $1`, [a])).rows[0]?.tenant_id as string;
    const first = await claimIdempotencyKey(suite.api.db, tenantId, "json-claim", "hash-a");
    if (first.kind !== "claimed") throw new Error(`expected a claim, got ${first.kind}`);
    // The first request went unseen (a write stuck for longer than UPLOAD_STALE_MS): the sweep frees its key.
    await suite.api.db.pool.query(`UPDATE idempotency_keys SET seen_at = now() - interval '1 hour' WHERE key = 'json-claim'`);
    expect(await releaseAbandonedClaims(suite.api.db, 1)).toBeGreaterThan(0);
    // Its retry, with the same body, claims the key afresh.
    const second = await claimIdempotencyKey(suite.api.db, tenantId, "json-claim", "hash-a");
    if (second.kind !== "claimed") throw new Error(`expected a claim, got ${second.kind}`);
    expect(second.claim.claimedAt.getTime()).not.toBe(first.claim.claimedAt.getTime());
    // The slow first request can neither free the retry's claim nor tie the key to its own job.
    await releaseIdempotencyKey(suite.api.db, first.claim);
    expect(await recordIdempotentJob(suite.api.db, first.claim, a as string)).toBe(false);
    expect(await recordIdempotentJob(suite.api.db, second.claim, b as string)).toBe(true);
    expect(await findIdempotencyKey(suite.api.db, tenantId, "json-claim")).toMatchObject({ jobId: b });
  });
});
