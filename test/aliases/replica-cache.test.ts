// Two API replicas on one database, each remembering aliases for up to a second (TRUST_MS): a job
// routed by an alias that another replica has just deleted (or deleted and brought back, under a
// new id) is still a job, never a 500 from the jobs -> model_aliases foreign key.
import type { Job } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { offsetRows, registerOffsetVersions, rollbackAlias, setAlias } from "../support/aliases.ts";
import { requestJson, submitJob } from "../support/http.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "../support/services.ts";

let services: TestServices;
let a: TestApi;
let b: TestApi;
let auth: string;

beforeAll(async () => {
  services = await createTestServices();
  a = createTestApi(services);
  b = createTestApi(services);
  auth = await a.createTenant("replicas");
  await registerOffsetVersions(a, auth, "twin", 2);
  await registerOffsetVersions(a, auth, "gone", 2);
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await services?.cleanup();
});

describe("an alias another replica just changed", () => {
  it("a job through an alias deleted on another replica (still remembered here) is accepted, not a 500", async () => {
    await setAlias(a, auth, "twin", "canary", { version: 2 });
    // Replica b remembers the alias now.
    expect((await submitJob(b, auth, { model: "twin@canary", inputs: offsetRows(1) })).status).toBe(202);
    expect((await requestJson(a, auth, "DELETE", "/v1/models/twin/aliases/canary")).status).toBe(204);

    const response = await submitJob(b, auth, { model: "twin@canary", inputs: offsetRows(1, 1) });
    // Within b's second of trust the stale routing may still be used; either way no 500.
    expect([202, 404], await response.clone().text()).toContain(response.status);
    if (response.status === 202) expect(((await response.json()) as Job).model).toMatchObject({ name: "twin", version: 2, alias: "canary" });
  });

  it("nor through an alias deleted and rolled back (a new id) on another replica", async () => {
    await setAlias(a, auth, "twin", "blue", { version: 1 });
    expect((await submitJob(b, auth, { model: "twin@blue", inputs: offsetRows(1, 2) })).status).toBe(202);
    expect((await requestJson(a, auth, "DELETE", "/v1/models/twin/aliases/blue")).status).toBe(204);
    expect((await rollbackAlias(a, auth, "twin", "blue")).status).toBe(200);

    const response = await submitJob(b, auth, { model: "twin@blue", inputs: offsetRows(1, 3) });
    expect(response.status, await response.clone().text()).toBe(202);
  });
});

describe("a version another replica just deleted", () => {
  it("a job pinned to it (still remembered here) is a 404, never a job on a deleted version", async () => {
    // Replica b remembers version 1 now.
    expect((await submitJob(b, auth, { model: "gone@1", inputs: offsetRows(1) })).status).toBe(202);
    const queued = await requestJson(a, auth, "GET", "/v1/jobs?limit=100");
    // The job just made is unfinished (no worker here): it has to go before the version can.
    for (const job of ((await queued.json()) as { data: Job[] }).data) {
      if (job.model.name === "gone") expect((await requestJson(a, auth, "POST", `/v1/jobs/${job.id}/cancel`)).status).toBe(200);
    }
    expect((await requestJson(a, auth, "DELETE", "/v1/models/gone/versions/1")).status).toBe(204);

    const json = await submitJob(b, auth, { model: "gone@1", inputs: offsetRows(1, 1) });
    expect(json.status, await json.clone().text()).toBe(404);
    expect(((await json.json()) as { detail: string }).detail).toMatch(/no version 1/);
    const csv = await b.app.request("/v1/jobs?model=gone@1", { method: "POST", headers: { Authorization: auth, "Content-Type": "text/csv" }, body: "a,b,c,d\n1,2,3,4\n" });
    expect(csv.status, await csv.clone().text()).toBe(404);
    // Nothing was stored for either.
    const { rows } = await a.db.pool.query(`SELECT count(*)::int AS n FROM jobs j JOIN model_versions v ON v.id = j.model_version_id WHERE v.deleted_at IS NOT NULL AND j.status <> 'cancelled'`);
    expect(rows[0]).toEqual({ n: 0 });
  });
});
