import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { hashApiKey } from "../../apps/api/src/auth/api-keys.ts";
import { expectJson, expectProblem, fixture, get, irisRows, requestJson, uploadModel } from "../support/http.ts";
import { useApiSuite } from "../support/api-suite.ts";

const suite = useApiSuite("auth");

describe("/v1 without a valid API key", () => {
  const protectedRoutes: [string, string, unknown?][] = [
    ["GET", "/v1/models"],
    ["GET", "/v1/models/iris"],
    ["GET", "/v1/jobs"],
    ["GET", "/v1/jobs/job_01jdq3x8m7k2v9c4n5p6r7s8t9"],
    ["GET", "/v1/jobs/job_01jdq3x8m7k2v9c4n5p6r7s8t9/results"],
    ["POST", "/v1/jobs", { model: "iris", inputs: irisRows(1) }],
  ];

  it.each(protectedRoutes)("%s %s without Authorization is 401 unauthorized", async (method, url, body) => {
    const problem = await expectProblem(await requestJson(suite.api, null, method, url, body), 401, "unauthorized");
    expect(problem.detail).toContain("Bearer");
  });

  it("a model upload without Authorization is 401 and stores nothing", async () => {
    const response = await suite.api.app.request("/v1/models/iris/versions", {
      method: "POST",
      headers: { "Content-Type": "application/octet-stream" },
      body: fixture("iris.onnx"),
    });
    await expectProblem(response, 401, "unauthorized");
    expect(await suite.api.db.prisma.model.count()).toBe(0);
  });

  it.each([
    ["an unknown key", "Bearer csk_test_not_a_key_anyone_has"],
    ["Basic credentials", "Basic xyz"],
    ["Basic with a real key's secret", "Basic <secret>"],
    ["the bare key without a scheme", "<secret>"],
    ["Bearer with no key", "Bearer "],
    ["Bearer with two words", "Bearer <secret> extra"],
    ["an empty header", ""],
  ])("%s is 401 unauthorized", async (_, header) => {
    const secret = suite.auth.replace(/^Bearer /, "");
    const response = await get(suite.api, header.replace("<secret>", secret), "/v1/models");
    await expectProblem(response, 401, "unauthorized");
  });

  it("a revoked key is 401 (within the second a valid key is trusted for)", async () => {
    const revoked = await suite.api.createTenant("revoked");
    await expectJson(await get(suite.api, revoked, "/v1/models"), 200);
    await suite.api.db.prisma.apiKey.update({ where: { hash: hashApiKey(revoked.replace(/^Bearer /, "")) }, data: { revokedAt: new Date() } });
    await sleep(1_100);
    await expectProblem(await get(suite.api, revoked, "/v1/models"), 401, "unauthorized");
  });

  // RFC 9110 §11.6.1: a server generating a 401 response MUST send a WWW-Authenticate header.
  it("a 401 tells the client which scheme to use in WWW-Authenticate", async () => {
    const response = await get(suite.api, null, "/v1/models");
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate") ?? "(no WWW-Authenticate header)").toMatch(/^Bearer\b/i);
  });
});

describe("/v1 with a valid API key", () => {
  it("accepts the key", async () => {
    expect(await expectJson(await get(suite.api, suite.auth, "/v1/models"), 200)).toEqual({ data: [] });
  });

  it("accepts the scheme in any case", async () => {
    await expectJson(await get(suite.api, suite.auth.replace(/^Bearer/, "bearer"), "/v1/models"), 200);
  });

  it("still answers 401 before 404 for an upload of a model the caller cannot see", async () => {
    await expectJson(await uploadModel(suite.api, suite.auth, "iris", fixture("iris.onnx")), 201);
    await expectProblem(await get(suite.api, "Bearer csk_test_wrong", "/v1/models/iris"), 401, "unauthorized");
  });
});

describe("routes that need no key", () => {
  it("GET /healthz is 200 ok", async () => {
    expect(await expectJson(await get(suite.api, null, "/healthz"), 200)).toEqual({ status: "ok" });
  });

  it("GET /readyz is 200 ready when Postgres and Redis answer", async () => {
    expect(await expectJson(await get(suite.api, null, "/readyz"), 200)).toEqual({
      status: "ready",
      checks: { postgres: "ok", redis: "ok" },
      // No worker runs in this test file.
      workers: [],
    });
  });

  it("GET /openapi.json is 200", async () => {
    await expectJson(await get(suite.api, null, "/openapi.json"), 200);
  });

  it("GET /docs is 200", async () => {
    expect((await get(suite.api, null, "/docs")).status).toBe(200);
  });

  it("ignores a wrong key on them", async () => {
    expect((await get(suite.api, "Bearer csk_test_wrong", "/healthz")).status).toBe(200);
  });
});
