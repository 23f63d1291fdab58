import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/processes.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "../support/services.ts";

const run = promisify(execFile);
// The compiled command that `npm run keys:create` runs.
const CLI = path.join(ROOT, "apps/api/dist/cli/create-key.js");
let services: TestServices;
let api: TestApi;

beforeAll(async () => {
  services = await createTestServices();
  api = createTestApi(services);
});

afterAll(async () => {
  await api?.close();
  await services?.cleanup();
});

function createKey(...args: string[]) {
  return run(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: services.databaseUrl },
  });
}

describe("npm run keys:create", () => {
  it("prints a new key once, and that key authenticates", async () => {
    const { stdout } = await createKey("--name", "laptop", "--tenant", "acme");
    const key = stdout.trim().split("\n").at(-1) ?? "";
    expect(stdout).toContain("only time it is shown");
    expect(key).toMatch(/^csk_[\w-]{20,}$/);
    const response = await api.app.request("/v1/models", { headers: { Authorization: `Bearer ${key}` } });
    expect(response.status).toBe(200);
    // Only the hash is stored.
    const stored = await api.db.prisma.apiKey.findMany({ where: { name: "laptop" } });
    expect(stored).toHaveLength(1);
    expect(JSON.stringify(stored)).not.toContain(key);
  });

  it("keys of one tenant share its models; another tenant's do not see them", async () => {
    const keyOf = async (tenant: string) => (await createKey("--name", "k", "--tenant", tenant)).stdout.trim().split("\n").at(-1) ?? "";
    const [a1, a2, b] = [await keyOf("team-a"), await keyOf("team-a"), await keyOf("team-b")];
    const upload = await api.app.request("/v1/models/tiny/versions", {
      method: "POST",
      headers: { Authorization: `Bearer ${a1}`, "Content-Type": "application/octet-stream" },
      body: await (await import("../support/fixtures.ts")).readModel("iris"),
    });
    expect(upload.status).toBe(201);
    const seen = async (key: string) => (await api.app.request("/v1/models/tiny", { headers: { Authorization: `Bearer ${key}` } })).status;
    expect(await seen(a2)).toBe(200);
    expect(await seen(b)).toBe(404);
  });

  it("--scopes and --expires-in make a scoped key that expires; without them a key has admin", async () => {
    const { stdout } = await createKey("--name", "reader", "--tenant", "scoped", "--scopes", "jobs:read,models:read", "--expires-in", "2h");
    expect(stdout).toContain("with jobs:read, models:read, until ");
    const key = stdout.trim().split("\n").at(-1) ?? "";
    const stored = await api.db.prisma.apiKey.findFirstOrThrow({ where: { name: "reader" } });
    expect(stored.scopes).toEqual(["jobs:read", "models:read"]);
    expect(Math.abs((stored.expiresAt?.getTime() ?? 0) - (Date.now() + 7_200_000))).toBeLessThan(60_000);
    const as = (method: string, url: string) => api.app.request(url, { method, headers: { Authorization: `Bearer ${key}` } });
    expect((await as("GET", "/v1/models")).status).toBe(200);
    expect((await as("GET", "/v1/api-keys")).status).toBe(403);
    const admin = await createKey("--name", "full", "--tenant", "scoped");
    expect(admin.stdout).toContain("with admin.");
  });

  it.each([
    [["--scopes", "jobs:delete"], "unknown scope 'jobs:delete'"],
    [["--scopes", ","], "--scopes names no scope"],
    [["--expires-in", "soon"], "--expires-in: expected a duration"],
  ])("refuses %j (exit 2)", async (args, message) => {
    await expect(createKey("--name", "x", ...args)).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining(message) });
  });

  it("explains its usage when --name is missing", async () => {
    await expect(createKey()).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining("--name is required") });
  });
});
