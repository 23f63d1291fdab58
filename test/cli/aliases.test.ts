// `coalesce models alias ...`, `models rm`, `models label` and `--routing-key` as a user runs them: a
// child process talking to real API and worker processes (started as `npm start` starts them) on this
// test's own schema and queue prefix.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createClient, type CoalesceClient } from "@coalesce/client";
import type { Alias, AliasComparison } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { identityAgainModel as identityAgain, identityModel as identity, negateModel as negate } from "../support/aliases.ts";
import { stopProcess, type ServiceProcess } from "../../scripts/processes.ts";
import { runCli, startCliServices, waitForPredictions, type CliRun } from "../support/cli.ts";
import { createTestServices, type TestServices } from "../support/services.ts";

const KEY = "csk_cli_aliases_0123456789abcdef";
const MODEL = "ident";
let services: TestServices;
let processes: ServiceProcess[] = [];
let baseUrl: string;
let client: CoalesceClient;
let tmp: string;
let output: () => string;

function coalesce(args: string[]): Promise<CliRun> {
  return runCli(args, { COALESCE_URL: baseUrl, COALESCE_API_KEY: KEY });
}

/** Exit 0, nothing on stderr unless allowed; the stdout. */
async function ok(args: string[]): Promise<string> {
  const run = await coalesce(args);
  expect(run.code, `${args.join(" ")}\n${run.stderr}`).toBe(0);
  return run.stdout;
}

/** What a user sees of a failure: the exit status, one `error:` line first, never a stack trace. */
function expectFailure(run: CliRun, message: string, code: number): void {
  expect(run.code, run.stderr).toBe(code);
  expect(run.stderr).toContain(`error: ${message}`);
  expect(run.stderr).not.toMatch(/\n\s+at /);
  expect(run.stdout).toBe("");
}

/** A table's lines as cells (split on the padding), header first. */
function tableRows(text: string): string[][] {
  return text.trim().split("\n").map((line) => line.split(/ {2,}/));
}

const routingOf = (alias: Alias) => ({ routes: alias.routes, shadow: alias.shadow, guard: alias.guard });

beforeAll(async () => {
  services = await createTestServices();
  tmp = await mkdtemp(path.join(tmpdir(), "coalesce-cli-aliases-"));
  ({ baseUrl, processes, output } = await startCliServices({ ...services.env, BOOTSTRAP_API_KEY: KEY, MAX_BATCH_DELAY_MS: "5" }));
  client = createClient({ baseUrl, apiKey: KEY });
  for (const file of [identity, identityAgain, negate]) await client.pushModel(MODEL, file);
  await waitForPredictions(client, { name: MODEL, version: 1 }, { x: [1, 2, 3, 4] });
});

