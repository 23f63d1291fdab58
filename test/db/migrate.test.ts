import { execFile } from "node:child_process";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { connectDatabase, migrate, MIGRATIONS_DIR } from "@coalesce/db";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/processes.ts";
import { createTestServices, type TestServices } from "../support/services.ts";

const run = promisify(execFile);
const opened: TestServices[] = [];

afterAll(async () => {
  await Promise.all(opened.map((services) => services.cleanup()));
});

/** A test schema that exists but has no tables: createTestServices migrates, so drop and recreate it. */
async function emptySchema(): Promise<TestServices> {
  const services = await createTestServices();
  opened.push(services);
  const client = new pg.Client({ connectionString: services.databaseUrl.replace(/\?.*$/, "") });
  await client.connect();
  await client.query(`DROP SCHEMA "${services.schema}" CASCADE`);
  await client.end();
  return services;
}

async function appliedMigrations(databaseUrl: string): Promise<string[]> {
  const db = connectDatabase(databaseUrl, { max: 1 });
  try {
    const rows = await db.pool.query<{ migration_name: string }>(
      `SELECT migration_name FROM "_prisma_migrations" ORDER BY migration_name`,
    );
    return rows.rows.map((row) => row.migration_name);
  } finally {
    await db.close();
  }
}

describe("migrations", () => {
  it("several processes starting at once apply each migration exactly once", async () => {
    const services = await emptySchema();
    const committed = (await readdir(MIGRATIONS_DIR, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
    // The compiled CLI, as `npm run db:migrate` and the images run it.
    const cli = path.join(ROOT, "packages/db/dist/migrate/cli.js");
    const outputs = await Promise.all(
      [1, 2, 3].map(() => run(process.execPath, [cli], { cwd: ROOT, env: { ...process.env, DATABASE_URL: services.databaseUrl } })),
    );
    const appliedLines = outputs.flatMap((output) => output.stdout.split("\n").filter((line) => line.startsWith("applied ")));
    expect(await appliedMigrations(services.databaseUrl)).toEqual(committed);
    // Each migration name was announced by exactly one of the processes.
    for (const name of committed) {
      expect(appliedLines.filter((line) => line === `applied ${name}`)).toHaveLength(1);
    }
  });

  it("is a no-op once the database is up to date", async () => {
    const services = await emptySchema();
    const first = await migrate({ databaseUrl: services.databaseUrl });
    const again = await Promise.all([1, 2].map(() => migrate({ databaseUrl: services.databaseUrl })));
    expect(first.applied.length).toBeGreaterThan(0);
    expect(again.map((result) => result.applied)).toEqual([[], []]);
  });

  it("creates exactly the tables and columns the Prisma schema describes", async () => {
    const services = await emptySchema();
    await migrate({ databaseUrl: services.databaseUrl });
    const db = connectDatabase(services.databaseUrl, { max: 1 });
    try {
      // Prisma selects every scalar column of a model, so a table or column that the committed SQL
      // lacks (or names differently) fails here.
      await db.prisma.tenant.findFirst();
      await db.prisma.apiKey.findFirst();
      await db.prisma.model.findFirst();
      await db.prisma.modelVersion.findFirst();
      await db.prisma.job.findFirst();
      await db.prisma.jobChunk.findFirst();
      await db.prisma.idempotencyKey.findFirst();
      await db.prisma.webhookEndpoint.findFirst();
      await db.prisma.webhookTenantSecret.findFirst();
      await db.prisma.webhookEvent.findFirst();
      await db.prisma.webhookDelivery.findFirst();
      await db.prisma.webhookAttempt.findFirst();
    } finally {
      await db.close();
    }
  });
});
