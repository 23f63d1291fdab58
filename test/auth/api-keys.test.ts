// Key management (POST/GET/DELETE /v1/api-keys, rotate): scoped keys, a secret shown once, revocation
// seen by a second API replica within about a second, rotation overlaps, expiry, and who may do what.
import { setTimeout as sleep } from "node:timers/promises";
import { randomBytes } from "node:crypto";
import type { ApiKey, ApiKeyList, CreatedApiKey } from "@coalesce/contracts";
import { upsertApiKey } from "@coalesce/db";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashApiKey } from "../../apps/api/src/auth/api-keys.ts";
import { expectJson, expectProblem, get, irisRows, requestJson, submitJob } from "../support/http.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "../support/services.ts";
import { registerIris } from "../support/api-suite.ts";

let services: TestServices;
/** Two API replicas on the same services, as two processes behind a load balancer would be. */
let api: TestApi;
let replica: TestApi;
/** A tenant admin (not of the platform tenant). */
let admin: string;

beforeAll(async () => {
  services = await createTestServices();
  api = createTestApi(services);
  replica = createTestApi(services);
  admin = await api.createTenant("keys");
  await registerIris(api, admin);
});

afterAll(async () => {
  await replica?.close();
  await api?.close();
  await services?.cleanup();
});

const bearer = (key: { secret: string }) => `Bearer ${key.secret}`;

async function createKey(auth: string, body: Record<string, unknown>, on: TestApi = api): Promise<CreatedApiKey> {
  return expectJson<CreatedApiKey>(await requestJson(on, auth, "POST", "/v1/api-keys", body), 201);
}

/** Polls `check` until it holds or `boundMs` has passed (a bound, not a timing assertion). */
async function eventually(check: () => Promise<boolean>, boundMs = 5_000): Promise<number> {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > boundMs) throw new Error(`not within ${boundMs} ms`);
    await sleep(50);
  }
  return performance.now() - started;
}

const status = async (on: TestApi, auth: string, url = "/v1/jobs") => (await get(on, auth, url)).status;

describe("creating a key", () => {
  it("answers 201 with the secret once; a key with jobs:read only is refused POST /v1/jobs (403 naming jobs:write)", async () => {
    const reader = await createKey(admin, { name: "reader", scopes: ["jobs:read"] });
    expect(reader).toMatchObject({ name: "reader", scopes: ["jobs:read"], expires_at: null, revoked_at: null, rate_limit_rps: null });
    expect(reader.id).toMatch(/^key_/);
    expect(reader.secret).toMatch(/^csk_[\w-]{20,}$/);
    expect(reader.prefix).toBe(reader.secret.slice(0, 8));
    await expectJson(await get(api, bearer(reader), "/v1/jobs"), 200);
    const problem = await expectProblem(await submitJob(api, bearer(reader), { model: "iris", inputs: irisRows(1) }), 403, "forbidden");
    expect(problem.detail).toContain("jobs:write");
    // Only its hash is stored.
    const stored = await api.db.prisma.apiKey.findUniqueOrThrow({ where: { id: reader.id } });
    expect(stored.hash).toBe(hashApiKey(reader.secret));
    expect(JSON.stringify(stored)).not.toContain(reader.secret);
  });

  it("a key with jobs:write submits; its rate limit is kept", async () => {
    const writer = await createKey(admin, { name: "writer", scopes: ["jobs:write", "jobs:read"], rate_limit_rps: 0 });
    expect(writer.rate_limit_rps).toBe(0);
    await expectJson(await submitJob(api, bearer(writer), { model: "iris", inputs: irisRows(2) }), 202);
  });

  it.each([
    ["no scopes", { name: "x", scopes: [] }, "scopes"],
    ["an unknown scope", { name: "x", scopes: ["jobs:delete"] }, "scopes[0]"],
    ["no name", { scopes: ["jobs:read"] }, "name"],
    ["an expiry in the past", { name: "x", scopes: ["jobs:read"], expires_at: "2020-01-01T00:00:00Z" }, "expires_at"],
    ["an expiry that is not a time", { name: "x", scopes: ["jobs:read"], expires_at: "tomorrow" }, "expires_at"],
    ["a negative rate limit", { name: "x", scopes: ["jobs:read"], rate_limit_rps: -1 }, "rate_limit_rps"],
    ["an unknown field", { name: "x", scopes: ["jobs:read"], scope: "admin" }, "scope"],
  ])("refuses %s (422 naming the field)", async (_, body, field) => {
    const problem = await expectProblem(await requestJson(api, admin, "POST", "/v1/api-keys", body), 422, "validation_failed");
    expect(problem.errors?.map((e) => e.field)).toContain(field);
  });
});

