// Scopes on every route, read from the published OpenAPI document rather than from a list kept here:
// each operation whose security names a bearerAuth scope is called with a key holding every scope but
// that one (a 403 naming it), with a key holding only that one (anything but a 403), and with admin
// (anything but a 403). Public operations and the docs answer without a key. A route added later is
// covered by the same walk.
import { SCOPES, type Problem, type Scope } from "@coalesce/contracts";
import { randomBytes } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { listOperations, type OpenApiDocument, type OperationRef } from "../hostile/contract.ts";
import { useApiSuite } from "../support/api-suite.ts";
import { expectJson, get } from "../support/http.ts";
import { createScopedKey } from "../support/keys.ts";

/** A request that takes longer than this has hung (every id sent names nothing, so nothing waits). */
const ANSWER_WITHIN_MS = 15_000;

/** Used where a path parameter's schema gives no example. */
const FALLBACK_PARAMS: Record<string, string> = { name: "iris", version: "1", alias: "production", id: "x_01jdq3x8m7k2v9c4n5p6r7s8t9" };

type Keyed = OperationRef & { scope: Scope; url: string };

const suite = useApiSuite("scopes");
let doc: OpenApiDocument;
let keyed: Keyed[] = [];
let publicOperations: (OperationRef & { url: string })[] = [];
/** Per scope: a key with every scope except it (and except admin, which would grant it). */
const withoutScope = new Map<Scope, string>();
/** Per scope: a key with that scope alone. */
const onlyScope = new Map<Scope, string>();
let adminKey: string;
let noScopesKey: string;

/** The operation's path with each parameter filled from its example: plausible, and naming nothing that exists. */
function fillPath(ref: OperationRef): string {
  return ref.path.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const parameter = ref.operation.parameters?.find((candidate) => candidate.in === "path" && candidate.name === name);
    const example = parameter?.schema.example ?? FALLBACK_PARAMS[name];
    if (example === undefined) throw new Error(`${ref.id}: no example for path parameter {${name}}: give its schema one`);
    return encodeURIComponent(String(example));
  });
}

