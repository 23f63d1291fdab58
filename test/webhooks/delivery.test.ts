// Webhooks end to end on the real services: the API registers endpoints, jobs finish in a real
// worker, Postgres triggers write the outbox, the worker's dispatcher signs and sends, and a real
// HTTP receiver checks each delivery with the `standardwebhooks` package.
import type { CreatedWebhook, Job, WebhookDeliveryList, WebhookEndpoint, WebhookSecret } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";
import { requestJson, waitForJob } from "../support/http.ts";
import { irisInputs, irisTenant, useIrisSuite } from "../support/iris-suite.ts";
import { TEST_WEBHOOK_ENV } from "../support/services.ts";
import { verifyWebhook, WebhookReceiver } from "../support/webhook-receiver.ts";
import { startTestWorker } from "../support/worker.ts";

const suite = useIrisSuite("webhooks", { chunkRows: 50 });
let worker: RunningWorker;

beforeAll(async () => {
  worker = await startTestWorker(suite.services, {
    ...TEST_WEBHOOK_ENV,
    // Retries compressed from minutes to milliseconds.
    WEBHOOK_RETRY_SCHEDULE: "100ms,200ms,300ms,400ms",
    WEBHOOK_POLL_MS: "20",
    WEBHOOK_TIMEOUT_MS: "2000",
  });
});
afterAll(async () => {
  await worker?.close();
});

/** A tenant of its own per test, so endpoints of one test never receive another's events. */
function tenant(name: string): Promise<string> {
  return irisTenant(suite, name);
}

async function register(auth: string, body: Record<string, unknown>): Promise<CreatedWebhook> {
  const response = await requestJson(suite.api, auth, "POST", "/v1/webhooks", body);
  expect(response.status).toBe(201);
  return (await response.json()) as CreatedWebhook;
}

async function submit(auth: string, rows: number, extra: Record<string, unknown> = {}): Promise<Job> {
  const response = await requestJson(suite.api, auth, "POST", "/v1/jobs", { model: "iris", inputs: irisInputs(suite, rows), ...extra });
  expect(response.status).toBe(202);
  return (await response.json()) as Job;
}

async function deliveries(auth: string, jobId: string): Promise<WebhookDeliveryList["data"]> {
  const response = await requestJson(suite.api, auth, "GET", `/v1/jobs/${jobId}/deliveries`);
  expect(response.status).toBe(200);
  return ((await response.json()) as WebhookDeliveryList).data;
}