describe("listing keys", () => {
  it("shows prefix, name, scopes, created and last used, never a secret or hash", async () => {
    const key = await createKey(admin, { name: "listed", scopes: ["models:read"] });
    await expectJson(await get(api, bearer(key), "/v1/models"), 200);
    const list = await expectJson<ApiKeyList>(await get(api, admin, "/v1/api-keys"), 200);
    const listed = list.data.find((k) => k.id === key.id);
    expect(listed).toMatchObject({ name: "listed", prefix: key.prefix, scopes: ["models:read"] });
    expect(Object.keys(listed ?? {}).sort()).toEqual(
      ["created_at", "expires_at", "id", "last_used_at", "name", "prefix", "previous_secret_expires_at", "rate_limit_rps", "revoked_at", "scopes"].sort(),
    );
    const text = JSON.stringify(list);
    expect(text).not.toContain(key.secret);
    expect(text).not.toContain(hashApiKey(key.secret));
    // Its use is recorded (in the background, at most once a minute).
    await eventually(async () => {
      const again = await expectJson<ApiKeyList>(await get(api, admin, "/v1/api-keys"), 200);
      return again.data.find((k) => k.id === key.id)?.last_used_at !== null;
    });
  });

  it("lists only the caller's tenant's keys", async () => {
    const other = await api.createTenant("other");
    const theirs = await createKey(other, { name: "theirs", scopes: ["jobs:read"] });
    const mine = await expectJson<ApiKeyList>(await get(api, admin, "/v1/api-keys"), 200);
    expect(mine.data.map((k) => k.id)).not.toContain(theirs.id);
    await expectProblem(await requestJson(api, admin, "DELETE", `/v1/api-keys/${theirs.id}`), 404, "not_found");
    await expectProblem(await requestJson(api, admin, "POST", `/v1/api-keys/${theirs.id}/rotate`, {}), 404, "not_found");
  });
});

describe("revoking a key", () => {
  it("is 204, and a second API replica refuses the key (401) within about a second", async () => {
    const key = await createKey(admin, { name: "doomed", scopes: ["jobs:read"] });
    // Both replicas trust the key now (each remembers it for up to a second).
    expect(await status(api, bearer(key))).toBe(200);
    expect(await status(replica, bearer(key))).toBe(200);
    expect((await requestJson(api, admin, "DELETE", `/v1/api-keys/${key.id}`)).status).toBe(204);
    const waited = await eventually(async () => (await status(replica, bearer(key))) === 401, 3_000);
    await expectProblem(await get(replica, bearer(key), "/v1/jobs"), 401, "unauthorized");
    await expectProblem(await get(api, bearer(key), "/v1/jobs"), 401, "unauthorized");
    expect(waited).toBeLessThan(3_000);
    // Revoked keys are listed only when asked for; revoking again changes nothing.
    expect((await expectJson<ApiKeyList>(await get(api, admin, "/v1/api-keys"), 200)).data.map((k) => k.id)).not.toContain(key.id);
    const all = await expectJson<ApiKeyList>(await get(api, admin, "/v1/api-keys?include_revoked=true"), 200);
    expect(all.data.find((k) => k.id === key.id)?.revoked_at).not.toBeNull();
    expect((await requestJson(api, admin, "DELETE", `/v1/api-keys/${key.id}`)).status).toBe(204);
    await expectProblem(await requestJson(api, admin, "POST", `/v1/api-keys/${key.id}/rotate`, {}), 409, "conflict");
  });

  it("a key may revoke itself", async () => {
    const key = await createKey(admin, { name: "self", scopes: ["admin"] });
    expect((await requestJson(api, bearer(key), "DELETE", `/v1/api-keys/${key.id}`)).status).toBe(204);
    await eventually(async () => (await status(api, bearer(key))) === 401, 3_000);
  });

  it("refuses an id that cannot be a key's (422) and an unknown key (404)", async () => {
    await expectProblem(await requestJson(api, admin, "DELETE", "/v1/api-keys/job_01jdq3x8m7k2v9c4n5p6r7s8t9"), 422, "validation_failed");
    await expectProblem(await requestJson(api, admin, "DELETE", "/v1/api-keys/key_01jdq3x8m7k2v9c4n5p6r7s8t9"), 404, "not_found");
  });
});

