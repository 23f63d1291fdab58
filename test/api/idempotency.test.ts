import type { Job } from "@coalesce/contracts";
import { describe, expect, it } from "vitest";
import { expectProblem, fixture, irisRows, uploadModel } from "../support/http.ts";
import { useApiSuite } from "../support/api-suite.ts";

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
});