async function waitForDeliveries(
  auth: string,
  jobId: string,
  predicate: (list: WebhookDeliveryList["data"]) => boolean,
  timeoutMs = 15_000,
): Promise<WebhookDeliveryList["data"]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const list = await deliveries(auth, jobId);
    if (predicate(list)) return list;
    if (Date.now() > deadline) throw new Error(`deliveries of ${jobId} not as expected: ${JSON.stringify(list)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe("webhook endpoints", () => {
  it("registers an endpoint whose secret verifies the signed job.succeeded delivery", async () => {
    const auth = await tenant("wh-basic");
    const receiver = await WebhookReceiver.start();
    try {
      const endpoint = await register(auth, { url: receiver.url, description: "ours" });
      expect(endpoint).toMatchObject({ url: receiver.url, enabled: true, events: ["job.succeeded", "job.failed", "job.cancelled", "job.expired", "model.alias.rolled_back"] });
      expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/=]{40,}$/);
      // The secret is shown once, at creation.
      const listed = (await (await requestJson(suite.api, auth, "GET", "/v1/webhooks")).json()) as { data: WebhookEndpoint[] };
      expect(listed.data.map((e) => e.id)).toEqual([endpoint.id]);
      expect(JSON.stringify(listed)).not.toContain(endpoint.secret);

      const job = await submit(auth, 120);
      const [delivery] = await receiver.waitFor((r) => r.length >= 1);
      const event = verifyWebhook(endpoint.secret, delivery!) as { type: string; timestamp: string; data: Job };
      expect(event.type).toBe("job.succeeded");
      expect(event.data).toMatchObject({ id: job.id, status: "succeeded", counts: { total: 120, succeeded: 120, failed: 0 } });
      expect(delivery!.headers["content-type"]).toBe("application/json");
      expect(delivery!.headers["user-agent"]).toMatch(/^Coalesce-Webhooks\//);

      const [recorded] = await waitForDeliveries(auth, job.id, (list) => list[0]?.state === "succeeded");
      expect(recorded).toMatchObject({ event_id: delivery!.headers["webhook-id"], event_type: "job.succeeded", endpoint_id: endpoint.id, state: "succeeded" });
      expect(recorded!.attempts).toEqual([expect.objectContaining({ attempt: 1, outcome: "delivered", status_code: 200 })]);
    } finally {
      await receiver.down();
    }
  });

  it("signs a job's own webhook_url with the tenant's default secret", async () => {
    const auth = await tenant("wh-job-url");
    const receiver = await WebhookReceiver.start();
    try {
      const job = await submit(auth, 3, { webhook_url: receiver.url });
      expect(job.webhook_url).toBe(receiver.url);
      const [delivery] = await receiver.waitFor((r) => r.length >= 1);
      const secret = ((await (await requestJson(suite.api, auth, "GET", "/v1/webhooks/default-secret")).json()) as WebhookSecret).secret;
      expect(verifyWebhook(secret, delivery!)).toMatchObject({ type: "job.succeeded", data: { id: job.id } });
      expect((await deliveries(auth, job.id))[0]).toMatchObject({ endpoint_id: null, url: receiver.url });
    } finally {
      await receiver.down();
    }
  });

  it("gets an event through to a receiver that is down, then up, with one webhook-id", async () => {
    const auth = await tenant("wh-retry");
    const receiver = await WebhookReceiver.start();
    const endpoint = await register(auth, { url: receiver.url });
    await receiver.down();
    try {
      const job = await submit(auth, 2);
      // Two attempts fail (connection refused), then the receiver comes back.
      await waitForDeliveries(auth, job.id, (list) => (list[0]?.attempts.length ?? 0) >= 2);
      await receiver.up();
      const [delivery] = await receiver.waitFor((r) => r.length >= 1);
      verifyWebhook(endpoint.secret, delivery!);
      const [recorded] = await waitForDeliveries(auth, job.id, (list) => list[0]?.state === "succeeded");
      expect(recorded!.event_id).toBe(delivery!.headers["webhook-id"]);
      expect(recorded!.attempts.at(-1)).toMatchObject({ outcome: "delivered", status_code: 200 });
      expect(recorded!.attempts.slice(0, -1).every((a) => a.outcome === "failed" && a.status_code === null && a.error)).toBe(true);
      expect(receiver.received).toHaveLength(1);
    } finally {
      await receiver.down();
    }
  });

  it("retries 500s with the same webhook-id and body, and gives up when the schedule ends", async () => {
    const auth = await tenant("wh-give-up");
    const receiver = await WebhookReceiver.start();
    receiver.reply = () => ({ status: 500, body: "boom" });
    try {
      await register(auth, { url: receiver.url });
      const job = await submit(auth, 1);
      const [recorded] = await waitForDeliveries(auth, job.id, (list) => list[0]?.state === "failed");
      // One attempt plus one per step of the 4-step schedule.
      expect(recorded!.attempts.map((a) => a.status_code)).toEqual([500, 500, 500, 500, 500]);
      expect(new Set(receiver.received.map((r) => r.headers["webhook-id"])).size).toBe(1);
      expect(new Set(receiver.received.map((r) => r.body)).size).toBe(1);
    } finally {
      await receiver.down();
    }
  });

  it("honours Retry-After on a 429", async () => {
    const auth = await tenant("wh-429");
    const receiver = await WebhookReceiver.start();
    receiver.reply = () => (receiver.received.length === 1 ? { status: 429, headers: { "Retry-After": "1" } } : { status: 204 });
    try {
      await register(auth, { url: receiver.url });
      await submit(auth, 1);
      const [first, second] = await receiver.waitFor((r) => r.length >= 2);
      expect(second!.receivedAt - first!.receivedAt).toBeGreaterThanOrEqual(950);
    } finally {
      await receiver.down();
    }
  });

  it("disables an endpoint that answers 410 Gone; PATCH enables it again", async () => {
    const auth = await tenant("wh-410");
    const receiver = await WebhookReceiver.start();
    receiver.reply = () => ({ status: 410 });
    try {
      const endpoint = await register(auth, { url: receiver.url });
      const job = await submit(auth, 1);
      const [recorded] = await waitForDeliveries(auth, job.id, (list) => list[0]?.state === "failed");
      expect(recorded!.attempts).toEqual([expect.objectContaining({ outcome: "gone", status_code: 410 })]);
      const shown = (await (await requestJson(suite.api, auth, "GET", `/v1/webhooks/${endpoint.id}`)).json()) as WebhookEndpoint;
      expect(shown).toMatchObject({ enabled: false, disabled_reason: expect.stringContaining("410") });

      // Disabled: the next job's event is not sent there at all.
      const next = await submit(auth, 1);
      await waitForJob(suite.api, auth, next.id);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await deliveries(auth, next.id)).toEqual([]);
      expect(receiver.received).toHaveLength(1);

      receiver.reply = () => ({ status: 200 });
      const enabled = await requestJson(suite.api, auth, "PATCH", `/v1/webhooks/${endpoint.id}`, { enabled: true });
      expect(((await enabled.json()) as WebhookEndpoint)).toMatchObject({ enabled: true, disabled_reason: null });
      const third = await submit(auth, 1);
      await waitForDeliveries(auth, third.id, (list) => list[0]?.state === "succeeded");
    } finally {
      await receiver.down();
    }
  });

  it("sends both signatures during a secret rotation; each secret verifies", async () => {
    const auth = await tenant("wh-rotate");
    const receiver = await WebhookReceiver.start();
    try {
      const endpoint = await register(auth, { url: receiver.url });
      const rotated = await requestJson(suite.api, auth, "POST", `/v1/webhooks/${endpoint.id}/rotate-secret`, { overlap_seconds: 3600 });
      expect(rotated.status).toBe(200);
      const { secret, previous_secret_expires_at } = (await rotated.json()) as WebhookSecret;
      expect(secret).not.toBe(endpoint.secret);
      expect(Date.parse(previous_secret_expires_at ?? "")).toBeGreaterThan(Date.now() + 3500_000);
      await submit(auth, 1);
      const [delivery] = await receiver.waitFor((r) => r.length >= 1);
      expect(String(delivery!.headers["webhook-signature"]).split(" ")).toHaveLength(2);
      verifyWebhook(secret, delivery!);
      verifyWebhook(endpoint.secret, delivery!);

      // Without an overlap the old secret stops signing at once.
      await requestJson(suite.api, auth, "POST", `/v1/webhooks/${endpoint.id}/rotate-secret`, { overlap_seconds: 0 });
      await submit(auth, 1);
      const [, later] = await receiver.waitFor((r) => r.length >= 2);
      expect(String(later!.headers["webhook-signature"]).split(" ")).toHaveLength(1);
      expect(() => verifyWebhook(secret, later!)).toThrow();
    } finally {
      await receiver.down();
    }
  });

  it("fires job.cancelled when a job is cancelled", async () => {
    const auth = await tenant("wh-cancel");
    const receiver = await WebhookReceiver.start();
    try {
      const endpoint = await register(auth, { url: receiver.url, events: ["job.cancelled"] });
      // Far more rows than the worker scores before the cancel lands.
      const job = await submit(auth, 5000);
      const cancelled = await requestJson(suite.api, auth, "POST", `/v1/jobs/${job.id}/cancel`);
      if (cancelled.status === 409) return; // finished first on a very fast machine: nothing to cancel
      expect(cancelled.status).toBe(200);
      const [delivery] = await receiver.waitFor((r) => r.length >= 1);
      expect(verifyWebhook(endpoint.secret, delivery!)).toMatchObject({ type: "job.cancelled", data: { id: job.id, status: "cancelled" } });
    } finally {
      await receiver.down();
    }
  });

  it("replays a delivery with POST /v1/deliveries/{id}/retry: same webhook-id, same body", async () => {
    const auth = await tenant("wh-replay");
    const receiver = await WebhookReceiver.start();
    try {
      await register(auth, { url: receiver.url });
      const job = await submit(auth, 1);
      const [recorded] = await waitForDeliveries(auth, job.id, (list) => list[0]?.state === "succeeded");
      const replay = await requestJson(suite.api, auth, "POST", `/v1/deliveries/${recorded!.id}/retry`);
      expect(replay.status).toBe(202);
      const [first, second] = await receiver.waitFor((r) => r.length >= 2);
      expect(second!.headers["webhook-id"]).toBe(first!.headers["webhook-id"]);
      expect(second!.body).toBe(first!.body);
      const [after] = await waitForDeliveries(auth, job.id, (list) => list[0]?.state === "succeeded" && list[0].attempts.length === 2);
      expect(after!.attempts.map((a) => a.attempt)).toEqual([1, 2]);
      const other = await tenant("wh-replay-other");
      expect((await requestJson(suite.api, other, "POST", `/v1/deliveries/${recorded!.id}/retry`)).status).toBe(404);
    } finally {
      await receiver.down();
    }
  });

  it("does not follow redirects", async () => {
    const auth = await tenant("wh-redirect");
    const target = await WebhookReceiver.start();
    const receiver = await WebhookReceiver.start();
    receiver.reply = () => ({ status: 302, headers: { Location: target.url } });
    try {
      await register(auth, { url: receiver.url });
      const job = await submit(auth, 1);
      const [recorded] = await waitForDeliveries(auth, job.id, (list) => (list[0]?.attempts.length ?? 0) >= 1);
      expect(recorded!.attempts[0]).toMatchObject({ outcome: "failed", status_code: 302, error: expect.stringMatching(/redirect/i) });
      expect(target.received).toHaveLength(0);
    } finally {
      await receiver.down();
      await target.down();
    }
  });
});