describe("rotating a key", () => {
  it("gives a new secret; both work during the overlap, the old one fails after it", async () => {
    const key = await createKey(admin, { name: "rotated", scopes: ["jobs:read"] });
    const rotated = await expectJson<CreatedApiKey>(await requestJson(api, admin, "POST", `/v1/api-keys/${key.id}/rotate`, { overlap_seconds: 2 }), 200);
    expect(rotated.id).toBe(key.id);
    expect(rotated.secret).not.toBe(key.secret);
    expect(rotated.prefix).toBe(rotated.secret.slice(0, 8));
    expect(rotated.scopes).toEqual(["jobs:read"]);
    expect(Date.parse(rotated.previous_secret_expires_at ?? "")).toBeGreaterThan(Date.now());
    expect(await status(replica, bearer(rotated))).toBe(200);
    expect(await status(replica, bearer(key))).toBe(200);
    // Past the overlap (2 s) and the replica's second of trust, only the new secret works.
    await eventually(async () => (await status(replica, bearer(key))) === 401, 6_000);
    expect(await status(replica, bearer(rotated))).toBe(200);
  });

  it("with overlap 0 (or no body: the default 24 h)", async () => {
    const key = await createKey(admin, { name: "rotated-now", scopes: ["jobs:read"] });
    const now = await expectJson<CreatedApiKey>(await requestJson(api, admin, "POST", `/v1/api-keys/${key.id}/rotate`, { overlap_seconds: 0 }), 200);
    expect(now.previous_secret_expires_at).toBeNull();
    // The replica has never seen the old secret, so it has nothing to trust.
    expect(await status(replica, bearer(key))).toBe(401);
    const later = await api.app.request(`/v1/api-keys/${key.id}/rotate`, { method: "POST", headers: { Authorization: admin } });
    const body = await expectJson<CreatedApiKey>(later, 200);
    expect(Date.parse(body.previous_secret_expires_at ?? "") - Date.now()).toBeGreaterThan(86_000_000);
    expect(await status(replica, bearer(now))).toBe(200);
    await expectProblem(await requestJson(api, admin, "POST", `/v1/api-keys/${key.id}/rotate`, { overlap_seconds: 8 * 86_400 }), 422, "validation_failed");
  });
});

describe("an expiring key", () => {
  it("works until expires_at, then is 401", async () => {
    const key = await createKey(admin, { name: "brief", scopes: ["jobs:read"], expires_at: new Date(Date.now() + 1_500).toISOString() });
    expect(await status(api, bearer(key))).toBe(200);
    await eventually(async () => (await status(replica, bearer(key))) === 401, 6_000);
    await expectProblem(await get(api, bearer(key), "/v1/jobs"), 401, "unauthorized");
    const listed = (await expectJson<ApiKeyList>(await get(api, admin, "/v1/api-keys"), 200)).data.find((k: ApiKey) => k.id === key.id);
    expect(listed?.expires_at).toBe(key.expires_at);
  });
});

