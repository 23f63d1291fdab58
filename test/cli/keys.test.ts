// `coalesce keys create|list|revoke|rotate` as a user runs them: a child process talking to a real API
// process (as `npm start` starts it) on this test's own schema; no worker is needed.
import { createClient } from "@coalesce/client";
import type { ApiKeyList, CreatedApiKey } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_MAIN, freePort, startProcess, stopProcess, waitUntilReady, type ServiceProcess } from "../../scripts/processes.ts";
import { runCli, type CliRun } from "../support/cli.ts";
import { createTestServices, type TestServices } from "../support/services.ts";

const KEY = "csk_cli_keys_0123456789abcdef";
let services: TestServices;
let api: ServiceProcess | undefined;
let baseUrl: string;

function coalesce(args: string[], key = KEY): Promise<CliRun> {
  return runCli(args, { COALESCE_URL: baseUrl, COALESCE_API_KEY: key });
}

async function ok(args: string[], key = KEY): Promise<CliRun> {
  const run = await coalesce(args, key);
  expect(run.code, `${args.join(" ")}\n${run.stderr}`).toBe(0);
  return run;
}

/** A table's lines as cells (split on the padding), header first. */
function tableRows(text: string): string[][] {
  return text.trim().split("\n").map((line) => line.split(/ {2,}/));
}