async function call(ref: { method: string; url: string }, auth: string | null): Promise<{ status: number; contentType: string; body: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${ref.method} ${ref.url}: no answer within ${ANSWER_WITHIN_MS} ms`)), ANSWER_WITHIN_MS);
  });
  try {
    const response = await Promise.race([Promise.resolve(suite.api.app.request(ref.url, { method: ref.method, headers: auth ? { Authorization: auth } : {} })), timeout]);
    return { status: response.status, contentType: response.headers.get("content-type") ?? "", body: await response.text() };
  } finally {
    clearTimeout(timer);
  }
}

/** What is wrong with a refusal, or null: a 403 naming the scope, as problem+json (as `{"error"}` under /v2, the protocol's form). */
function refusalProblem(ref: Keyed, answer: { status: number; contentType: string; body: string }): string | null {
  const where = `${ref.id} (${ref.method} ${ref.url}) without ${ref.scope}`;
  if (answer.status !== 403) return `${where}: answered ${answer.status}, not 403: ${answer.body.slice(0, 200)}`;
  const v2 = ref.path.startsWith("/v2/");
  if (!answer.contentType.startsWith(v2 ? "application/json" : "application/problem+json")) return `${where}: 403 as ${answer.contentType}`;
  const body = JSON.parse(answer.body) as Problem | { error: string };
  const message = "error" in body ? body.error : body.detail;
  if (!("error" in body) && body.code !== "forbidden") return `${where}: 403 with code ${body.code}`;
  if (!message.includes(`'${ref.scope}'`)) return `${where}: the 403 does not name the scope: ${message}`;
  return null;
}

beforeAll(async () => {
  doc = await expectJson<OpenApiDocument>(await get(suite.api, null, "/openapi.json"), 200);
  for (const ref of listOperations(doc)) {
    const scope = (ref.operation.security ?? doc.security ?? []).flatMap((requirement) => requirement.bearerAuth ?? [])[0] as Scope | undefined;
    if (scope) keyed.push({ ...ref, scope, url: fillPath(ref) });
    else publicOperations.push({ ...ref, url: fillPath(ref) });
  }
  keyed = keyed.sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
  // All the keys in one tenant: what differs between them is only their scopes.
  const tenant = `scopes-${randomBytes(3).toString("hex")}`;
  for (const scope of SCOPES) {
    withoutScope.set(scope, (await createScopedKey(suite.api, tenant, SCOPES.filter((other) => other !== scope && other !== "admin"))).auth);
    onlyScope.set(scope, (await createScopedKey(suite.api, tenant, [scope])).auth);
  }
  adminKey = (await createScopedKey(suite.api, tenant, ["admin"])).auth;
  noScopesKey = (await createScopedKey(suite.api, tenant, [])).auth;
});

describe("scopes, walked from the OpenAPI document", () => {
  it("has a scope on every /v1 and /v2/models operation, and every scope on some operation", () => {
    const keyedPaths = (path: string) => path.startsWith("/v1/") || path.startsWith("/v2/models/");
    expect(publicOperations.filter((ref) => keyedPaths(ref.path)).map((ref) => ref.id)).toEqual([]);
    expect(keyed.filter((ref) => !(SCOPES as readonly string[]).includes(ref.scope)).map((ref) => `${ref.id}: ${ref.scope}`)).toEqual([]);
    expect([...new Set(keyed.map((ref) => ref.scope))].sort()).toEqual([...SCOPES].sort());
    console.log(`scopes: ${keyed.length} keyed operations\n${keyed.map((ref) => `  ${ref.scope.padEnd(15)} ${ref.method.padEnd(6)} ${ref.path}`).join("\n")}`);
  });

  it("refuses each operation (403 naming its scope) to a key with every other scope", async () => {
    const problems: string[] = [];
    for (const ref of keyed) {
      const problem = refusalProblem(ref, await call(ref, withoutScope.get(ref.scope) as string));
      if (problem) problems.push(problem);
    }
    expect(problems).toEqual([]);
  });

  it("refuses every keyed operation to a key with no scopes", async () => {
    const problems: string[] = [];
    for (const ref of keyed) {
      const problem = refusalProblem(ref, await call(ref, noScopesKey));
      if (problem) problems.push(problem);
    }
    expect(problems).toEqual([]);
  });

  it("does not refuse an operation (no 403) to a key with exactly its scope", async () => {
    const refused: string[] = [];
    for (const ref of keyed) {
      const answer = await call(ref, onlyScope.get(ref.scope) as string);
      if (answer.status === 403 || answer.status === 401 || answer.status >= 500) refused.push(`${ref.id} with ${ref.scope}: ${answer.status} ${answer.body.slice(0, 200)}`);
    }
    expect(refused).toEqual([]);
  });

  it("lets admin through every operation", async () => {
    const refused: string[] = [];
    for (const ref of keyed) {
      const answer = await call(ref, adminKey);
      if (answer.status === 403 || answer.status === 401 || answer.status >= 500) refused.push(`${ref.id}: ${answer.status} ${answer.body.slice(0, 200)}`);
    }
    expect(refused).toEqual([]);
  });

  it("answers the public operations (health, the /v2 server routes) and the docs without a key", async () => {
    expect(publicOperations.map((ref) => ref.path).sort()).toEqual(expect.arrayContaining(["/healthz", "/readyz", "/v2", "/v2/health/live", "/v2/health/ready"]));
    const refused: string[] = [];
    for (const ref of [...publicOperations, { method: "GET", url: "/openapi.json" }, { method: "GET", url: "/docs" }, { method: "GET", url: "/docs/assets/swagger-ui.css" }]) {
      const answer = await call(ref, null);
      // Readiness may say 503 (no worker runs here); what matters is that no key was asked for.
      if (answer.status === 401 || answer.status === 403 || (answer.status >= 400 && answer.status !== 503)) refused.push(`${ref.method} ${ref.url}: ${answer.status}`);
    }
    expect(refused).toEqual([]);
  });

  it("asks for a key (401) on every keyed operation called without one", async () => {
    const wrong: string[] = [];
    for (const ref of keyed) {
      const answer = await call(ref, null);
      if (answer.status !== 401) wrong.push(`${ref.id}: ${answer.status}`);
    }
    expect(wrong).toEqual([]);
  });
});
