// The API and worker with DATABASE_URL through PgBouncer in transaction pooling mode, migrations on
// DIRECT_DATABASE_URL: jobs complete, models upload, and concurrent uploads of the same bytes stay
// correct (their advisory locks are transaction-scoped, so they hold through the pooler).
import { readFile } from "node:fs/promises";
import path from "node:path";
import { connectDatabase, migrate } from "@coalesce/db";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestServices, FIXTURES, type TestServices } from "../support/services.ts";
import { findBinary, runIrisJobs, startCoalesce, startPgBouncer, type Coalesce, type PgBouncer } from "./data-topology.ts";

const KEY = "csk_pgbouncer_0123456789abcdef";
const binary = findBinary("pgbouncer", ["/usr/sbin/pgbouncer"]);
if (!binary) console.warn("skipping the PgBouncer test: pgbouncer is not installed (apt-get install pgbouncer)");

describe.skipIf(!binary)("through PgBouncer in transaction mode", () => {
  let services: TestServices;
  let bouncer: PgBouncer;
  let coalesce: Coalesce;

  beforeAll(async () => {
    services = await createTestServices();
    bouncer = await startPgBouncer(binary!, services.databaseUrl, services.schema);
    coalesce = await startCoalesce({ ...services.env, DATABASE_URL: bouncer.url(services.schema), DIRECT_DATABASE_URL: services.databaseUrl }, KEY);
  });

  afterAll(async () => {
    await coalesce?.stop();
    await bouncer?.stop();
    await services?.cleanup();
  });

  it("completes a JSON job and a CSV job", async () => {
    const { json, csv, rows } = await runIrisJobs(coalesce);
    expect(json).toMatchObject({ status: "succeeded", counts: { total: rows, succeeded: rows, failed: 0 } });
    expect(csv).toMatchObject({ status: "succeeded", counts: { total: rows, succeeded: rows, failed: 0 } });
  });

  it("keeps concurrent uploads of the same bytes to one version per model", async () => {
    const bytes = await readFile(path.join(FIXTURES, "digits.onnx"));
    const uploads = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        coalesce.call<{ name: string; version: number }>("POST", `/v1/models/twin-${i % 3}/versions`, bytes, "application/octet-stream"),
      ),
    );
    for (const name of ["twin-0", "twin-1", "twin-2"]) {
      const mine = uploads.filter((upload) => upload.body.name === name);
      expect(mine.map((upload) => upload.status).sort()).toEqual([200, 200, 200, 201]);
      expect(new Set(mine.map((upload) => upload.body.version))).toEqual(new Set([1]));
    }
  });

  it("refuses to migrate through the pooler, naming DIRECT_DATABASE_URL", async () => {
    await expect(migrate({ databaseUrl: bouncer.url(services.schema) })).rejects.toThrow(/DIRECT_DATABASE_URL/);
  });

  it("refuses to start when the pooler's search_path is not the schema asked for", async () => {
    const db = connectDatabase(bouncer.url("some_other_schema"), { max: 1 });
    try {
      await expect(db.warmUp()).rejects.toThrow(/DATABASE_URL: goes through PgBouncer .* asks for schema "some_other_schema"/);
    } finally {
      await db.close();
    }
  });
});