/** Whether `key` is let in, polled past the API's second of trust in a valid key. */
async function acceptedWithin(key: string, expected: boolean, boundMs = 5_000): Promise<void> {
  const client = createClient({ baseUrl, apiKey: key });
  const started = Date.now();
  for (;;) {
    const accepted = await client.listJobs().then(
      () => true,
      () => false,
    );
    if (accepted === expected) return;
    if (Date.now() - started > boundMs) throw new Error(`the key was ${accepted ? "still accepted" : "still refused"} after ${boundMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

beforeAll(async () => {
  services = await createTestServices();
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  api = startProcess("api", API_MAIN, { ...services.env, PORT: String(port), BOOTSTRAP_API_KEY: KEY }, "pipe");
  await waitUntilReady(baseUrl, [api]);
});

afterAll(async () => {
  if (api) await stopProcess(api);
  await services?.cleanup();
});

describe("coalesce keys", () => {
  it("create prints the id and the secret once; the key has the scopes asked for, and expires", async () => {
    const run = await ok(["keys", "create", "nightly", "--scopes", "jobs:read", "--expires-in", "30d"]);
    const [id, secretLine] = run.stdout.trim().split("\n");
    expect(id).toMatch(/^key_/);
    const secret = secretLine?.replace(/^secret: /, "") ?? "";
    expect(secret).toMatch(/^csk_/);
    expect(run.stderr).toContain("scopes: jobs:read");
    expect(run.stderr).toContain("not shown again");
    const expires = /until (\S+)/.exec(run.stderr)?.[1] ?? "";
    expect(Math.abs(Date.parse(expires) - (Date.now() + 30 * 86_400_000))).toBeLessThan(60_000);
    const client = createClient({ baseUrl, apiKey: secret });
    await client.listJobs();
    await expect(client.createJob({ model: "iris", inputs: [{ features: [1, 2, 3, 4] }] })).rejects.toMatchObject({ status: 403, code: "forbidden" });
  });

  it("create defaults to jobs:write,jobs:read, and --json prints the whole answer", async () => {
    const created = JSON.parse((await ok(["keys", "create", "submitter", "--json"])).stdout) as CreatedApiKey;
    expect(created).toMatchObject({ name: "submitter", scopes: ["jobs:write", "jobs:read"], expires_at: null });
    expect(created.secret).toMatch(/^csk_/);
  });

  it("list shows a table of the keys, never a secret; --json the list", async () => {
    const created = JSON.parse((await ok(["keys", "create", "listed", "--scopes", "models:read,models:write", "--json"])).stdout) as CreatedApiKey;
    const run = await ok(["keys", "list"]);
    const rows = tableRows(run.stdout);
    expect(rows[0]).toEqual(["ID", "NAME", "PREFIX", "SCOPES", "STATE", "LAST USED"]);
    expect(rows.find((row) => row[0] === created.id)).toEqual([created.id, "listed", created.prefix, "models:read,models:write", "active", "never"]);
    // The bootstrap key keeps full access.
    const bootstrap = rows.find((row) => row[1] === "bootstrap");
    expect(bootstrap?.[3]).toBe("admin");
    expect(run.stdout).not.toContain(created.secret);
    const list = JSON.parse((await ok(["keys", "list", "--json"])).stdout) as ApiKeyList;
    expect(list.data.map((key) => key.id)).toContain(created.id);
  });

  it("revoke: the key is refused within about a second, and gone from the list unless --all", async () => {
    const created = JSON.parse((await ok(["keys", "create", "doomed", "--json"])).stdout) as CreatedApiKey;
    await acceptedWithin(created.secret, true);
    const run = await ok(["keys", "revoke", created.id]);
    expect(run.stderr).toContain(`revoked ${created.id}`);
    await acceptedWithin(created.secret, false);
    expect((await ok(["keys", "list"])).stdout).not.toContain(created.id);
    const all = tableRows((await ok(["keys", "list", "--all"])).stdout);
    expect(all.find((row) => row[0] === created.id)?.[4]).toMatch(/^revoked /);
  });

  it("rotate prints a new secret; with --overlap the old one works for that long", async () => {
    const created = JSON.parse((await ok(["keys", "create", "rotated", "--json"])).stdout) as CreatedApiKey;
    const run = await ok(["keys", "rotate", created.id, "--overlap", "1h"]);
    const secret = /^secret: (\S+)$/m.exec(run.stdout)?.[1] ?? "";
    expect(secret).toMatch(/^csk_/);
    expect(secret).not.toBe(created.secret);
    const until = /works until (\S+?)\./.exec(run.stderr)?.[1] ?? "";
    expect(Math.abs(Date.parse(until) - (Date.now() + 3_600_000))).toBeLessThan(60_000);
    await acceptedWithin(secret, true);
    await acceptedWithin(created.secret, true);
    const now = await ok(["keys", "rotate", created.id, "--overlap", "0", "--json"]);
    const rotated = JSON.parse(now.stdout) as CreatedApiKey;
    expect(rotated.previous_secret_expires_at).toBeNull();
    await acceptedWithin(secret, false);
    await acceptedWithin(rotated.secret, true);
  });

  it.each([
    [["keys", "create"], "missing NAME"],
    [["keys", "create", "x", "--scopes", "jobs:delete"], "unknown scope 'jobs:delete'"],
    [["keys", "create", "x", "--expires-in", "soon"], "--expires-in takes a duration"],
    [["keys", "rotate", "key_01jdq3x8m7k2v9c4n5p6r7s8t9", "--overlap", "1y"], "--overlap takes a duration"],
    [["keys", "revoke"], "missing ID"],
  ])("%j is a usage error (exit 2): %s", async (args, message) => {
    const run = await coalesce(args);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain(message);
  });

  it("the server's refusals are exit 1 with its message: a non-admin key, an unknown key", async () => {
    const reader = JSON.parse((await ok(["keys", "create", "reader", "--scopes", "jobs:read", "--json"])).stdout) as CreatedApiKey;
    const forbidden = await coalesce(["keys", "list"], reader.secret);
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr).toContain("'admin'");
    expect(forbidden.stderr).not.toMatch(/\n\s+at /);
    const unknown = await coalesce(["keys", "revoke", "key_01jdq3x8m7k2v9c4n5p6r7s8t9"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("no API key");
  });

  it("the bootstrap key (an admin of the platform tenant) creates a key for another tenant with --tenant", async () => {
    const created = JSON.parse((await ok(["keys", "create", "acme-admin", "--scopes", "admin", "--tenant", "acme", "--json"])).stdout) as CreatedApiKey;
    const theirs = JSON.parse((await ok(["keys", "list", "--json"], created.secret)).stdout) as ApiKeyList;
    expect(theirs.data.map((key) => key.id)).toEqual([created.id]);
    // acme's admin is not a platform admin.
    const refused = await coalesce(["keys", "create", "x", "--tenant", "other"], created.secret);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("platform tenant");
  });
});
