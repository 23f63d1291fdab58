// The webhook API without a worker: validation, the SSRF guard at registration, tenant
// isolation, and the outbox triggers (what they write, and that a rolled-back change writes nothing).
import type { CreatedWebhook, Job, WebhookEndpoint } from "@coalesce/contracts";
import { expireJobs } from "@coalesce/db";
import { describe, expect, it } from "vitest";
import { expectProblem, requestJson } from "../support/http.ts";
import { irisInputs, irisTenant, useIrisSuite } from "../support/iris-suite.ts";
import { TEST_WEBHOOK_POLICY } from "../support/services.ts";

const suite = useIrisSuite("webhooks-api");

async function register(body: unknown, auth = suite.auth): Promise<Response> {
  return requestJson(suite.api, auth, "POST", "/v1/webhooks", body);
}

/** Runs `body` with the API's webhook policy changed, then restores the tests' policy. */
async function withPolicy<T>(policy: typeof TEST_WEBHOOK_POLICY, body: () => Promise<T>): Promise<T> {
  suite.api.deps.webhookPolicy = policy;
  try {
    return await body();
  } finally {
    suite.api.deps.webhookPolicy = TEST_WEBHOOK_POLICY;
  }
}

async function outbox(jobId: string): Promise<{ type: string; target: string; url: string }[]> {
  const { rows } = await suite.api.db.pool.query<{ type: string; target: string; url: string }>(
    `SELECT e.type, d.target, d.url FROM webhook_events e JOIN webhook_deliveries d ON d.event_id = e.id WHERE e.job_id = $1 ORDER BY e.created_at, d.target`,
    [jobId],
  );
  return rows;
}

async function submit(auth: string, extra: Record<string, unknown> = {}): Promise<Job> {
  const response = await requestJson(suite.api, auth, "POST", "/v1/jobs", { model: "iris", inputs: irisInputs(suite, 2), ...extra });
  expect(response.status).toBe(202);
  return (await response.json()) as Job;
}

describe("POST /v1/webhooks refuses URLs it could never deliver to", () => {
  const https = { allowHttp: false, allowlist: [] };
  it.each([
    ["http without WEBHOOK_ALLOW_HTTP", "http://hooks.example.com/x", https, /https/],
    ["a private address", "https://10.0.0.1/hooks", https, /10\.0\.0\.1/],
    ["the cloud metadata address", "https://169.254.169.254/latest/meta-data", https, /169\.254\.169\.254/],
    ["an IPv4-mapped loopback", "https://[::ffff:127.0.0.1]/hooks", https, /127\.0\.0\.1/],
    ["a CGNAT address", "https://100.64.0.1/hooks", https, /100\.64\.0\.1/],
    ["a name that resolves to loopback", "https://localhost/hooks", https, /loopback|127\.0\.0\.1|::1/],
    ["credentials in the URL", "https://user:pass@hooks.example.com/x", https, /credential|user/i],
    ["not a URL", "hooks.example.com", https, /URL/i],
  ])("%s", async (_label, url, policy, message) => {
    const response = await withPolicy(policy, () => register({ url }));
    const problem = await expectProblem(response, 422, "validation_failed");
    expect(problem.errors?.[0]).toMatchObject({ field: "url", message: expect.stringMatching(message) });
  });

  it("accepts loopback only when it is allowlisted (as these tests do)", async () => {
    expect((await register({ url: "http://127.0.0.1:9/hooks" })).status).toBe(201);
  });

  it("refuses an unknown event type, naming it", async () => {
    const problem = await expectProblem(await register({ url: "http://127.0.0.1:9/x", events: ["job.done"] }), 422, "validation_failed");
    expect(problem.errors?.[0]?.field).toBe("events[0]");
  });

  it("checks a job's webhook_url the same way", async () => {
    const response = await withPolicy(https, () =>
      requestJson(suite.api, suite.auth, "POST", "/v1/jobs", { model: "iris", inputs: irisInputs(suite, 1), webhook_url: "https://192.168.1.10/x" }),
    );
    const problem = await expectProblem(response, 422, "validation_failed");
    expect(problem.errors?.[0]).toMatchObject({ field: "webhook_url", message: expect.stringContaining("192.168.1.10") });
  });
});

