// The alias routes and version management against the real API in process and Postgres, with no
// worker: what a client sees of PUT/GET/DELETE of aliases, their validation, history and rollback,
// and of deleting, describing and labelling versions. (Jobs and predictions through aliases, with a
// worker, are in routing.test.ts.)
import type { Alias, AliasComparison, AliasHistoryEntry, Job, Model, ModelVersion } from "@coalesce/contracts";
import { beforeAll, describe, expect, it } from "vitest";
import { buildOffsetModel, offsetRows, putAlias, registerOffsetVersions, rollbackAlias, setAlias } from "../support/aliases.ts";
import { useApiSuite } from "../support/api-suite.ts";
import { readModel } from "../support/fixtures.ts";
import { errorFields, expectJson, expectProblem, get, requestJson, sha256, submitJob, uploadModel } from "../support/http.ts";

const suite = useApiSuite("aliases");

const aliasUrl = (model: string, alias: string) => `/v1/models/${model}/aliases/${alias}`;
const history = async (model: string, alias: string, query = "") =>
  (await expectJson<{ data: AliasHistoryEntry[] }>(await get(suite.api, suite.auth, `${aliasUrl(model, alias)}/history${query}`), 200)).data;
const versionsOf = (routing: Pick<Alias, "routes"> | null) => routing?.routes.map((route) => route.version);
const deleteVersion = (model: string, version: number, auth = suite.auth) => requestJson(suite.api, auth, "DELETE", `/v1/models/${model}/versions/${version}`);
const patchVersion = (model: string, version: number, body: unknown) => requestJson(suite.api, suite.auth, "PATCH", `/v1/models/${model}/versions/${version}`, body);

