// bull-board at /admin/queues, in process on the test's own Postgres schema and queue prefix: who may
// open it (HTTP Basic with the key as password, or Bearer; only the platform tenant's admin keys),
// read-only by default, the page and every asset it names served by the API itself (no CDN), and the
// queue it shows being the project's, under this test's prefix.
import type { ChunkJob } from "@coalesce/contracts";
import { PREDICT_QUEUE } from "@coalesce/queue";
import { beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../apps/api/src/app.ts";
import { useApiSuite } from "../support/api-suite.ts";
import { expectJson, expectProblem } from "../support/http.ts";
import { createScopedKey } from "../support/keys.ts";

const suite = useApiSuite("queue-admin");
/** The platform tenant's name when PLATFORM_TENANT is not set (createTestApi sets none). */
const PLATFORM = "default";

let platformAdmin: string;
let platformReader: string;
let otherTenantAdmin: string;

/** `Authorization: Basic` as a browser sends it after its prompt: any user name, the key as password. */
function basic(bearer: string, user = "admin"): string {
  return `Basic ${Buffer.from(`${user}:${bearer.replace(/^Bearer /, "")}`).toString("base64")}`;
}

function call(path: string, auth: string | null, init: RequestInit = {}, app = suite.api.app): Promise<Response> {
  const headers = new Headers(init.headers);
  if (auth) headers.set("Authorization", auth);
  return Promise.resolve(app.request(path, { ...init, headers }));
}

beforeAll(async () => {
  platformAdmin = (await createScopedKey(suite.api, PLATFORM, ["admin"])).auth;
  platformReader = (await createScopedKey(suite.api, PLATFORM, ["jobs:read", "models:read"])).auth;
  otherTenantAdmin = (await createScopedKey(suite.api, `queue-admin-other-${Date.now()}`, ["admin"])).auth;
  // A chunk in the test's queue, with no worker on this prefix: it waits there for the board to show.
  const data: ChunkJob = { modelVersionId: "mv_queue_admin", chunks: [{ chunkId: "ch_queue_admin", jobId: "job_queue_admin" }] };
  await suite.api.deps.queue.add("score", data, { jobId: "ch_queue_admin" });
});

describe("signing in to the queue admin", () => {
  it("asks a browser for Basic credentials (401 with WWW-Authenticate: Basic) when none are sent", async () => {
    const response = await call("/admin/queues", null);
    expect(response.headers.get("www-authenticate")).toMatch(/^Basic realm="[^"]+"/);
    const problem = await expectProblem(response, 401, "unauthorized");
    expect(problem.detail).toMatch(/password/);
  });

  it("asks again (401, Basic) for a wrong key, and for a Basic header without a password", async () => {
    for (const auth of [basic("Bearer csk_not_a_key_at_all_0000"), "Basic bm9wYXNzd29yZA==", "Basic %%%"]) {
      const response = await call("/admin/queues", auth);
      expect(response.headers.get("www-authenticate"), auth).toMatch(/^Basic realm=/);
      await expectProblem(response, 401, "unauthorized");
    }
  });

  it("refuses (403) a key of the platform tenant without admin, naming the scope", async () => {
    for (const auth of [basic(platformReader), platformReader]) {
      const problem = await expectProblem(await call("/admin/queues/api/queues", auth), 403, "forbidden");
      expect(problem.detail).toContain("'admin'");
    }
  });

  it("refuses (403) another tenant's admin key: the queue holds every tenant's work", async () => {
    const problem = await expectProblem(await call("/admin/queues", basic(otherTenantAdmin)), 403, "forbidden");
    expect(problem.detail).toContain(`'${PLATFORM}'`);
  });

  it("opens for the platform's admin key, as the Basic password (any user name) or as a Bearer key", async () => {
    for (const auth of [basic(platformAdmin), basic(platformAdmin, "someone"), platformAdmin]) {
      const response = await call("/admin/queues", auth);
      expect(response.status, auth).toBe(200);
      expect(response.headers.get("content-type")).toMatch(/^text\/html/);
      expect(await response.text()).toContain('<base href="/admin/queues/"');
    }
  });

  it("sends /admin/queues/ to /admin/queues, and answers an unknown admin path with a problem+json 404", async () => {
    const slash = await call("/admin/queues/", null);
    expect(slash.status).toBe(301);
    expect(slash.headers.get("location")).toBe("/admin/queues");
    await expectProblem(await call("/admin/queues/nothing/here", basic(platformAdmin)), 404, "not_found");
  });

  it("leaves the OpenAPI document alone: no /admin path in it", async () => {
    const doc = await expectJson<{ paths: Record<string, unknown> }>(await call("/openapi.json", null), 200);
    expect(Object.keys(doc.paths).filter((path) => path.startsWith("/admin"))).toEqual([]);
  });
});

describe("the page works offline", () => {
  it("names no other origin, and every script, stylesheet and icon it names loads (200) through the API", async () => {
    const auth = basic(platformAdmin);
    const response = await call("/admin/queues", auth);
    expect(response.headers.get("content-security-policy")).toContain("default-src 'self'");
    expect(response.headers.get("x-frame-options")).toBe("DENY");
    const html = await response.text();
    const references = [...html.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((match) => match[1] as string);
    expect(references.filter((ref) => /^(?:[a-z]+:)?\/\//i.test(ref))).toEqual([]);
    const assets = references.filter((ref) => ref.startsWith("static/"));
    expect(assets.some((ref) => ref.endsWith(".js"))).toBe(true);
    expect(assets.some((ref) => ref.endsWith(".css"))).toBe(true);
    const answers = await Promise.all(
      // Relative to <base href="/admin/queues/">, as the browser resolves them.
      assets.map(async (ref) => {
        const asset = await call(`/admin/queues/${ref}`, auth);
        return `${asset.status} ${asset.headers.get("content-type")?.split(";")[0]} ${ref} (${(await asset.arrayBuffer()).byteLength} bytes)`;
      }),
    );
    expect(answers.filter((line) => !/^200 (?:text\/javascript|application\/javascript|text\/css|image\/\S+) /.test(line) || / \(0 bytes\)$/.test(line))).toEqual([]);
  });

  it("keeps its assets behind the sign-in too", async () => {
    const html = await (await call("/admin/queues", basic(platformAdmin))).text();
    const script = /src="(static\/js\/[^"]+\.js)"/.exec(html)?.[1];
    expect(script).toBeDefined();
    await expectProblem(await call(`/admin/queues/${script}`, null), 401, "unauthorized");
  });
});

type BoardQueue = { name: string; description?: string; readOnlyMode: boolean; counts: Record<string, number> };

describe("the queues on the board", () => {
  it("lists the project's BullMQ queue under the test's prefix, with the chunk waiting in it", async () => {
    const { queues } = await expectJson<{ queues: BoardQueue[] }>(await call("/admin/queues/api/queues", basic(platformAdmin)), 200);
    expect(queues.map((queue) => queue.name)).toEqual([PREDICT_QUEUE]);
    const [predict] = queues;
    expect(predict?.description).toContain(`${suite.services.queuePrefix}:${PREDICT_QUEUE}:`);
    expect(predict?.readOnlyMode).toBe(true);
    expect(predict?.counts.waiting).toBe(1);
  });

  it("refuses every change while read-only (QUEUE_ADMIN=read, the default), with a problem+json 403", async () => {
    const auth = basic(platformAdmin);
    for (const [method, path] of [
      ["PUT", "/admin/queues/api/queues/predict/clean/waiting"],
      ["PUT", "/admin/queues/api/queues/predict/retry/failed"],
      ["PUT", "/admin/queues/api/queues/predict/ch_queue_admin/retry"],
      ["PUT", "/admin/queues/api/queues/predict/empty"],
      ["PUT", "/admin/queues/api/queues/predict/pause"],
      ["POST", "/admin/queues/api/queues/predict/add"],
    ] as const) {
      const problem = await expectProblem(await call(path, auth, { method, headers: { "Sec-Fetch-Site": "same-origin" } }), 403, "forbidden");
      expect(problem.detail).toContain("QUEUE_ADMIN=write");
    }
    expect(await suite.api.deps.queue.getJobCountByTypes("waiting")).toBe(1);
    expect(await suite.api.deps.queue.isPaused()).toBe(false);
  });

  it("with QUEUE_ADMIN=write, lets the board change the queue, audits it, and refuses a change sent from another site", async () => {
    const app = createApp({ ...suite.api.deps, queueAdmin: "write" });
    const auth = basic(platformAdmin);
    const crossSite = await call("/admin/queues/api/queues/predict/pause", auth, { method: "PUT", headers: { "Sec-Fetch-Site": "cross-site", Origin: "https://evil.example" } }, app);
    await expectProblem(crossSite, 403, "forbidden");
    const noFetchMetadata = await call("/admin/queues/api/queues/predict/pause", auth, { method: "PUT", headers: { Origin: "https://evil.example", Host: "coalesce.example" } }, app);
    await expectProblem(noFetchMetadata, 403, "forbidden");
    expect(await suite.api.deps.queue.isPaused()).toBe(false);

    const paused = await call("/admin/queues/api/queues/predict/pause", auth, { method: "PUT", headers: { "Sec-Fetch-Site": "same-origin" } }, app);
    expect(paused.status, await paused.clone().text()).toBeLessThan(300);
    expect(await suite.api.deps.queue.isPaused()).toBe(true);
    const resumed = await call("/admin/queues/api/queues/predict/resume", auth, { method: "PUT", headers: { "Sec-Fetch-Site": "same-origin" } }, app);
    expect(resumed.status).toBeLessThan(300);
    expect(await suite.api.deps.queue.isPaused()).toBe(false);
    const { queues } = await expectJson<{ queues: BoardQueue[] }>(await call("/admin/queues/api/queues", auth, {}, app), 200);
    expect(queues[0]?.readOnlyMode).toBe(false);

    const audit = await expectJson<{ data: { action: string; resource: string; details: { method: string } }[] }>(
      await call("/v1/audit?action=queue_admin.changed", platformAdmin),
      200,
    );
    expect(audit.data.map((entry) => entry.resource).sort()).toEqual(["predict/pause", "predict/resume"]);
  });

  it("with QUEUE_ADMIN=off, has no route at all (404)", async () => {
    const app = createApp({ ...suite.api.deps, queueAdmin: "off" });
    await expectProblem(await call("/admin/queues", basic(platformAdmin), {}, app), 404, "not_found");
    await expectProblem(await call("/admin/queues/api/queues", basic(platformAdmin), {}, app), 404, "not_found");
  });
});
