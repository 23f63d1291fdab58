import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import net, { type AddressInfo } from "node:net";
import tls from "node:tls";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it } from "vitest";
import type { WebhookLookup, WebhookUrlPolicy } from "./address-policy.ts";
import { deliverWebhook, type DeliverWebhookOptions } from "./deliver.ts";
import { generateSecret, webhookHeaders } from "./sign.ts";

const LOCAL: WebhookUrlPolicy = { allowHttp: true, allowlist: ["127.0.0.0/8", "::1/128"] };
const SECRET = generateSecret();
const BODY = JSON.stringify({ type: "job.completed", data: { jobId: "job_123", status: "succeeded" } });

type Received = { headers: IncomingHttpHeaders; body: string };
type Respond = (request: IncomingMessage, response: ServerResponse) => void;

const servers: http.Server[] = [];

afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((server) => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    }),
  );
});

/** A receiver on 127.0.0.1 that records each request and answers with `respond`. */
async function startReceiver(respond: Respond = (_, response) => response.end("ok")) {
  const received: Received[] = [];
  const server = http.createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    received.push({ headers: request.headers, body: Buffer.concat(chunks).toString("utf8") });
    respond(request, response);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { port, url: `http://127.0.0.1:${port}/hooks`, received };
}

function answer(status: number, headers: Record<string, string> = {}, body = ""): Respond {
  return (_, response) => response.writeHead(status, headers).end(body);
}

function send(url: string, options: Partial<DeliverWebhookOptions> = {}) {
  const headers = webhookHeaders({ messageId: "msg_1", timestampSeconds: Math.floor(Date.now() / 1000), body: BODY, secrets: [SECRET] });
  return deliverWebhook({ url, body: BODY, headers, policy: LOCAL, ...options });
}

function verify({ headers, body }: Received) {
  return new Webhook(SECRET).verify(body, headers as Record<string, string>);
}

/** Answers every name with `address`, counting the calls. */
function lookupTo(address: string) {
  const calls: string[] = [];
  const lookup: WebhookLookup = async (hostname) => {
    calls.push(hostname);
    return [{ address, family: net.isIP(address) }];
  };
  return { lookup, calls };
}

