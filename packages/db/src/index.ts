export { connectDatabase, parseDatabaseUrl, type Database, type DbClient } from "./connection.ts";
export { DEFAULT_DATABASE_URL } from "./defaults.ts";
export { newId } from "./ids.ts";
export { migrate, MIGRATIONS_DIR, type MigrateOptions, type MigrateResult } from "./migrate/migrate.ts";
export * from "./repositories/api-keys.ts";
export * from "./repositories/chunks.ts";
export * from "./repositories/jobs.ts";
export * from "./repositories/models.ts";
export { JobPriority, JobStatus } from "./generated/enums.ts";
