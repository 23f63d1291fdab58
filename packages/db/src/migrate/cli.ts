// `npm run db:migrate`: applies prisma/migrations to DIRECT_DATABASE_URL when set (DATABASE_URL goes
// through PgBouncer then, and migrations need a session of their own), else to DATABASE_URL.
import { DEFAULT_DATABASE_URL } from "../defaults.ts";
import { migrate } from "./migrate.ts";

const databaseUrl = process.env.DIRECT_DATABASE_URL || process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
try {
  const result = await migrate({ databaseUrl, log: (message) => console.log(message) });
  console.log(
    result.applied.length === 0
      ? `database is up to date (${result.alreadyApplied} migrations)`
      : `applied ${result.applied.length} migration(s)`,
  );
} catch (error) {
  console.error(`could not migrate ${redactPassword(databaseUrl)}: ${(error as Error).message}`);
  console.error("Check that Postgres is running and DATABASE_URL (or DIRECT_DATABASE_URL) points at it.");
  process.exitCode = 1;
}

function redactPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "DATABASE_URL";
  }
}