describe("PUT, GET, list and DELETE of an alias", () => {
  beforeAll(async () => {
    await registerOffsetVersions(suite.api, suite.auth, "flip", 3);
  });

  it("creates an alias from {version} with 201, then changes it with 200, the revision growing", async () => {
    const created = await expectJson<Alias>(await putAlias(suite.api, suite.auth, "flip", "production", { version: 1 }), 201);
    expect(created).toEqual({
      model: "flip",
      name: "production",
      routes: [{ version: 1, weight: 100 }],
      shadow: null,
      guard: null,
      revision: 1,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as string,
      updated_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as string,
    });
    const split = await expectJson<Alias>(
      await putAlias(suite.api, suite.auth, "flip", "production", { routes: [{ version: 1, weight: 90 }, { version: 2, weight: 10 }] }),
      200,
    );
    expect(split).toMatchObject({ routes: [{ version: 1, weight: 90 }, { version: 2, weight: 10 }], revision: 2, created_at: created.created_at });
  });

  it("takes a shadow and a guard, filling the guard's defaults", async () => {
    const body = { routes: [{ version: 1, weight: 50 }, { version: 2, weight: 50 }], shadow: { version: 3, sample: 0.25 }, guard: { max_error_rate: 0.05 } };
    const alias = await expectJson<Alias>(await putAlias(suite.api, suite.auth, "flip", "production", body), 200);
    expect(alias).toMatchObject({
      routes: body.routes,
      shadow: { version: 3, sample: 0.25 },
      guard: { max_error_rate: 0.05, min_rows: 1000, compare_sample: 0.1 },
      revision: 3,
    });
    // A guard over a shadow alone (one route) watches the shadow.
    const shadowed = await expectJson<Alias>(
      await putAlias(suite.api, suite.auth, "flip", "shadowed", { version: 1, shadow: { version: 2, sample: 1 }, guard: { min_agreement: 0.9, min_rows: 10 } }),
      201,
    );
    expect(shadowed).toMatchObject({ routes: [{ version: 1, weight: 100 }], shadow: { version: 2, sample: 1 }, guard: { min_agreement: 0.9, min_rows: 10 } });
  });

  it("GET shows the alias as it is, and the list shows every alias by name", async () => {
    const alias = await expectJson<Alias>(await get(suite.api, suite.auth, aliasUrl("flip", "production")), 200);
    expect(alias).toMatchObject({ name: "production", revision: 3, shadow: { version: 3 } });
    await setAlias(suite.api, suite.auth, "flip", "canary", { version: 2 });
    const list = await expectJson<{ data: Alias[] }>(await get(suite.api, suite.auth, "/v1/models/flip/aliases"), 200);
    expect(list.data.map((a) => [a.name, versionsOf(a)])).toEqual([
      ["canary", [2]],
      ["production", [1, 2]],
      ["shadowed", [1]],
    ]);
    expect(list.data[1]).toEqual(alias);
  });

  it("GET .../comparison answers the alias's (still empty) figures at its revision", async () => {
    const comparison = await expectJson<AliasComparison>(await get(suite.api, suite.auth, `${aliasUrl("flip", "production")}/comparison`), 200);
    expect(comparison).toEqual({ model: "flip", alias: "production", revision: 3, versions: [], pairs: [] });
  });

  it("DELETE answers 204, then the alias is a 404 (and a second DELETE too)", async () => {
    const response = await requestJson(suite.api, suite.auth, "DELETE", aliasUrl("flip", "canary"));
    expect(response.status).toBe(204);
    const problem = await expectProblem(await get(suite.api, suite.auth, aliasUrl("flip", "canary")), 404, "not_found");
    expect(problem.detail).toBe("model 'flip' has no alias 'canary'; create it with PUT /v1/models/flip/aliases/canary");
    await expectProblem(await requestJson(suite.api, suite.auth, "DELETE", aliasUrl("flip", "canary")), 404, "not_found");
    const list = await expectJson<{ data: Alias[] }>(await get(suite.api, suite.auth, "/v1/models/flip/aliases"), 200);
    expect(list.data.map((a) => a.name)).toEqual(["production", "shadowed"]);
  });

  it("a model without aliases lists none", async () => {
    expect((await uploadModel(suite.api, suite.auth, "bare", buildOffsetModel(1))).status).toBe(201);
    expect(await expectJson(await get(suite.api, suite.auth, "/v1/models/bare/aliases"), 200)).toEqual({ data: [] });
    expect(await history("bare", "production")).toEqual([]);
  });

  it.each([
    ["GET", aliasUrl("nope", "production"), undefined],
    ["PUT", aliasUrl("nope", "production"), { version: 1 }],
    ["DELETE", aliasUrl("nope", "production"), undefined],
    ["GET", "/v1/models/nope/aliases", undefined],
    ["GET", `${aliasUrl("nope", "production")}/history`, undefined],
    ["GET", `${aliasUrl("nope", "production")}/comparison`, undefined],
    ["POST", `${aliasUrl("nope", "production")}/rollback`, undefined],
  ])("%s %s on an unknown model: 404 saying there is no such model", async (method, url, body) => {
    const problem = await expectProblem(await requestJson(suite.api, suite.auth, method, url, body), 404, "not_found");
    expect(problem.detail).toMatch(/^no model named 'nope'; register one/);
  });

  it("an unknown alias of a known model: 404 saying the alias is missing, for GET, DELETE, comparison and rollback", async () => {
    for (const [method, url] of [
      ["GET", aliasUrl("flip", "ghost")],
      ["DELETE", aliasUrl("flip", "ghost")],
      ["GET", `${aliasUrl("flip", "ghost")}/comparison`],
      ["POST", `${aliasUrl("flip", "ghost")}/rollback`],
    ] as const) {
      const problem = await expectProblem(await requestJson(suite.api, suite.auth, method, url), 404, "not_found");
      expect(problem.detail, `${method} ${url}`).toContain("model 'flip' has no alias 'ghost'");
    }
  });
});

