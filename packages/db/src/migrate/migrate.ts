import { createHash, randomUUID } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { parseDatabaseUrl, quoteIdent } from "../connection.ts";

export const MIGRATIONS_DIR = fileURLToPath(new URL("../../../../prisma/migrations", import.meta.url));

// The key Prisma's own migrate engine locks on, so this runner and `prisma migrate deploy`
// exclude each other as well as themselves.
const ADVISORY_LOCK_KEY = 72707369;

export type MigrateOptions = {
  databaseUrl: string;
  /** @defaultValue the repository's prisma/migrations */
  migrationsDir?: string;
  log?: (message: string) => void;
};

export type MigrateResult = { applied: string[]; alreadyApplied: number };

/**
 * Applies the committed SQL migrations that the database has not seen, in name order, each in its
 * own transaction, recording them in Prisma's `_prisma_migrations` table. Creates the database and
 * the schema when missing. Safe to run from many processes at once: a Postgres advisory lock makes
 * every other runner wait and then find nothing left to do.
 */
export async function migrate(options: MigrateOptions): Promise<MigrateResult> {
  const log = options.log ?? (() => {});
  const target = parseDatabaseUrl(options.databaseUrl);
  // The advisory lock below is a session's, and so is SET search_path: behind a transaction pooler
  // each statement may run on another server connection, and the lock would outlive this run.
  if (target.pooled) {
    throw new Error("migrations need a direct connection to Postgres, not one through PgBouncer (pgbouncer=true): set DIRECT_DATABASE_URL to the database itself");
  }
  const migrations = await readMigrations(options.migrationsDir ?? MIGRATIONS_DIR);
  await ensureDatabase(target.connectionString, target.database, log);

  const client = new pg.Client({ connectionString: target.connectionString });
  await client.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [ADVISORY_LOCK_KEY]);
    const schema = quoteIdent(target.schema);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query(`SET search_path TO ${schema}`);
    await client.query(`CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
      "id" VARCHAR(36) PRIMARY KEY NOT NULL,
      "checksum" VARCHAR(64) NOT NULL,
      "finished_at" TIMESTAMPTZ,
      "migration_name" VARCHAR(255) NOT NULL,
      "logs" TEXT,
      "rolled_back_at" TIMESTAMPTZ,
      "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
      "applied_steps_count" INTEGER NOT NULL DEFAULT 0
    )`);
    const { rows } = await client.query<{ migration_name: string; checksum: string }>(
      `SELECT migration_name, checksum FROM "_prisma_migrations"
        WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`,
    );
    const done = new Map(rows.map((row) => [row.migration_name, row.checksum]));
    const applied: string[] = [];
    for (const migration of migrations) {
      const seen = done.get(migration.name);
      if (seen !== undefined) {
        if (seen !== migration.checksum) {
          log(`warning: migration ${migration.name} was edited after it was applied; it is not re-run`);
        }
        continue;
      }
      await applyMigration(client, migration);
      applied.push(migration.name);
      log(`applied ${migration.name}`);
    }
    return { applied, alreadyApplied: migrations.length - applied.length };
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [ADVISORY_LOCK_KEY]).catch(() => {});
    await client.end();
  }
}

type Migration = { name: string; sql: string; checksum: string };

async function readMigrations(dir: string): Promise<Migration[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const names = entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
  return Promise.all(
    names.map(async (name) => {
      const sql = await readFile(path.join(dir, name, "migration.sql"), "utf8");
      return { name, sql, checksum: createHash("sha256").update(sql).digest("hex") };
    }),
  );
}

async function applyMigration(client: pg.Client, migration: Migration): Promise<void> {
  await client.query("BEGIN");
  try {
    await client.query(migration.sql);
    await client.query(
      `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count)
       VALUES ($1, $2, now(), $3, 1)`,
      [randomUUID(), migration.checksum, migration.name],
    );
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw new Error(`migration ${migration.name} failed: ${(error as Error).message}`, { cause: error });
  }
}

// A concurrent CREATE DATABASE loses either with 42P04 or, mid-race, on pg_database's unique index.
const DATABASE_EXISTS = new Set(["42P04", "23505"]);
const UNKNOWN_DATABASE = "3D000";

async function ensureDatabase(connectionString: string, database: string, log: (m: string) => void) {
  const probe = new pg.Client({ connectionString });
  try {
    await probe.connect();
    return;
  } catch (error) {
    if ((error as { code?: string }).code !== UNKNOWN_DATABASE) throw error;
  } finally {
    await probe.end().catch(() => {});
  }
  const adminUrl = new URL(connectionString);
  adminUrl.pathname = "/postgres";
  const admin = new pg.Client({ connectionString: adminUrl.toString() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${quoteIdent(database)}`);
    log(`created database ${database}`);
  } catch (error) {
    if (!DATABASE_EXISTS.has((error as { code?: string }).code ?? "")) throw error;
  } finally {
    await admin.end();
  }
}
