import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { serve, type ServerType } from "@hono/node-server";
import { upsertApiKey } from "@coalesce/db";
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createApp } from "../../apps/api/src/app.ts";
import { hashApiKey } from "../../apps/api/src/auth/api-keys.ts";
import { JwtVerifier, type JwtSettings } from "../../apps/api/src/auth/jwt.ts";
import type { AuthOptions } from "../../apps/api/src/middleware/auth.ts";
import { registerIris } from "../support/api-suite.ts";
import { expectJson, expectProblem, get, irisRows, requestJson } from "../support/http.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "../support/services.ts";

const ISSUER = "https://issuer.test/";
const AUDIENCE = "coalesce-api";
const TENANT = "acme";

/** A signing key of the test's own issuer: the private half signs, the public half is in the JWKS. */
type SigningKey = { kid: string; alg: string; privateKey: CryptoKey; jwk: JWK };

async function newSigningKey(alg = "RS256", kid: string = randomUUID()): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

/** A real JWKS endpoint on loopback, whose keys a test can swap, counting its fetches. */
class JwksServer {
  keys: SigningKey[] = [];
  hits = 0;
  readonly #server: Server = createServer((_, response) => {
    this.hits += 1;
    response.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ keys: this.keys.map((key) => key.jwk) }));
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/.well-known/jwks.json`;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A token as the issuer would sign it; `claims` override the defaults, `undefined` removes one. */
async function signToken(key: SigningKey, claims: JWTPayload = {}, header: { alg?: string; kid?: string } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const payload: JWTPayload = { iss: ISSUER, aud: AUDIENCE, sub: "user-1", tenant: TENANT, scope: "admin", iat: now, exp: now + 300, ...claims };
  for (const [name, value] of Object.entries(payload)) if (value === undefined) delete payload[name];
  return new SignJWT(payload).setProtectedHeader({ alg: header.alg ?? key.alg, kid: header.kid ?? key.kid, typ: "JWT" }).sign(key.privateKey);
}

function bearer(token: string): string {
  return `Bearer ${token}`;
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

let services: TestServices;
let api: TestApi;
let jwks: JwksServer;
let jwksUrl: string;
/** The tenant's API key, as an Authorization header. */
let keyAuth: string;

function settings(overrides: Partial<JwtSettings> = {}): JwtSettings {
  return { issuer: ISSUER, audience: [AUDIENCE], jwksUrl, algorithms: ["RS256", "ES256", "EdDSA", "PS256"], clockToleranceS: 30, tenantClaim: "tenant", ...overrides };
}

/** The API in process with its own verifier (so its own JWKS cache) and auth options. */
function appWith(auth: AuthOptions): ReturnType<typeof createApp> {
  return createApp({ ...api.deps, auth });
}

function call(app: ReturnType<typeof createApp>, auth: string | null, method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return requestJson({ ...api, app }, auth, method, url, body, headers);
}

beforeAll(async () => {
  services = await createTestServices();
  api = createTestApi(services);
  const secret = `csk_test_${randomBytes(12).toString("hex")}`;
  await upsertApiKey(api.db.prisma, { tenantName: TENANT, name: "acme-key", hash: hashApiKey(secret), prefix: secret.slice(0, 8) });
  keyAuth = `Bearer ${secret}`;
  await registerIris(api, keyAuth);
  // Another tenant, with nothing in it.
  await upsertApiKey(api.db.prisma, { tenantName: "globex", name: "globex-key", hash: hashApiKey(`csk_test_${randomBytes(12).toString("hex")}`), prefix: "csk_test" });
  jwks = new JwksServer();
  jwksUrl = await jwks.start();
});

afterAll(async () => {
  await jwks?.stop();
  await api?.close();
  await services?.cleanup();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("JWT bearer tokens from a JWKS", () => {
  let key: SigningKey;
  let app: ReturnType<typeof createApp>;

  beforeAll(async () => {
    key = await newSigningKey("RS256");
    const es = await newSigningKey("ES256");
    jwks.keys = [key, es];
    app = appWith({ jwt: new JwtVerifier(settings()) });
  });

  it("a valid token is the tenant it names: its models, not another tenant's", async () => {
    const mine = await expectJson<{ data: { name: string }[] }>(await get({ ...api, app }, bearer(await signToken(key)), "/v1/models"), 200);
    expect(mine.data.map((model) => model.name)).toEqual(["iris"]);
    const theirs = await expectJson<{ data: unknown[] }>(await get({ ...api, app }, bearer(await signToken(key, { tenant: "globex" })), "/v1/models"), 200);
    expect(theirs.data).toEqual([]);
  });

  it("any allow-listed algorithm the JWKS has a key for works (ES256)", async () => {
    const es = jwks.keys[1]!;
    await expectJson(await get({ ...api, app }, bearer(await signToken(es)), "/v1/models"), 200);
  });

  it("a job made with a token names the token's subject, and is the tenant's", async () => {
    const token = bearer(await signToken(key, { sub: "alice", scope: "jobs:write jobs:read" }));
    const job = await expectJson<{ id: string }>(await call(app, token, "POST", "/v1/jobs", { model: "iris", inputs: irisRows(2) }), 202);
    // The tenant's API key sees the same job.
    await expectJson(await get(api, keyAuth, `/v1/jobs/${job.id}`), 200);
  });

  it("scopes are enforced: a token with only jobs:read reads jobs but gets 403 on POST /v1/jobs", async () => {
    const token = bearer(await signToken(key, { scope: "jobs:read openid profile" }));
    await expectJson(await get({ ...api, app }, token, "/v1/jobs"), 200);
    const response = await call(app, token, "POST", "/v1/jobs", { model: "iris", inputs: irisRows(1) });
    expect(response.headers.get("www-authenticate")).toBe('Bearer realm="coalesce", error="insufficient_scope", scope="jobs:write"');
    const problem = await expectProblem(response, 403, "forbidden");
    expect(problem.detail).toContain("token lacks the scope 'jobs:write'");
  });

  it("scopes may come as `scp`, an array or a string", async () => {
    await expectJson(await get({ ...api, app }, bearer(await signToken(key, { scope: undefined, scp: ["models:read"] })), "/v1/models"), 200);
    await expectJson(await get({ ...api, app }, bearer(await signToken(key, { scope: undefined, scp: "models:read jobs:read" })), "/v1/jobs"), 200);
    await expectProblem(await get({ ...api, app }, bearer(await signToken(key, { scope: undefined })), "/v1/models"), 403, "forbidden");
  });

  it.each<[string, JWTPayload, RegExp]>([
    ["expired beyond the leeway", { exp: Math.floor(Date.now() / 1000) - 60 }, /expired/],
    ["not valid yet (nbf in the future)", { nbf: Math.floor(Date.now() / 1000) + 120 }, /not valid yet/],
    ["for another audience", { aud: "someone-else" }, /another audience/],
    ["from another issuer", { iss: "https://evil.test/" }, /another issuer/],
    ["without an expiry", { exp: undefined }, /'exp' claim is missing/],
    ["without a subject", { sub: undefined }, /'sub' claim is missing/],
    ["without a tenant", { tenant: undefined }, /no 'tenant' claim/],
    ["naming a tenant that does not exist", { tenant: "initech" }, /tenant 'initech', which does not exist/],
  ])("a token %s is 401 invalid_token", async (_, claims, detail) => {
    const response = await get({ ...api, app }, bearer(await signToken(key, claims)), "/v1/models");
    expect(response.headers.get("www-authenticate")).toBe('Bearer realm="coalesce", error="invalid_token"');
    const problem = await expectProblem(response, 401, "unauthorized");
    expect(problem.detail).toMatch(detail);
  });

  it("expiry and nbf forgive a clock off by less than the leeway (30 s)", async () => {
    const now = Math.floor(Date.now() / 1000);
    await expectJson(await get({ ...api, app }, bearer(await signToken(key, { exp: now - 10 })), "/v1/models"), 200);
    await expectJson(await get({ ...api, app }, bearer(await signToken(key, { nbf: now + 10 })), "/v1/models"), 200);
  });

  it("a forged signature (another key under the same kid) is 401", async () => {
    const forger = await newSigningKey("RS256", key.kid);
    const problem = await expectProblem(await get({ ...api, app }, bearer(await signToken(forger)), "/v1/models"), 401, "unauthorized");
    expect(problem.detail).toContain("signature does not verify");
  });

  it("a token with a payload changed after signing is 401", async () => {
    const [header, , signature] = (await signToken(key, { tenant: "globex" })).split(".");
    const tampered = `${header}.${base64url({ iss: ISSUER, aud: AUDIENCE, sub: "user-1", tenant: TENANT, scope: "admin", exp: Math.floor(Date.now() / 1000) + 300 })}.${signature}`;
    await expectProblem(await get({ ...api, app }, bearer(tampered), "/v1/models"), 401, "unauthorized");
  });

  it("an unsigned token (alg none) is 401, with or without a signature part", async () => {
    const body = base64url({ iss: ISSUER, aud: AUDIENCE, sub: "user-1", tenant: TENANT, scope: "admin", exp: Math.floor(Date.now() / 1000) + 300 });
    for (const token of [`${base64url({ alg: "none", typ: "JWT" })}.${body}.`, `${base64url({ alg: "none", kid: key.kid })}.${body}.c2ln`]) {
      const problem = await expectProblem(await get({ ...api, app }, bearer(token), "/v1/models"), 401, "unauthorized");
      expect(problem.detail).toContain("algorithm 'none' is not accepted");
    }
  });

  it("HS256 is refused when no shared secret is configured", async () => {
    const secret = new TextEncoder().encode(randomBytes(32).toString("hex"));
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ iss: ISSUER, aud: AUDIENCE, sub: "user-1", tenant: TENANT, scope: "admin", exp: now + 300 })
      .setProtectedHeader({ alg: "HS256", kid: key.kid })
      .sign(secret);
    const problem = await expectProblem(await get({ ...api, app }, bearer(token), "/v1/models"), 401, "unauthorized");
    expect(problem.detail).toContain("algorithm 'HS256' is not accepted");
  });

  it("a malformed JWT-shaped value is 401, not a 500", async () => {
    for (const token of ["a.b.c", `${base64url({ alg: "RS256" })}.not-json.c2ln`, `${base64url({ alg: "RS256", kid: key.kid })}.${base64url("x")}.c2ln`]) {
      await expectProblem(await get({ ...api, app }, bearer(token), "/v1/models"), 401, "unauthorized");
    }
  });

  it("API keys keep working beside tokens", async () => {
    await expectJson(await get({ ...api, app }, keyAuth, "/v1/models"), 200);
  });
});

describe("the issuer's key set over time", () => {
  it("a rotated key is picked up through one refetch, and an unknown kid refetches at most once a minute", async () => {
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() });
    const old = await newSigningKey("RS256");
    const rotated = await newSigningKey("RS256");
    jwks.keys = [old];
    jwks.hits = 0;
    const app = appWith({ jwt: new JwtVerifier(settings()) });
    const status = async (token: string) => (await get({ ...api, app }, bearer(token), "/v1/models")).status;

    expect(await status(await signToken(old))).toBe(200);
    expect(jwks.hits).toBe(1);
    // Cached: more tokens cost no fetch.
    expect(await status(await signToken(old))).toBe(200);
    expect(jwks.hits).toBe(1);

    // The issuer rotates. Within the minute after the last fetch, unknown kids (the new key's, and
    // forged ones) do not make the API fetch again.
    jwks.keys = [rotated];
    expect(await status(await signToken(rotated))).toBe(401);
    for (let i = 0; i < 5; i += 1) expect(await status(await signToken(await newSigningKey("RS256")))).toBe(401);
    vi.setSystemTime(Date.now() + 59_000);
    expect(await status(await signToken(rotated))).toBe(401);
    expect(jwks.hits).toBe(1);

    // Past the minute: one refetch finds the new key.
    vi.setSystemTime(Date.now() + 2_000);
    expect(await status(await signToken(rotated))).toBe(200);
    expect(jwks.hits).toBe(2);
    expect(await status(await signToken(rotated))).toBe(200);
    // The retired key is gone from the set, and asking for it again is within the new minute.
    expect(await status(await signToken(old))).toBe(401);
    expect(jwks.hits).toBe(2);
  });

  it("an issuer whose JWKS cannot be fetched is a 503 (retry), not a 401 (the token may be good)", async () => {
    const gone = new JwksServer();
    const url = await gone.start();
    await gone.stop();
    const app = appWith({ jwt: new JwtVerifier(settings({ jwksUrl: url })) });
    const key = await newSigningKey("RS256");
    const response = await get({ ...api, app }, bearer(await signToken(key)), "/v1/models");
    expect(response.headers.get("retry-after")).toBeTruthy();
    const problem = await expectProblem(response, 503, "service_unavailable");
    expect(problem.detail).toContain("could not be fetched");
  });
});

describe("other key sources", () => {
  it("one public key as PEM (AUTH_JWT_PUBLIC_KEY)", async () => {
    const { privateKey, publicKey } = await generateKeyPair("EdDSA", { extractable: true });
    const key: SigningKey = { kid: "pem", alg: "EdDSA", privateKey, jwk: {} };
    const app = appWith({ jwt: new JwtVerifier(settings({ jwksUrl: undefined, publicKeyPem: await exportSPKI(publicKey) })) });
    await expectJson(await get({ ...api, app }, bearer(await signToken(key)), "/v1/models"), 200);
    const other = await newSigningKey("EdDSA", "pem");
    await expectProblem(await get({ ...api, app }, bearer(await signToken(other)), "/v1/models"), 401, "unauthorized");
  });

  it("HS256 with a shared secret (AUTH_JWT_SECRET), and never with the public key taken as the secret", async () => {
    const secret = randomBytes(32).toString("hex");
    const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
    const pem = await exportSPKI(publicKey);
    const app = appWith({ jwt: new JwtVerifier(settings({ jwksUrl: undefined, publicKeyPem: pem, secret, algorithms: ["RS256", "HS256"] })) });
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: ISSUER, aud: AUDIENCE, sub: "svc", tenant: TENANT, scope: "models:read", exp: now + 300 };
    const good = await new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(secret));
    await expectJson(await get({ ...api, app }, bearer(good), "/v1/models"), 200);
    // The algorithm-confusion attack: HMAC keyed with the (public) PEM.
    const confused = await new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(pem));
    await expectProblem(await get({ ...api, app }, bearer(confused), "/v1/models"), 401, "unauthorized");
    // The RSA key still works too.
    await expectJson(await get({ ...api, app }, bearer(await signToken({ kid: "rsa", alg: "RS256", privateKey, jwk: {} })), "/v1/models"), 200);
  });

  it("with JWT auth off, a JWT is refused without a database lookup", async () => {
    const app = appWith({});
    const token = await signToken(await newSigningKey("RS256"));
    const problem = await expectProblem(await get({ ...api, app }, bearer(token), "/v1/models"), 401, "unauthorized");
    expect(problem.detail).toContain("does not accept JWT bearer tokens");
  });
});

describe("failed authentication is throttled per client address", () => {
  let server: ServerType;
  let base: string;

  beforeAll(async () => {
    const app = appWith({ failureLimit: 5, failureWindowMs: 2_000 });
    server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
    });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server?.close(() => resolve()));
  });

  it("after the burst every request from the address is 429 with Retry-After, until the window ends", async () => {
    const send = (auth: string) => fetch(`${base}/v1/models`, { headers: { Authorization: auth } });
    for (let i = 0; i < 5; i += 1) expect((await send(`Bearer csk_test_guess_${i}`)).status).toBe(401);
    const refused = await send("Bearer csk_test_guess_6");
    expect(refused.status).toBe(429);
    expect(refused.headers.get("content-type")).toBe("application/problem+json");
    const retryAfter = Number(refused.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(2);
    expect(((await refused.json()) as { code: string }).code).toBe("rate_limited");
    // Refused before any lookup, so a key not seen working lately waits too.
    expect((await send(keyAuth)).status).toBe(429);
    // Health and docs are not behind it.
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    await sleep(retryAfter * 1000 + 100);
    expect((await send(keyAuth)).status).toBe(200);
    // A key that worked lately is not locked out by others' wrong keys from the same address (a proxy).
    for (let i = 0; i < 6; i += 1) await send(`Bearer csk_test_guess_again_${i}`);
    expect((await send("Bearer csk_test_guess_more")).status).toBe(429);
    expect((await send(keyAuth)).status).toBe(200);
  });

  it("behind a trusted proxy the address is the last X-Forwarded-For entry; otherwise that header is ignored", async () => {
    const proxied = appWith({ failureLimit: 3, failureWindowMs: 10_000, trustProxy: true });
    const from = (app: ReturnType<typeof createApp>, forwarded: string, auth = "Bearer csk_test_wrong") =>
      call(app, auth, "GET", "/v1/models", undefined, { "X-Forwarded-For": forwarded });
    for (let i = 0; i < 3; i += 1) expect((await from(proxied, "198.51.100.1, 203.0.113.7")).status).toBe(401);
    // The client's own entries (before the proxy's) change nothing.
    expect((await from(proxied, "192.0.2.99, 203.0.113.7")).status).toBe(429);
    expect((await from(proxied, "203.0.113.8")).status).toBe(401);
    expect((await from(proxied, "203.0.113.8", keyAuth)).status).toBe(200);

    const direct = appWith({ failureLimit: 3, failureWindowMs: 10_000 });
    for (let i = 0; i < 6; i += 1) expect((await from(direct, "203.0.113.7")).status).toBe(401);
  });

  it("counts failed sign-ins to the queue admin (HTTP Basic) and to /v1 against one budget per address", async () => {
    const app = appWith({ failureLimit: 4, failureWindowMs: 10_000, trustProxy: true });
    const wrongBasic = `Basic ${Buffer.from("admin:csk_test_wrong").toString("base64")}`;
    for (let i = 0; i < 2; i += 1) expect((await call(app, wrongBasic, "GET", "/admin/queues", undefined, { "X-Forwarded-For": "203.0.113.9" })).status).toBe(401);
    for (let i = 0; i < 2; i += 1) expect((await call(app, "Bearer csk_test_wrong", "GET", "/v1/models", undefined, { "X-Forwarded-For": "203.0.113.9" })).status).toBe(401);
    expect((await call(app, wrongBasic, "GET", "/admin/queues", undefined, { "X-Forwarded-For": "203.0.113.9" })).status).toBe(429);
    expect((await call(app, "Bearer csk_test_wrong", "GET", "/v1/models", undefined, { "X-Forwarded-For": "203.0.113.9" })).status).toBe(429);
  });
});

describe("key lookups are remembered briefly", () => {
  it("a wrong key sent twice costs one Postgres lookup at most", async () => {
    const app = appWith({});
    let acquired = 0;
    const count = () => (acquired += 1);
    api.db.pool.on("acquire", count);
    try {
      const wrong = `Bearer csk_test_${randomBytes(12).toString("hex")}`;
      await expectProblem(await get({ ...api, app }, wrong, "/v1/models"), 401, "unauthorized");
      expect(acquired).toBe(1);
      await expectProblem(await get({ ...api, app }, wrong, "/v1/models"), 401, "unauthorized");
      expect(acquired).toBe(1);
      // Not for long: a moment later it is asked again (so a key created since would work).
      await sleep(1_100);
      await expectProblem(await get({ ...api, app }, wrong, "/v1/models"), 401, "unauthorized");
      expect(acquired).toBe(2);
    } finally {
      api.db.pool.off("acquire", count);
    }
  });
});