describe("PUT refuses, with 422 naming the field, and changes nothing", () => {
  beforeAll(async () => {
    await registerOffsetVersions(suite.api, suite.auth, "strict", 3);
    // Version 4 takes other tensors than 1-3 (iris: `features` in, `probabilities` and `label` out).
    expect((await uploadModel(suite.api, suite.auth, "strict", await readModel("iris"))).status).toBe(201);
    expect((await deleteVersion("strict", 3)).status).toBe(204);
    await setAlias(suite.api, suite.auth, "strict", "production", { version: 1 });
  });

  const two = (a: number, b: number, wa = 50, wb = 50) => [
    { version: a, weight: wa },
    { version: b, weight: wb },
  ];

  it.each([
    ["weights that do not sum to 100", { routes: two(1, 2, 60, 30) }, ["routes"], /sum to 90; they must sum to 100/],
    ["a version that does not exist", { version: 9 }, ["version"], /model 'strict' has no version 9/],
    ["a route to a version that does not exist", { routes: two(1, 9) }, ["routes[1].version"], /has no version 9/],
    ["a deleted version", { version: 3 }, ["version"], /model 'strict' has no version 3/],
    ["a deleted shadow version", { version: 1, shadow: { version: 3, sample: 0.5 } }, ["shadow.version"], /has no version 3/],
    ["the same version twice", { routes: two(2, 2) }, ["routes[1].version"], /routed to twice/],
    ["a shadow equal to a route", { routes: two(1, 2), shadow: { version: 2, sample: 0.5 } }, ["shadow.version"], /a shadow must be another version/],
    ["versions whose signatures differ", { routes: two(1, 4) }, ["routes[1].version"], /another input\/output signature than version 1/],
    ["a shadow whose signature differs", { version: 1, shadow: { version: 4, sample: 0.5 } }, ["shadow.version"], /signature/],
    ["a guard without a canary or a shadow", { version: 1, guard: { max_error_rate: 0.1 } }, ["guard"], /give a canary/],
    ["a guard with no limits", { routes: two(1, 2), guard: { min_rows: 10 } }, ["guard"], /max_error_rate or min_agreement/],
    ["both version and routes", { version: 1, routes: two(1, 2) }, ["version"], /either version or routes/],
    ["neither version nor routes", { shadow: { version: 2, sample: 0.5 } }, ["version"], /either version or routes/],
    ["an empty body", {}, ["version"], /either version or routes/],
    ["an unknown field", { version: 1, weights: [100] }, ["weights"], /unknown field/],
    ["a weight of 0", { routes: two(1, 2, 0, 100) }, ["routes[0].weight"], /./],
    ["a shadow sample of 0", { version: 1, shadow: { version: 2, sample: 0 } }, ["shadow.sample"], /./],
    ["a version that is not a number", { version: "2" }, ["version"], /./],
  ])("%s", async (_, body, fields, message) => {
    const problem = await expectProblem(await putAlias(suite.api, suite.auth, "strict", "production", body), 422, "validation_failed");
    expect(errorFields(problem)).toEqual(fields);
    expect(problem.detail).toMatch(message);
    const alias = await expectJson<Alias>(await get(suite.api, suite.auth, aliasUrl("strict", "production")), 200);
    expect(alias).toMatchObject({ routes: [{ version: 1, weight: 100 }], revision: 1 });
  });

  it.each(["Prod", "1abc", "a_b", "x".repeat(64)])("a bad alias name %j names `alias`", async (alias) => {
    for (const [method, body] of [
      ["PUT", { version: 1 }],
      ["GET", undefined],
      ["DELETE", undefined],
    ] as const) {
      const problem = await expectProblem(await requestJson(suite.api, suite.auth, method, aliasUrl("strict", alias), body), 422, "validation_failed");
      expect(errorFields(problem), method).toEqual(["alias"]);
    }
  });

  it("a body that is not JSON: 400; not an object: 422", async () => {
    await expectProblem(await putAlias(suite.api, suite.auth, "strict", "production", "{"), 400, "invalid_json");
    await expectProblem(await putAlias(suite.api, suite.auth, "strict", "production", "[1]"), 422, "validation_failed");
    expect((await get(suite.api, suite.auth, "/v1/models/strict/aliases")).status).toBe(200);
    expect(await history("strict", "production")).toHaveLength(1);
  });
});

