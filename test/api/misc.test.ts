import { beforeAll, describe, expect, it } from "vitest";
import { expectJson, expectProblem, get, requestJson } from "../support/http.ts";
import { useApiSuite } from "../support/api-suite.ts";

const suite = useApiSuite("misc");

describe("unknown routes", () => {
  it.each([
    ["GET", "/nope", null],
    ["GET", "/v3/jobs", null],
    ["GET", "/v1/nope", "auth"],
    ["POST", "/v1/models", "auth"],
  ])("%s %s is 404 problem+json naming the route", async (method, url, withAuth) => {
    const problem = await expectProblem(await requestJson(suite.api, withAuth ? suite.auth : null, method, url), 404, "not_found");
    expect(problem.detail).toContain(url);
  });
});

describe("request ids", () => {
  it("every response carries a fresh X-Request-Id, errors in their body too", async () => {
    const ok = await get(suite.api, null, "/healthz");
    const first = ok.headers.get("x-request-id");
    expect(first).toMatch(/^req_[0-9a-f]{32}$/);
    const problem = await expectProblem(await get(suite.api, null, "/v1/jobs"), 401, "unauthorized");
    expect(problem.request_id).toMatch(/^req_[0-9a-f]{32}$/);
    expect(problem.request_id).not.toBe(first);
  });

  it("keeps a caller's sane X-Request-Id, in the header and in a problem's body", async () => {
    const response = await requestJson(suite.api, null, "GET", "/v1/jobs", undefined, { "X-Request-Id": "client-trace.42" });
    const problem = await expectProblem(response, 401, "unauthorized");
    expect(problem.request_id).toBe("client-trace.42");
  });

  it("replaces an X-Request-Id that could forge a log line", async () => {
    const response = await requestJson(suite.api, null, "GET", "/healthz", undefined, { "X-Request-Id": "a b\tc" });
    expect(response.headers.get("x-request-id")).toMatch(/^req_[0-9a-f]{32}$/);
  });
});

type OpenApiDocument = {
  openapi: string;
  info: { title: string };
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown> }> }>>;
  components: { securitySchemes?: Record<string, unknown>; schemas?: Record<string, unknown> };
  webhooks?: Record<string, { post?: { requestBody?: { content?: Record<string, unknown> } } }>;
};

describe("GET /openapi.json", () => {
  let doc: OpenApiDocument;
  beforeAll(async () => {
    doc = await expectJson<OpenApiDocument>(await get(suite.api, null, "/openapi.json"), 200);
  });

  it("is OpenAPI 3.1", () => {
    expect(doc.openapi).toMatch(/^3\.1/);
    expect(doc.info.title).toEqual(expect.any(String));
  });

  it("describes every endpoint", () => {
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        "/healthz",
        "/readyz",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}/versions",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/results",
        "/v1/jobs/{id}/cancel",
        "/v1/jobs/{id}/deliveries",
        "/v1/webhooks",
        "/v1/webhooks/{id}",
        "/v1/webhooks/{id}/rotate-secret",
        "/v1/webhooks/default-secret",
        "/v1/deliveries/{id}/retry",
      ]),
    );
    expect(doc.paths["/v1/jobs"]).toHaveProperty("post");
    expect(doc.paths["/v1/jobs"]).toHaveProperty("get");
    expect(doc.paths["/v1/models/{name}/versions"]).toHaveProperty("post");
  });

  it("describes what webhook endpoints receive, per event type", () => {
    expect(Object.keys(doc.webhooks ?? {})).toEqual(["job.succeeded", "job.failed", "job.cancelled", "job.expired", "job.progress", "model.alias.rolled_back"]);
    expect(doc.webhooks?.["job.succeeded"]?.post?.requestBody?.content).toHaveProperty(["application/json"]);
  });

  it("documents errors as problem+json and the bearer scheme", () => {
    expect(doc.paths["/v1/jobs"]?.post?.responses["422"]?.content).toHaveProperty(["application/problem+json"]);
    expect(doc.components.schemas).toHaveProperty("Problem");
    expect(doc.components.securitySchemes?.bearerAuth).toMatchObject({ type: "http", scheme: "bearer" });
  });
});

describe("GET /docs", () => {
  let html: string;
  beforeAll(async () => {
    const response = await get(suite.api, null, "/docs");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/html/);
    html = await response.text();
  });

  it("loads Swagger UI from this server, not a CDN", () => {
    expect(html).toContain("/docs/assets/swagger-ui-bundle.js");
    const sources = [...html.matchAll(/<(?:script|link)\b[^>]*\b(?:src|href)="([^"]*)"/g)].map((match) => match[1]);
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) expect(source).not.toMatch(/http/i);
    expect(html).toContain("/openapi.json");
  });

  it.each([
    ["swagger-ui-bundle.js", /javascript/],
    ["swagger-ui.css", /^text\/css/],
  ])("serves /docs/assets/%s", async (file, type) => {
    const response = await get(suite.api, null, `/docs/assets/${file}`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(type);
    expect((await response.arrayBuffer()).byteLength).toBeGreaterThan(10_000);
  });

  it("answers 404 problem+json for an asset it does not serve", async () => {
    await expectProblem(await get(suite.api, null, "/docs/assets/package.json"), 404, "not_found");
    await expectProblem(await get(suite.api, null, "/docs/assets/..%2F..%2Fpackage.json"), 404, "not_found");
  });
});