afterAll(async () => {
  await Promise.all(processes.map((service) => stopProcess(service)));
  await services?.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe("coalesce models alias", () => {
  it("set: all traffic to one version, then a canary split with a guard, shown as a table", async () => {
    const one = await ok(["models", "alias", "set", MODEL, "production", "1"]);
    const [title, ...table] = one.trim().split("\n");
    expect(title).toBe(`${MODEL}@production  revision 1, updated ${(await client.getAlias(MODEL, "production")).updated_at}`);
    expect(tableRows(table.join("\n"))).toEqual([
      ["VERSION", "ROLE", "TRAFFIC"],
      ["1", "all traffic", "100%"],
    ]);

    const split = await ok(["models", "alias", "set", MODEL, "production", "1", "--canary", "2=10", "--guard", "max_error_rate=0.01,min_agreement=0.98,min_rows=1000"]);
    expect(tableRows(split.split("\n").slice(1, 4).join("\n"))).toEqual([
      ["VERSION", "ROLE", "TRAFFIC"],
      ["1", "stable", "90%"],
      ["2", "candidate", "10%"],
    ]);
    expect(split).toContain("guard: rolls a candidate back at error<=1%, agreement>=98%, min 1,000 rows (comparing 10% of candidate rows)");
    expect(routingOf(await client.getAlias(MODEL, "production"))).toEqual({
      routes: [
        { version: 1, weight: 90 },
        { version: 2, weight: 10 },
      ],
      shadow: null,
      guard: { max_error_rate: 0.01, min_agreement: 0.98, min_rows: 1000, compare_sample: 0.1 },
    });

    // get (either spelling of the alias) and --json say the same as the API.
    const shown = await ok(["models", "alias", "get", `${MODEL}@production`]);
    expect(shown).toBe(await ok(["models", "alias", "get", MODEL, "production"]));
    expect(JSON.parse(await ok(["models", "alias", "get", MODEL, "production", "--json"]))).toEqual(await client.getAlias(MODEL, "production"));
  });

  it("set --shadow, then predict and submit through aliases with a routing key; comparison shows what both versions said", async () => {
    const shadowed = await ok(["models", "alias", "set", MODEL, "production", "1", "--shadow", "3=1"]);
    expect(tableRows(shadowed.split("\n").slice(1, 4).join("\n"))).toEqual([
      ["VERSION", "ROLE", "TRAFFIC"],
      ["1", "all traffic", "100%"],
      ["3", "shadow", "100% of rows, also scored"],
    ]);
    expect(routingOf(await client.getAlias(MODEL, "production"))).toMatchObject({ routes: [{ version: 1, weight: 100 }], shadow: { version: 3, sample: 1 }, guard: null });

    // A plain name goes through production; the answer says which version and alias answered.
    const plain = await coalesce(["predict", MODEL, "--row", "1,2,3,9", "--routing-key", "user-1", "--no-cache"]);
    expect(plain.code, `${plain.stderr}\n${output()}`).toBe(0);
    expect(plain.stderr).toBe(`1 row, cache miss, model ${MODEL}@1 (via production)\n`);
    expect(tableRows(plain.stdout)[1]).toEqual(["0", "[1, 2, 3, 9]"]);
    const named = await coalesce(["predict", `${MODEL}@production`, "--row", "9,1,2,3", "--no-cache"]);
    expect(named.stderr).toBe(`1 row, cache miss, model ${MODEL}@1 (via production)\n`);

    await ok(["models", "alias", "set", MODEL, "canary", "2"]);
    const csv = path.join(tmp, "rows.csv");
    await writeFile(csv, "a,b,c,d\n1,2,3,9\n9,1,2,3\n");
    const submitted = await coalesce(["submit", csv, "--model", `${MODEL}@canary`, "--routing-key", "team-a", "--wait"]);
    expect(submitted.code, `${submitted.stderr}\n${output()}`).toBe(0);
    expect(submitted.stderr).toMatch(new RegExp(`2 rows for ${MODEL}@2 \\(via canary\\)`));
    expect(submitted.stderr).toContain("succeeded: 2 rows (2 scored, 0 failed)");

    // Workers add their counts every second or so.
    let comparison: AliasComparison = await client.aliasComparison(MODEL, "production");
    for (let i = 0; i < 150 && (comparison.pairs[0]?.compared ?? 0) < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      comparison = await client.aliasComparison(MODEL, "production");
    }
    expect(comparison.pairs[0]?.compared, output()).toBeGreaterThanOrEqual(2);
    const text = await ok(["models", "alias", "comparison", MODEL, "production"]);
    const [title, ...lines] = text.trim().split("\n");
    expect(title).toBe(`${MODEL}@production since revision ${comparison.revision}`);
    const versions = tableRows(lines.slice(0, lines.indexOf("")).join("\n"));
    expect(versions[0]).toEqual(["VERSION", "ROLE", "ROWS", "ERRORS", "ERROR RATE", "MEAN RUN/ROW"]);
    expect(versions.slice(1).map((cells) => cells.slice(0, 2))).toEqual(expect.arrayContaining([["1", "route"], ["3", "shadow"]]));
    const pairs = tableRows(lines.slice(lines.indexOf("") + 1).join("\n"));
    expect(pairs[0]).toEqual(["PAIR", "OUTPUT", "COMPARED", "AGREEMENT", "MEAN ABS DIFF", "MAX ABS DIFF"]);
    // y = x and y = -x never agree on the argmax.
    expect(pairs[1]?.slice(0, 2)).toEqual(["v1 vs v3", "(all)"]);
    expect(pairs[1]?.[3]).toBe("0%");
    expect(pairs.find((cells) => cells[1] === "y")?.slice(0, 2)).toEqual(["v1 vs v3", "y"]);
    expect(JSON.parse(await ok(["models", "alias", "comparison", MODEL, "production", "--json"]))).toMatchObject({ model: MODEL, alias: "production" });
  });

  it("ls: every alias with its versions, shadow and guard", async () => {
    const rows = tableRows(await ok(["models", "alias", "ls", MODEL]));
    expect(rows[0]).toEqual(["ALIAS", "VERSIONS", "SHADOW", "GUARD", "REVISION", "UPDATED"]);
    expect(rows.slice(1).map((cells) => cells.slice(0, 5))).toEqual([
      ["canary", "v2", "-", "-", "1"],
      ["production", "v1", "v3 100%", "-", "3"],
    ]);
    expect(JSON.parse(await ok(["models", "alias", "ls", MODEL, "--json"])).data).toHaveLength(2);
  });

  it("history: time, action, who, before -> after, newest first; rollback steps back and marks the change undone", async () => {
    const before = tableRows(await ok(["models", "alias", "history", MODEL, "production"]));
    expect(before[0]).toEqual(["TIME", "ACTION", "BY", "CHANGE"]);
    expect(before.slice(1).map((cells) => [cells[1], cells[3]])).toEqual([
      ["set", "v1 90%, v2 10% + guard -> v1 + shadow v3 100%"],
      ["set", "v1 -> v1 90%, v2 10% + guard"],
      ["set", "none -> v1"],
    ]);
    expect(before.slice(1).every((cells) => !Number.isNaN(Date.parse(cells[0] ?? "")) && cells[2] !== "guard")).toBe(true);

    const rolled = await ok(["models", "alias", "rollback", MODEL, "production"]);
    expect(rolled).toMatch(new RegExp(`^${MODEL}@production  revision 4,`));
    expect(rolled).toContain("guard: rolls a candidate back");
    expect(routingOf(await client.getAlias(MODEL, "production")).routes).toEqual([
      { version: 1, weight: 90 },
      { version: 2, weight: 10 },
    ]);
    const after = tableRows(await ok(["models", "alias", "history", MODEL, "production"]));
    expect(after.slice(1, 3).map((cells) => [cells[1], cells[3]])).toEqual([
      ["rollback", "v1 + shadow v3 100% -> v1 90%, v2 10% + guard"],
      ["set (undone)", "v1 90%, v2 10% + guard -> v1 + shadow v3 100%"],
    ]);

    const page = await coalesce(["models", "alias", "history", MODEL, "production", "--limit", "2"]);
    expect(tableRows(page.stdout)).toHaveLength(3);
    const older = /older changes: --before (\d+)/.exec(page.stderr)?.[1];
    expect(older, page.stderr).toBeDefined();
    const next = tableRows(await ok(["models", "alias", "history", MODEL, "production", "--limit", "2", "--before", older ?? ""]));
    expect(next.slice(1).map((cells) => cells[3])).toEqual(["v1 -> v1 90%, v2 10% + guard", "none -> v1"]);
  });

  it("models rm deletes a version once no alias uses it; the 409 names the alias", async () => {
    const inUse = await coalesce(["models", "rm", `${MODEL}@2`]);
    expectFailure(inUse, "version 2 is in use by the alias", 1);

    const removed = await coalesce(["models", "alias", "rm", MODEL, "canary"]);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stderr).toContain(`deleted ${MODEL}@canary`);
    await ok(["models", "alias", "set", MODEL, "production", "1"]);
    const deleted = await coalesce(["models", "rm", `${MODEL}@2`]);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stderr).toBe(`deleted ${MODEL} version 2\n`);
    expect((await client.getModel(MODEL)).versions.map((v) => v.version)).toEqual([1, 3]);
    expectFailure(await coalesce(["models", "rm", `${MODEL}@2`]), `model '${MODEL}' has no version 2`, 1);
  });

  it("models label sets and removes labels, keeping the others, and sets or clears the description", async () => {
    const set = await ok(["models", "label", `${MODEL}@1`, "stage=prod", "team=ml", "--description", "the first one"]);
    expect(set).toContain(`${MODEL} version 1\n  labels:      stage=prod, team=ml\n  description: the first one\n  aliases:     production`);
    const removed = await ok(["models", "label", `${MODEL}@1`, "team-", "owner=ana"]);
    expect(removed).toContain("labels:      owner=ana, stage=prod\n  description: the first one");
    await ok(["models", "label", `${MODEL}@1`, "--description", ""]);
    const version = (await client.getModel(MODEL)).versions.find((v) => v.version === 1);
    expect(version).toMatchObject({ labels: { stage: "prod", owner: "ana" }, description: null });
  });
});