describe("history and rollback", () => {
  beforeAll(async () => {
    await registerOffsetVersions(suite.api, suite.auth, "steps", 3);
  });

  it("keeps every change newest first, with the key, and the routing before and after", async () => {
    for (const version of [1, 2, 3]) await setAlias(suite.api, suite.auth, "steps", "production", { version });
    const entries = await history("steps", "production");
    expect(entries.map((e) => [e.action, versionsOf(e.before), versionsOf(e.after), e.undone])).toEqual([
      ["set", [2], [3], false],
      ["set", [1], [2], false],
      ["set", undefined, [1], false],
    ]);
    const [newest] = entries;
    expect(newest).toMatchObject({ key_id: expect.stringMatching(/\S/) as string, reason: null, at: expect.stringMatching(/^\d{4}-/) as string });
    expect(newest?.after).toEqual({ routes: [{ version: 3, weight: 100 }], shadow: null, guard: null });
    expect(new Set(entries.map((e) => e.key_id)).size).toBe(1);
    expect(Number(entries[0]?.id)).toBeGreaterThan(Number(entries[1]?.id));
  });

  it("steps back one change at a time, then answers 409 when there is nothing earlier", async () => {
    const first = await expectJson<Alias>(await rollbackAlias(suite.api, suite.auth, "steps", "production"), 200);
    expect(first).toMatchObject({ routes: [{ version: 2, weight: 100 }], revision: 4 });
    const second = await expectJson<Alias>(await rollbackAlias(suite.api, suite.auth, "steps", "production"), 200);
    expect(second).toMatchObject({ routes: [{ version: 1, weight: 100 }], revision: 5 });
    const problem = await expectProblem(await rollbackAlias(suite.api, suite.auth, "steps", "production"), 409, "conflict");
    expect(problem.detail).toMatch(/^cannot roll 'steps@production' back: .*nothing earlier/);
    expect(await expectJson<Alias>(await get(suite.api, suite.auth, aliasUrl("steps", "production")), 200)).toMatchObject({ routes: [{ version: 1 }], revision: 5 });
    const entries = await history("steps", "production");
    expect(entries.map((e) => [e.action, versionsOf(e.before), versionsOf(e.after), e.undone])).toEqual([
      ["rollback", [2], [1], false],
      ["rollback", [3], [2], false],
      ["set", [2], [3], true],
      ["set", [1], [2], true],
      ["set", undefined, [1], false],
    ]);
  });

  it("a change after rollbacks is itself the next one rolled back", async () => {
    await setAlias(suite.api, suite.auth, "steps", "production", { routes: [{ version: 1, weight: 70 }, { version: 3, weight: 30 }] });
    const back = await expectJson<Alias>(await rollbackAlias(suite.api, suite.auth, "steps", "production"), 200);
    expect(back.routes).toEqual([{ version: 1, weight: 100 }]);
  });

  it("a rollback after DELETE brings the alias back as it was", async () => {
    await setAlias(suite.api, suite.auth, "steps", "production", { routes: [{ version: 2, weight: 80 }, { version: 3, weight: 20 }], shadow: { version: 1, sample: 0.5 } });
    expect((await requestJson(suite.api, suite.auth, "DELETE", aliasUrl("steps", "production"))).status).toBe(204);
    expect((await get(suite.api, suite.auth, aliasUrl("steps", "production"))).status).toBe(404);
    const back = await expectJson<Alias>(await rollbackAlias(suite.api, suite.auth, "steps", "production"), 200);
    expect(back).toMatchObject({ routes: [{ version: 2, weight: 80 }, { version: 3, weight: 20 }], shadow: { version: 1, sample: 0.5 } });
    expect(await expectJson<Alias>(await get(suite.api, suite.auth, aliasUrl("steps", "production")), 200)).toMatchObject({ routes: back.routes });
    const [restored, deleted] = await history("steps", "production");
    expect([restored?.action, restored?.before, versionsOf(restored?.after ?? null)]).toEqual(["rollback", null, [2, 3]]);
    expect([deleted?.action, versionsOf(deleted?.before ?? null), deleted?.after, deleted?.undone]).toEqual(["delete", [2, 3], null, true]);
  });

  it("history outlives a deleted alias", async () => {
    await setAlias(suite.api, suite.auth, "steps", "brief", { version: 1 });
    expect((await requestJson(suite.api, suite.auth, "DELETE", aliasUrl("steps", "brief"))).status).toBe(204);
    expect((await history("steps", "brief")).map((e) => e.action)).toEqual(["delete", "set"]);
  });

  it("pages with limit and before=, newest first, without gaps or repeats", async () => {
    const all = await history("steps", "production", "?limit=200");
    expect(all.length).toBeGreaterThanOrEqual(9);
    const paged: AliasHistoryEntry[] = [];
    let before: string | undefined;
    for (;;) {
      const page = await history("steps", "production", `?limit=2${before ? `&before=${before}` : ""}`);
      if (page.length === 0) break;
      expect(page.length).toBeLessThanOrEqual(2);
      paged.push(...page);
      before = page.at(-1)?.id;
    }
    expect(paged).toEqual(all);
  });

  it("refuses a bad page query with 422 naming it", async () => {
    for (const [query, field] of [
      ["?before=abc", "before"],
      ["?before=0", "before"],
      ["?before=9223372036854775808", "before"],
      ["?before=99999999999999999999", "before"],
      ["?limit=0", "limit"],
      ["?limit=201", "limit"],
    ] as const) {
      const response = await get(suite.api, suite.auth, `${aliasUrl("steps", "production")}/history${query}`);
      expect(errorFields(await expectProblem(response, 422, "validation_failed")), query).toContain(field);
    }
    expect(await history("steps", "production", "?before=9223372036854775807&limit=1")).toHaveLength(1);
  });

  it("a rollback to a routing whose version was deleted since: 422 naming it, and nothing changes", async () => {
    await registerOffsetVersions(suite.api, suite.auth, "stale", 2);
    await setAlias(suite.api, suite.auth, "stale", "production", { version: 1 });
    await setAlias(suite.api, suite.auth, "stale", "production", { version: 2 });
    expect((await deleteVersion("stale", 1)).status).toBe(204);
    const problem = await expectProblem(await rollbackAlias(suite.api, suite.auth, "stale", "production"), 422, "validation_failed");
    expect(problem.errors?.[0]?.message).toMatch(/has no version 1/);
    expect(await expectJson<Alias>(await get(suite.api, suite.auth, aliasUrl("stale", "production")), 200)).toMatchObject({ routes: [{ version: 2 }], revision: 2 });
  });
});