describe("who may manage keys", () => {
  it.each([
    ["POST", "/v1/api-keys", { name: "x", scopes: ["jobs:read"] }],
    ["GET", "/v1/api-keys", undefined],
    ["DELETE", "/v1/api-keys/key_01jdq3x8m7k2v9c4n5p6r7s8t9", undefined],
    ["POST", "/v1/api-keys/key_01jdq3x8m7k2v9c4n5p6r7s8t9/rotate", {}],
    ["GET", "/v1/tenant", undefined],
    ["PATCH", "/v1/tenant", { quota_queued_rows: 1 }],
    ["GET", "/v1/audit", undefined],
  ])("a key without admin gets 403 on %s %s, naming the scope", async (method, url, body) => {
    const nonAdmin = await createKey(admin, { name: "not-admin", scopes: ["jobs:write", "jobs:read", "models:write", "models:read", "webhooks:write"] });
    const problem = await expectProblem(await requestJson(api, bearer(nonAdmin), method, url, body), 403, "forbidden");
    expect(problem.detail).toContain("'admin'");
  });

  it("a tenant admin cannot create a key for another tenant (403 naming tenant)", async () => {
    const problem = await expectProblem(await requestJson(api, admin, "POST", "/v1/api-keys", { name: "x", scopes: ["jobs:read"], tenant: "acme" }), 403, "forbidden");
    expect(problem.detail).toMatch(/^tenant: /);
    expect(await api.db.prisma.tenant.count({ where: { name: "acme" } })).toBe(0);
  });

  it("a platform admin (an admin key of PLATFORM_TENANT, 'default') creates a key for another tenant, made if new", async () => {
    const secret = `csk_test_${randomBytes(12).toString("hex")}`;
    await upsertApiKey(api.db.prisma, { tenantName: "default", name: "platform", hash: hashApiKey(secret), prefix: secret.slice(0, 8) });
    const platform = `Bearer ${secret}`;
    const tenant = `acme-${randomBytes(3).toString("hex")}`;
    const key = await createKey(platform, { name: "acme-admin", scopes: ["admin"], tenant });
    // The new key is the other tenant's: it sees that tenant, not the platform's keys.
    const seen = await expectJson<{ name: string }>(await get(api, bearer(key), "/v1/tenant"), 200);
    expect(seen.name).toBe(tenant);
    const theirs = await expectJson<ApiKeyList>(await get(api, bearer(key), "/v1/api-keys"), 200);
    expect(theirs.data.map((k) => k.id)).toEqual([key.id]);
    const platformKeys = await expectJson<ApiKeyList>(await get(api, platform, "/v1/api-keys"), 200);
    expect(platformKeys.data.map((k) => k.id)).not.toContain(key.id);
    // A non-admin key of the platform tenant is refused the route itself.
    const reader = await createKey(platform, { name: "platform-reader", scopes: ["jobs:read"] });
    await expectProblem(await requestJson(api, bearer(reader), "POST", "/v1/api-keys", { name: "x", scopes: ["jobs:read"], tenant }), 403, "forbidden");
  });
});

describe("tenant limits", () => {
  it("GET shows the defaults (null); PATCH sets, keeps what is left out, and null returns to the default", async () => {
    const auth = await api.createTenant("limits");
    expect(await expectJson(await get(api, auth, "/v1/tenant"), 200)).toMatchObject({ limits: { rate_limit_rows_per_minute: null, quota_queued_rows: null } });
    const set = await expectJson(await requestJson(api, auth, "PATCH", "/v1/tenant", { rate_limit_rows_per_minute: 6000, quota_queued_rows: 5_000_000_000 }), 200);
    expect(set).toMatchObject({ limits: { rate_limit_rows_per_minute: 6000, quota_queued_rows: 5_000_000_000 } });
    const kept = await expectJson(await requestJson(api, auth, "PATCH", "/v1/tenant", { quota_queued_rows: null }), 200);
    expect(kept).toMatchObject({ limits: { rate_limit_rows_per_minute: 6000, quota_queued_rows: null } });
    const problem = await expectProblem(await requestJson(api, auth, "PATCH", "/v1/tenant", { rate_limit_rows_per_minute: 1.5 }), 422, "validation_failed");
    expect(problem.errors?.map((e) => e.field)).toEqual(["rate_limit_rows_per_minute"]);
    await expectProblem(await requestJson(api, auth, "PATCH", "/v1/tenant", { quota: 1 }), 422, "validation_failed");
  });
});