describe("webhook endpoints API", () => {
  it("lists, changes and deletes a tenant's endpoints; other tenants see none of them", async () => {
    const auth = await suite.api.createTenant("wh-crud");
    const created = (await (await register({ url: "http://127.0.0.1:9/a", events: ["job.failed"] }, auth)).json()) as CreatedWebhook;
    const patched = await requestJson(suite.api, auth, "PATCH", `/v1/webhooks/${created.id}`, { events: ["job.failed", "job.progress"], enabled: false });
    expect(((await patched.json()) as WebhookEndpoint)).toMatchObject({ events: ["job.failed", "job.progress"], enabled: false, disabled_reason: expect.any(String) });

    const other = await suite.api.createTenant("wh-crud-other");
    await expectProblem(await requestJson(suite.api, other, "GET", `/v1/webhooks/${created.id}`), 404, "not_found");
    await expectProblem(await requestJson(suite.api, other, "DELETE", `/v1/webhooks/${created.id}`), 404, "not_found");
    expect(((await (await requestJson(suite.api, other, "GET", "/v1/webhooks")).json()) as { data: unknown[] }).data).toEqual([]);

    expect((await requestJson(suite.api, auth, "DELETE", `/v1/webhooks/${created.id}`)).status).toBe(204);
    await expectProblem(await requestJson(suite.api, auth, "GET", `/v1/webhooks/${created.id}`), 404, "not_found");
  });

  it("refuses a rotation overlap beyond 7 days", async () => {
    const created = (await (await register({ url: "http://127.0.0.1:9/b" })).json()) as CreatedWebhook;
    const response = await requestJson(suite.api, suite.auth, "POST", `/v1/webhooks/${created.id}/rotate-secret`, { overlap_seconds: 9_999_999 });
    const problem = await expectProblem(response, 422, "validation_failed");
    expect(problem.errors?.[0]?.field).toBe("overlap_seconds");
  });

  it("keeps one default secret per tenant until it is rotated", async () => {
    const auth = await suite.api.createTenant("wh-default");
    const read = async () => (await (await requestJson(suite.api, auth, "GET", "/v1/webhooks/default-secret")).json()) as { secret: string };
    const first = await read();
    expect((await read()).secret).toBe(first.secret);
    const rotated = (await (await requestJson(suite.api, auth, "POST", "/v1/webhooks/default-secret/rotate")).json()) as { secret: string; previous_secret_expires_at: string };
    expect(rotated.secret).not.toBe(first.secret);
    expect(rotated.previous_secret_expires_at).toEqual(expect.any(String));
  });
});

describe("the outbox", () => {
  it("writes one event per final state, with a delivery per subscribed endpoint and the job's webhook_url", async () => {
    const auth = await irisTenant(suite, "wh-outbox");
    await register({ url: "http://127.0.0.1:9/all" }, auth);
    await register({ url: "http://127.0.0.1:9/failed-only", events: ["job.failed"] }, auth);
    const job = await submit(auth, { webhook_url: "http://127.0.0.1:9/job" });
    expect(await outbox(job.id)).toEqual([]);
    expect((await requestJson(suite.api, auth, "POST", `/v1/jobs/${job.id}/cancel`)).status).toBe(200);
    expect(await outbox(job.id)).toEqual([
      { type: "job.cancelled", target: "endpoint", url: "http://127.0.0.1:9/all" },
      { type: "job.cancelled", target: "job_url", url: "http://127.0.0.1:9/job" },
    ]);
  });

  it("writes job.expired when the expiry sweep ends a job", async () => {
    const auth = await irisTenant(suite, "wh-expired");
    await register({ url: "http://127.0.0.1:9/expired", events: ["job.expired"] }, auth);
    const job = await submit(auth, { expires_after: 3600 });
    await suite.api.db.pool.query(`UPDATE jobs SET expires_at = now() - interval '1 second' WHERE id = $1`, [job.id]);
    expect((await expireJobs(suite.api.db)).map((e) => e.jobId)).toContain(job.id);
    expect(await outbox(job.id)).toEqual([{ type: "job.expired", target: "endpoint", url: "http://127.0.0.1:9/expired" }]);
  });

  it("writes nothing for a change that rolls back", async () => {
    const auth = await irisTenant(suite, "wh-rollback");
    await register({ url: "http://127.0.0.1:9/rollback" }, auth);
    const job = await submit(auth);
    const client = await suite.api.db.pool.connect();
    try {
      await client.query("BEGIN");
      await client.query(`UPDATE jobs SET status = 'cancelled' WHERE id = $1`, [job.id]);
      expect((await client.query(`SELECT count(*)::int AS n FROM webhook_events WHERE job_id = $1`, [job.id])).rows[0].n).toBe(1);
      await client.query("ROLLBACK");
    } finally {
      client.release();
    }
    expect(await outbox(job.id)).toEqual([]);
  });

  it("writes job.progress at most once every 5 seconds per running job, for endpoints that opted in", async () => {
    const auth = await irisTenant(suite, "wh-progress");
    await register({ url: "http://127.0.0.1:9/progress", events: ["job.progress"] }, auth);
    const job = await submit(auth);
    const step = () => suite.api.db.pool.query(`UPDATE jobs SET status = 'running', succeeded_rows = succeeded_rows + 1 WHERE id = $1`, [job.id]);
    await step();
    await step();
    expect((await outbox(job.id)).map((e) => e.type)).toEqual(["job.progress"]);
    await suite.api.db.pool.query(`UPDATE jobs SET progress_notified_at = now() - interval '6 seconds' WHERE id = $1`, [job.id]);
    await step();
    expect((await outbox(job.id)).map((e) => e.type)).toEqual(["job.progress", "job.progress"]);
  });
});

describe("webhook backlog metrics", () => {
  it("the API's /metrics counts the deliveries waiting to go out", async () => {
    const auth = await irisTenant(suite, "wh-metrics");
    await register({ url: "http://127.0.0.1:9/metrics" }, auth);
    const job = await submit(auth);
    await requestJson(suite.api, auth, "POST", `/v1/jobs/${job.id}/cancel`);
    // No worker runs in this file, so the delivery stays pending.
    const text = await (await suite.api.app.request("/metrics")).text();
    const pending = Number(/^coalesce_webhook_deliveries_pending (\d+)$/m.exec(text)?.[1]);
    expect(pending).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^coalesce_webhook_oldest_due_seconds \d/m);
  });
});