describe("versions", () => {
  beforeAll(async () => {
    await registerOffsetVersions(suite.api, suite.auth, "vers", 3);
  });

  it("GET model shows the aliases that route to each version and those it shadows for", async () => {
    await setAlias(suite.api, suite.auth, "vers", "production", { routes: [{ version: 1, weight: 90 }, { version: 2, weight: 10 }] });
    await setAlias(suite.api, suite.auth, "vers", "canary", { version: 2, shadow: { version: 3, sample: 0.1 } });
    const model = await expectJson<Model>(await get(suite.api, suite.auth, "/v1/models/vers"), 200);
    expect(model.versions.map((v) => [v.version, v.aliases, v.shadow_of])).toEqual([
      [1, ["production"], []],
      [2, ["canary", "production"], []],
      [3, [], ["canary"]],
    ]);
    const list = await expectJson<{ data: Model[] }>(await get(suite.api, suite.auth, "/v1/models"), 200);
    expect(list.data.find((m) => m.name === "vers")?.versions.map((v) => v.aliases)).toEqual([["production"], ["canary", "production"], []]);
  });

  it("DELETE is refused with 409 naming the alias while an alias routes to the version or shadows with it", async () => {
    const routed = await expectProblem(await deleteVersion("vers", 1), 409, "conflict");
    expect(routed.detail).toContain("alias 'production'");
    const shadowed = await expectProblem(await deleteVersion("vers", 3), 409, "conflict");
    expect(shadowed.detail).toContain("alias 'canary'");
    expect((await get(suite.api, suite.auth, "/v1/models/vers")).status).toBe(200);
    expect((await expectJson<Model>(await get(suite.api, suite.auth, "/v1/models/vers"), 200)).versions).toHaveLength(3);
  });

  it("DELETE is refused with 409 naming the job while an unfinished job runs on the version", async () => {
    await setAlias(suite.api, suite.auth, "vers", "canary", { version: 2 });
    // No worker runs in this file: the job stays queued.
    const job = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "vers@3", inputs: offsetRows(2) }), 202);
    expect(job).toMatchObject({ status: "queued", model: { name: "vers", version: 3, alias: null } });
    const problem = await expectProblem(await deleteVersion("vers", 3), 409, "conflict");
    expect(problem.detail).toContain(job.id);
    expect((await requestJson(suite.api, suite.auth, "POST", `/v1/jobs/${job.id}/cancel`)).status).toBe(200);
    expect((await deleteVersion("vers", 3)).status).toBe(204);
    // The finished job still shows the version it ran on.
    expect(await expectJson<Job>(await get(suite.api, suite.auth, `/v1/jobs/${job.id}`), 200)).toMatchObject({ status: "cancelled", model: { version: 3 } });
  });

  it("a deleted version no longer resolves, is not listed, and its number is not given again", async () => {
    for (const response of [
      await submitJob(suite.api, suite.auth, { model: "vers@3", inputs: offsetRows(1) }),
      await requestJson(suite.api, suite.auth, "POST", "/v1/models/vers/versions/3/predict", { inputs: offsetRows(1) }),
      await requestJson(suite.api, suite.auth, "POST", "/v1/models/vers@3/predict", { inputs: offsetRows(1) }),
      await get(suite.api, suite.auth, "/v2/models/vers/versions/3"),
      await patchVersion("vers", 3, { description: "gone" }),
      await deleteVersion("vers", 3),
    ]) {
      expect(response.status, await response.clone().text()).toBe(404);
    }
    expect((await expectJson<Model>(await get(suite.api, suite.auth, "/v1/models/vers"), 200)).versions.map((v) => v.version)).toEqual([1, 2]);
    // A plain name (no production alias here) means the latest version that remains.
    expect((await requestJson(suite.api, suite.auth, "DELETE", aliasUrl("vers", "production"))).status).toBe(204);
    const plain = await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "vers", inputs: offsetRows(1) }), 202);
    expect(plain.model).toEqual({ name: "vers", version: 2, alias: null });
    const next = await expectJson<ModelVersion>(await uploadModel(suite.api, suite.auth, "vers", buildOffsetModel(4000)), 201);
    expect(next.version).toBe(4);
    const model = await expectJson<Model>(await get(suite.api, suite.auth, "/v1/models/vers"), 200);
    expect([model.latest_version, model.versions.map((v) => v.version)]).toEqual([4, [1, 2, 4]]);
  });

  it("uploading the bytes of a deleted version makes a new version", async () => {
    const again = await expectJson<ModelVersion>(await uploadModel(suite.api, suite.auth, "vers", buildOffsetModel(300)), 201);
    expect(again.version).toBe(5);
  });

  it("removes the model file from the store once no version has it, and keeps it while one does", async () => {
    const [a, b] = [buildOffsetModel(11), buildOffsetModel(12)];
    for (const bytes of [a, b, a]) expect((await uploadModel(suite.api, suite.auth, "twins", bytes)).status).toBe(201);
    expect((await uploadModel(suite.api, suite.auth, "twin-other", b)).status).toBe(201);
    const store = suite.api.deps.modelStore;
    expect((await deleteVersion("twins", 1)).status).toBe(204);
    expect(await store.has(sha256(a))).toBe(true); // version 3 has the same file
    expect((await deleteVersion("twins", 2)).status).toBe(204);
    expect(await store.has(sha256(b))).toBe(true); // another model has it
    expect((await deleteVersion("twins", 3)).status).toBe(204);
    expect(await store.has(sha256(a))).toBe(false);
    expect((await expectJson<Model>(await get(suite.api, suite.auth, "/v1/models/twins"), 200)).versions).toEqual([]);
  });

  it("DELETE of an unknown model or version: 404; a bad version: 422 naming it", async () => {
    await expectProblem(await deleteVersion("nope", 1), 404, "not_found");
    await expectProblem(await deleteVersion("vers", 99), 404, "not_found");
    for (const bad of ["0", "abc", "1.5"]) {
      const response = await requestJson(suite.api, suite.auth, "DELETE", `/v1/models/vers/versions/${bad}`);
      expect(errorFields(await expectProblem(response, 422, "validation_failed")), bad).toEqual(["version"]);
    }
  });

  it("PATCH sets the description and labels; a key left out stays; null clears the description", async () => {
    const set = await expectJson<ModelVersion>(await patchVersion("vers", 1, { description: "baseline", labels: { framework: "sklearn", "data.set/v": "iris-2026" } }), 200);
    expect(set).toMatchObject({ version: 1, description: "baseline", labels: { framework: "sklearn", "data.set/v": "iris-2026" }, aliases: [] });
    const relabelled = await expectJson<ModelVersion>(await patchVersion("vers", 1, { labels: { owner: "ml" } }), 200);
    expect(relabelled).toMatchObject({ description: "baseline", labels: { owner: "ml" } });
    const batching = await expectJson<ModelVersion>(await patchVersion("vers", 1, { batching: { max_batch_rows: 8 } }), 200);
    expect(batching).toMatchObject({ description: "baseline", labels: { owner: "ml" }, batching: { max_batch_rows: 8 } });
    const cleared = await expectJson<ModelVersion>(await patchVersion("vers", 1, { description: null, labels: {} }), 200);
    expect(cleared).toMatchObject({ description: null, labels: {} });
    const model = await expectJson<Model>(await get(suite.api, suite.auth, "/v1/models/vers"), 200);
    expect(model.versions[0]).toMatchObject({ description: null, labels: {}, batching: { max_batch_rows: 8 } });
    const fresh = model.versions.find((v) => v.version === 2);
    expect(fresh).toMatchObject({ description: null, labels: {}, aliases: ["canary"], shadow_of: [] });
  });

  it.each([
    ["a label key in upper case", { labels: { Framework: "x" } }, "labels.Framework"],
    ["a label key with a space", { labels: { "a b": "x" } }, "labels.a b"],
    ["a label value that is not a string", { labels: { n: 3 } }, "labels.n"],
    ["a label value of 257 characters", { labels: { n: "x".repeat(257) } }, "labels.n"],
    ["a label value with NUL", { labels: { n: "a\u0000b" } }, "labels.n"],
    ["65 labels", { labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"])) }, "labels"],
    ["labels that are a list", { labels: ["a"] }, "labels"],
    ["a description of 2001 characters", { description: "x".repeat(2001) }, "description"],
    ["a description with NUL", { description: "a\u0000b" }, "description"],
  ])("PATCH refuses %s with 422 naming it", async (_, body, field) => {
    const problem = await expectProblem(await patchVersion("vers", 1, body), 422, "validation_failed");
    expect(errorFields(problem)).toEqual([field]);
  });

  it("PATCH refuses an unknown field with 422 naming it and suggesting the field meant", async () => {
    const problem = await expectProblem(await patchVersion("vers", 1, { label: { a: "b" } }), 422, "validation_failed");
    // With no known field given, the body is also told what it lacks.
    expect(problem.errors?.[0]).toEqual({ field: "label", message: "unknown field; did you mean labels?" });
  });

  it("PATCH refuses an empty body with 422 saying what it takes", async () => {
    const problem = await expectProblem(await patchVersion("vers", 1, {}), 422, "validation_failed");
    expect(problem.detail).toContain("give batching, description or labels");
  });
});