describe("deliverWebhook", () => {
  it("delivers a signed POST that standardwebhooks verifies, on a 2xx", async () => {
    const receiver = await startReceiver(answer(204));
    const attempt = await send(receiver.url);
    expect(attempt).toMatchObject({ outcome: "delivered", statusCode: 204, retryAfterMs: null, error: null, responseSnippet: null });
    expect(attempt.durationMs).toBeGreaterThanOrEqual(0);
    const [request] = receiver.received;
    expect(request && verify(request)).toEqual(JSON.parse(BODY));
    expect(request?.headers).toMatchObject({
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(BODY)),
      "user-agent": expect.stringMatching(/^Coalesce-Webhooks\//),
    });
  });

  it("fails on a 500 and keeps the start of the response body", async () => {
    const receiver = await startReceiver(answer(500, {}, "database is down"));
    expect(await send(receiver.url)).toMatchObject({
      outcome: "failed",
      statusCode: 500,
      error: "the receiver answered 500 Internal Server Error",
      responseSnippet: "database is down",
      retryAfterMs: null,
    });
  });

  it("reads no more than a kilobyte of a long response", async () => {
    const receiver = await startReceiver(answer(200, {}, "x".repeat(1_000_000)));
    const attempt = await send(receiver.url);
    expect(attempt.outcome).toBe("delivered");
    expect(attempt.responseSnippet).toBe("x".repeat(1024));
  });

  it("reports a 410 as gone", async () => {
    const receiver = await startReceiver(answer(410));
    expect(await send(receiver.url)).toMatchObject({ outcome: "gone", statusCode: 410, error: "the receiver answered 410 Gone" });
  });

  it("takes the delay of a 429 from Retry-After seconds", async () => {
    const receiver = await startReceiver(answer(429, { "retry-after": "7" }));
    expect(await send(receiver.url)).toMatchObject({ outcome: "failed", statusCode: 429, retryAfterMs: 7000 });
  });

  it("takes the delay of a 503 from a Retry-After date", async () => {
    const at = new Date(Date.now() + 30_000).toUTCString();
    const receiver = await startReceiver(answer(503, { "retry-after": at }));
    const attempt = await send(receiver.url);
    expect(attempt).toMatchObject({ outcome: "failed", statusCode: 503, error: "the receiver answered 503 Service Unavailable" });
    expect(attempt.retryAfterMs).toBeGreaterThan(25_000);
    expect(attempt.retryAfterMs).toBeLessThanOrEqual(30_000);
  });

  it("caps Retry-After at a day and ignores one it cannot read", async () => {
    const tooLong = await startReceiver(answer(429, { "retry-after": "999999" }));
    expect((await send(tooLong.url)).retryAfterMs).toBe(86_400_000);
    const unreadable = await startReceiver(answer(503, { "retry-after": "soon" }));
    expect((await send(unreadable.url)).retryAfterMs).toBeNull();
  });

  it("does not follow a redirect", async () => {
    const elsewhere = await startReceiver();
    const receiver = await startReceiver(answer(302, { location: elsewhere.url }));
    expect(await send(receiver.url)).toMatchObject({
      outcome: "failed",
      statusCode: 302,
      error: `the receiver answered 302 Found to ${elsewhere.url}; redirects are not followed, so register the final URL`,
    });
    expect(elsewhere.received).toEqual([]);
  });

  it("gives up on a receiver that never answers after timeoutMs", async () => {
    const receiver = await startReceiver(() => {});
    const attempt = await send(receiver.url, { timeoutMs: 200 });
    expect(attempt).toMatchObject({ outcome: "failed", statusCode: null });
    expect(attempt.error).toBe(`the request to 127.0.0.1:${receiver.port} failed: no response within 200 ms (timed out)`);
    expect(attempt.durationMs).toBeGreaterThanOrEqual(190);
  });

  it("fails with the network error when nothing listens", async () => {
    const { port } = await startReceiver();
    await new Promise((resolve) => servers.pop()?.close(resolve));
    const attempt = await send(`http://127.0.0.1:${port}/hooks`);
    expect(attempt).toMatchObject({ outcome: "failed", statusCode: null });
    expect(attempt.error).toContain("ECONNREFUSED");
  });

  it("fails when the name does not resolve", async () => {
    const lookup: WebhookLookup = async (hostname) => {
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
    };
    expect(await send("http://hooks.example.test/", { lookup })).toMatchObject({
      outcome: "failed",
      error: "the request to hooks.example.test failed: getaddrinfo ENOTFOUND hooks.example.test",
    });
  });

  // With autoSelectFamily (Node 20's default) net asks the lookup for all addresses, without it for one.
  it.each([true, false])("connects to the address it checked, keeping the hostname (autoSelectFamily %s)", async (autoSelect) => {
    const receiver = await startReceiver();
    const { lookup, calls } = lookupTo("127.0.0.1");
    const previous = net.getDefaultAutoSelectFamily();
    net.setDefaultAutoSelectFamily(autoSelect);
    try {
      const attempt = await send(`http://hooks.example.test:${receiver.port}/hooks`, { lookup });
      expect(attempt.outcome).toBe("delivered");
    } finally {
      net.setDefaultAutoSelectFamily(previous);
    }
    expect(calls).toEqual(["hooks.example.test"]);
    expect(receiver.received[0]?.headers.host).toBe(`hooks.example.test:${receiver.port}`);
  });
  it("sends the hostname, not the address, as the TLS server name", async () => {
    const serverNames: string[] = [];
    // No certificate: the handshake stops after the ClientHello has named the server.
    const server = tls.createServer({ SNICallback: (name, callback) => (serverNames.push(name), callback(new Error("no certificate"))) });
    server.on("tlsClientError", () => {});
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const attempt = await send(`https://hooks.example.test:${port}/hooks`, { lookup: lookupTo("127.0.0.1").lookup });
      expect(attempt).toMatchObject({ outcome: "failed", statusCode: null });
      expect(serverNames).toEqual(["hooks.example.test"]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("deliverWebhook refusals", () => {
  const NO_LOOPBACK: WebhookUrlPolicy = { allowHttp: true, allowlist: [] };
  const publicOnly = "webhooks are only delivered to public addresses (unless the server lists it in WEBHOOK_ALLOWLIST)";

  it("refuses an http URL unless the policy allows http", async () => {
    const receiver = await startReceiver();
    expect(await send(receiver.url, { policy: { ...LOCAL, allowHttp: false } })).toEqual({
      outcome: "refused",
      statusCode: null,
      durationMs: expect.any(Number),
      retryAfterMs: null,
      error: "http URLs are not allowed; use https (set WEBHOOK_ALLOW_HTTP=true for local development)",
      responseSnippet: null,
    });
    expect(receiver.received).toEqual([]);
  });

  it.each([
    ["http://10.0.0.1/hooks", `10.0.0.1 is a private address (10.0.0.0/8); ${publicOnly}`],
    ["http://169.254.169.254/latest/meta-data/", `169.254.169.254 is a link-local / cloud metadata address; ${publicOnly}`],
    ["http://[::1]:9/hooks", `::1 is a loopback address; ${publicOnly}`],
    ["http://[::ffff:127.0.0.1]:9/hooks", `::ffff:7f00:1 is an IPv4-mapped form of 127.0.0.1, a loopback address; ${publicOnly}`],
    ["http://100.64.0.1/hooks", `100.64.0.1 is a carrier-grade NAT address (100.64.0.0/10); ${publicOnly}`],
  ])("refuses %s without a lookup or a request", async (url, error) => {
    const { lookup, calls } = lookupTo("93.184.216.34");
    expect(await send(url, { policy: NO_LOOPBACK, lookup })).toMatchObject({ outcome: "refused", statusCode: null, error });
    expect(calls).toEqual([]);
  });

  it("refuses localhost, which resolves to loopback, when loopback is not allowlisted", async () => {
    const receiver = await startReceiver();
    const attempt = await send(`http://localhost:${receiver.port}/hooks`, { policy: NO_LOOPBACK });
    expect(attempt).toMatchObject({ outcome: "refused", statusCode: null });
    expect(attempt.error).toMatch(/^localhost resolves to (127\.0\.0\.1|::1), a loopback address; /);
    expect(receiver.received).toEqual([]);
  });

  it("refuses a public-looking name that resolves to a private address", async () => {
    const { lookup } = lookupTo("192.168.0.10");
    expect(await send("https://hooks.example.com/coalesce", { policy: NO_LOOPBACK, lookup })).toMatchObject({
      outcome: "refused",
      error: `hooks.example.com resolves to 192.168.0.10, a private address (192.168.0.0/16); ${publicOnly}`,
    });
  });
});
