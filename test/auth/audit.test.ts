// GET /v1/audit: who (the key id) created, cancelled or deleted what, every key, alias, model, webhook
// and limit change, newest first with cursor paging, per tenant.
import type { AuditAction, AuditEntry, AuditList, CreatedApiKey, CreatedWebhook, Job } from "@coalesce/contracts";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { buildOffsetModel } from "../support/aliases.ts";
import { expectJson, expectProblem, get, irisRows, requestJson, submitJob, uploadModel } from "../support/http.ts";
import { useApiSuite } from "../support/api-suite.ts";

const suite = useApiSuite("audit", { iris: true });

async function auditPage(auth: string, query = ""): Promise<AuditList> {
  return expectJson<AuditList>(await get(suite.api, auth, `/v1/audit${query}`), 200);
}

/** Every entry, following next_cursor, newest first. */
async function allEntries(auth: string, limit = 100): Promise<AuditEntry[]> {
  const entries: AuditEntry[] = [];
  let cursor: string | null = null;
  do {
    const page: AuditList = await auditPage(auth, `?limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`);
    entries.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return entries;
}

/** The key id behind an `Authorization` value, as the audit log names it. */
async function keyIdOf(auth: string): Promise<string> {
  const key = await expectJson<CreatedApiKey>(await requestJson(suite.api, auth, "POST", "/v1/api-keys", { name: "probe", scopes: ["jobs:read"] }), 201);
  const entry = (await auditPage(auth, "?action=api_key.created&limit=1")).data[0];
  expect(entry?.resource).toBe(key.id);
  await requestJson(suite.api, auth, "DELETE", `/v1/api-keys/${key.id}`);
  return entry?.actor ?? "";
}

describe("the audit log", () => {
  it("records each action with the key that did it", async () => {
    const { api, auth } = suite;
    const actor = await keyIdOf(auth);
    expect(actor).toMatch(/^key_/);
    // The suite registered iris with the same key.
    const expected: [AuditAction, string][] = [["model_version.created", "iris@1"]];
    const did = (action: AuditAction, resource: string) => expected.push([action, resource]);

    const json = await expectJson<Job>(await submitJob(api, auth, { model: "iris", inputs: irisRows(3) }), 202);
    did("job.created", json.id);
    const csv = await expectJson<Job>(
      await api.app.request("/v1/jobs?model=iris&id_column=row_id&ignore=target", {
        method: "POST",
        headers: { Authorization: auth, "Content-Type": "text/csv" },
        body: "row_id,a,b,c,d,target\n1,5.1,3.5,1.4,0.2,0\n",
      }),
      202,
    );
    did("job.created", csv.id);
    await expectJson(await requestJson(api, auth, "POST", `/v1/jobs/${json.id}/cancel`), 200);
    did("job.cancelled", json.id);
    expect((await requestJson(api, auth, "DELETE", `/v1/jobs/${csv.id}`)).status).toBe(204);
    did("job.deleted", csv.id);

    for (const offset of [1, 2, 3]) await expectJson(await uploadModel(api, auth, "offset", buildOffsetModel(offset)), 201);
    did("model_version.created", "offset@1");
    did("model_version.created", "offset@2");
    did("model_version.created", "offset@3");
    await expectJson(await requestJson(api, auth, "PATCH", "/v1/models/offset/versions/1", { description: "first" }), 200);
    did("model_version.updated", "offset@1");
    await expectJson(await requestJson(api, auth, "PUT", "/v1/models/offset/aliases/prod", { version: 1 }), 201);
    did("alias.set", "offset@prod");
    await expectJson(await requestJson(api, auth, "PUT", "/v1/models/offset/aliases/prod", { version: 2 }), 200);
    did("alias.set", "offset@prod");
    await expectJson(await requestJson(api, auth, "POST", "/v1/models/offset/aliases/prod/rollback"), 200);
    did("alias.rolled_back", "offset@prod");
    expect((await requestJson(api, auth, "DELETE", "/v1/models/offset/aliases/prod")).status).toBe(204);
    did("alias.deleted", "offset@prod");
    expect((await requestJson(api, auth, "DELETE", "/v1/models/offset/versions/3")).status).toBe(204);
    did("model_version.deleted", "offset@3");

    const webhook = await expectJson<CreatedWebhook>(await requestJson(api, auth, "POST", "/v1/webhooks", { url: "http://127.0.0.1:9/hook" }), 201);
    did("webhook.created", webhook.id);
    expect((await requestJson(api, auth, "DELETE", `/v1/webhooks/${webhook.id}`)).status).toBe(204);
    did("webhook.deleted", webhook.id);

    const key = await expectJson<CreatedApiKey>(await requestJson(api, auth, "POST", "/v1/api-keys", { name: "audited", scopes: ["jobs:write"] }), 201);
    did("api_key.created", key.id);
    await expectJson(await requestJson(api, auth, "POST", `/v1/api-keys/${key.id}/rotate`, { overlap_seconds: 0 }), 200);
    did("api_key.rotated", key.id);
    expect((await requestJson(api, auth, "DELETE", `/v1/api-keys/${key.id}`)).status).toBe(204);
    did("api_key.revoked", key.id);
    const tenant = await expectJson<{ name: string }>(await requestJson(api, auth, "PATCH", "/v1/tenant", { quota_queued_rows: 1000 }), 200);
    did("tenant.limits_updated", tenant.name);

    // job.created is written in the background (the submission does not wait for it): poll for it.
    let seen: AuditEntry[] = [];
    for (let attempt = 0; attempt < 100; attempt++) {
      seen = await allEntries(auth);
      if (seen.filter((entry) => entry.action === "job.created").length === 2) break;
      await sleep(50);
    }
    const sortByAction = (pairs: [string, string][]) => [...pairs].sort(([a, x], [b, y]) => a.localeCompare(b) || x.localeCompare(y));
    // Less keyIdOf's probe key, made and revoked to learn the actor.
    const actual = seen.filter((entry) => !(entry.action === "api_key.created" || entry.action === "api_key.revoked") || entry.resource === key.id);
    expect(sortByAction(actual.map((entry) => [entry.action, entry.resource]))).toEqual(sortByAction(expected));
    for (const entry of seen) expect(entry.actor, entry.action).toBe(actor);
    const created = seen.find((entry) => entry.action === "job.created" && entry.resource === json.id);
    expect(created?.details).toMatchObject({ format: "json", rows: 3 });
    expect(seen.find((entry) => entry.action === "job.created" && entry.resource === csv.id)?.details).toMatchObject({ format: "csv", rows: 1 });
    expect(seen.find((entry) => entry.action === "api_key.created" && entry.resource === key.id)?.details).toMatchObject({ name: "audited", scopes: ["jobs:write"] });
    // Newest first, each with its time.
    const newestFirst = await allEntries(auth);
    expect(newestFirst.map((entry) => Number(entry.id))).toEqual(newestFirst.map((entry) => Number(entry.id)).sort((a, b) => b - a));
    for (const entry of newestFirst) expect(Number.isNaN(Date.parse(entry.at))).toBe(false);
  });

  it("pages with next_cursor: every entry once, and filters by action and actor", async () => {
    const { auth } = suite;
    const all = await allEntries(auth, 100);
    expect(all.length).toBeGreaterThan(5);
    const paged = await allEntries(auth, 2);
    expect(paged.map((entry) => entry.id)).toEqual(all.map((entry) => entry.id));
    const first = await auditPage(auth, "?limit=2");
    expect(first.data).toHaveLength(2);
    expect(first.next_cursor).toBe(first.data[1]?.id);
    const sets = await auditPage(auth, "?action=alias.set");
    expect(sets.data.map((entry) => entry.action)).toEqual(["alias.set", "alias.set"]);
    const actor = all[0]?.actor ?? "";
    expect((await auditPage(auth, `?actor=${actor}&limit=500`)).data).toHaveLength(all.length);
    expect((await auditPage(auth, "?actor=key_nobody")).data).toEqual([]);
  });

  it("shows a tenant only its own entries", async () => {
    const other = await suite.api.createTenant("audit-other");
    expect((await auditPage(other)).data).toEqual([]);
  });

  it.each([
    ["cursor=abc", "cursor"],
    ["cursor=99999999999999999999", "cursor"],
    ["limit=0", "limit"],
    ["limit=501", "limit"],
    ["action=job.exploded", "action"],
  ])("refuses ?%s (422 naming %s)", async (query, field) => {
    const problem = await expectProblem(await get(suite.api, suite.auth, `/v1/audit?${query}`), 422, "validation_failed");
    expect(problem.errors?.map((e) => e.field)).toContain(field);
  });
});