describe("tenant isolation", () => {
  let other: string;
  beforeAll(async () => {
    await registerOffsetVersions(suite.api, suite.auth, "mine", 2);
    await setAlias(suite.api, suite.auth, "mine", "production", { version: 1 });
    await setAlias(suite.api, suite.auth, "mine", "production", { version: 2 });
    other = await suite.api.createTenant("aliases-other");
  });

  it("another tenant cannot see, change, roll back or delete the alias, nor its model's versions: 404", async () => {
    const attempts = [
      ["GET", aliasUrl("mine", "production"), undefined],
      ["GET", "/v1/models/mine/aliases", undefined],
      ["GET", `${aliasUrl("mine", "production")}/history`, undefined],
      ["GET", `${aliasUrl("mine", "production")}/comparison`, undefined],
      ["PUT", aliasUrl("mine", "production"), { version: 1 }],
      ["POST", `${aliasUrl("mine", "production")}/rollback`, undefined],
      ["DELETE", aliasUrl("mine", "production"), undefined],
      ["DELETE", "/v1/models/mine/versions/1", undefined],
      ["PATCH", "/v1/models/mine/versions/1", { description: "mine now" }],
    ] as const;
    for (const [method, url, body] of attempts) {
      const response = await requestJson(suite.api, other, method, url, body);
      expect(response.status, `${method} ${url}`).toBe(404);
    }
    const job = await submitJob(suite.api, other, { model: "mine@production", inputs: offsetRows(1) });
    expect(job.status).toBe(404);
  });

  it("a same-named model of the other tenant has aliases of its own", async () => {
    await registerOffsetVersions(suite.api, other, "mine", 1);
    expect((await get(suite.api, other, aliasUrl("mine", "production"))).status).toBe(404);
    expect((await rollbackAlias(suite.api, other, "mine", "production")).status).toBe(404);
    expect(await expectJson(await get(suite.api, other, `${aliasUrl("mine", "production")}/history`), 200)).toEqual({ data: [] });
    await expectJson<Alias>(await putAlias(suite.api, other, "mine", "production", { version: 1 }), 201);
    // The first tenant's alias is as it was.
    const alias = await expectJson<Alias>(await get(suite.api, suite.auth, aliasUrl("mine", "production")), 200);
    expect(alias).toMatchObject({ routes: [{ version: 2, weight: 100 }], revision: 2 });
    expect(await history("mine", "production")).toHaveLength(2);
  });
});

describe("without a key", () => {
  it("every alias route answers 401", async () => {
    for (const [method, url] of [
      ["GET", aliasUrl("flip", "production")],
      ["PUT", aliasUrl("flip", "production")],
      ["POST", `${aliasUrl("flip", "production")}/rollback`],
      ["DELETE", "/v1/models/flip/versions/1"],
    ] as const) {
      await expectProblem(await requestJson(suite.api, null, method, url, method === "PUT" ? { version: 1 } : undefined), 401, "unauthorized");
    }
  });
});