describe("coalesce models alias says what is wrong", () => {
  it("a weight or sample that is not a number, --canary without a base version, an unknown guard key: exit 2", async () => {
    expectFailure(await coalesce(["models", "alias", "set", MODEL, "production", "1", "--canary", "2=ten"]), "--canary 2=ten: the weight is a whole percentage from 1 to 99, got 'ten'", 2);
    expectFailure(await coalesce(["models", "alias", "set", MODEL, "production", "1", "--canary", "2"]), "--canary takes VERSION=PERCENT, e.g. --canary 3=10; got '2'", 2);
    expectFailure(await coalesce(["models", "alias", "set", MODEL, "production", "--canary", "2=10"]), "--canary splits the alias between a base VERSION and candidates", 2);
    expectFailure(await coalesce(["models", "alias", "set", MODEL, "production", "1", "--canary", "2=60", "--canary", "3=40"]), "the canaries take 100% of the traffic", 2);
    expectFailure(await coalesce(["models", "alias", "set", MODEL, "production", "1", "--shadow", "3=lots"]), "--shadow: 'lots' is not a number", 2);
    expectFailure(await coalesce(["models", "alias", "set", MODEL, "production", "1", "--guard", "max_errors=0.1"]), "--guard takes KEY=VALUE with KEY one of max_error_rate", 2);
    expectFailure(await coalesce(["models", "alias", "set", MODEL, "production", "one"]), "VERSION takes a whole number of at least 1, got 'one'", 2);
    expectFailure(await coalesce(["models", "alias", "set", MODEL]), "missing ALIAS VERSION", 2);
    expectFailure(await coalesce(["models", "rm", MODEL]), "name the version as NAME@VERSION", 2);
    expectFailure(await coalesce(["models", "label", `${MODEL}@1`]), "give labels (KEY=VALUE, KEY-) or --description TEXT", 2);
    const group = await coalesce(["models", "alias", "frob"]);
    expectFailure(group, "unknown command 'models alias frob'; try models alias set", 2);
    expect(group.stderr).toContain("coalesce models alias --help");
    // Nothing reached the API.
    expect(routingOf(await client.getAlias(MODEL, "production")).routes).toEqual([{ version: 1, weight: 100 }]);
  });

  it("the API's refusals: an unknown alias or model, a version that does not exist, nothing to roll back: exit 1", async () => {
    expectFailure(await coalesce(["models", "alias", "get", MODEL, "nope"]), `model '${MODEL}' has no alias 'nope'`, 1);
    expectFailure(await coalesce(["models", "alias", "history", "no-such-model", "production"]), "no model named 'no-such-model'", 1);
    expectFailure(await coalesce(["models", "alias", "set", MODEL, "canary", "1", "--canary", "9=10"]), `routes[1].version: model '${MODEL}' has no version 9`, 1);
    expectFailure(await coalesce(["models", "alias", "set", MODEL, "Bad_Alias", "1"]), "alias: an alias name is 1-63 characters", 1);
    await ok(["models", "alias", "set", MODEL, "fresh", "1"]);
    expectFailure(await coalesce(["models", "alias", "rollback", MODEL, "fresh"]), `cannot roll '${MODEL}@fresh' back`, 1);
    expectFailure(await coalesce(["predict", `${MODEL}@nope`, "--row", "1,2,3,4"]), `model '${MODEL}' has no alias 'nope'`, 1);
  });

  it("--help lists the alias commands with examples", async () => {
    const help = await ok(["--help"]);
    for (const command of ["set", "ls", "get", "rm", "rollback", "history", "comparison"]) expect(help).toContain(`  models alias ${command} `);
    expect(help).toContain("  models rm ");
    expect(help).toContain("  models label ");
    const group = await ok(["models", "alias", "--help"]);
    expect(group).toMatch(/^Usage: coalesce models alias COMMAND/);
    expect(group).toContain("coalesce models alias set iris production 3");
    const set = await ok(["models", "alias", "set", "--help"]);
    expect(set).toMatch(/^Usage: coalesce models alias set NAME ALIAS VERSION/);
    expect(set).toContain("--canary 3=10");
    expect(await ok(["submit", "--help"])).toContain("--routing-key KEY");
    expect(await ok(["predict", "--help"])).toContain("--routing-key KEY");
  });
});
