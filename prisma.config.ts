import path from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "prisma/config";

// Every prisma CLI command first downloads a native schema engine, which this offline environment
// cannot do. `prisma generate` never runs that engine, so pointing the variable at any existing
// file skips the download. Migrations are applied by our own runner (packages/db/src/migrate).
process.env.PRISMA_SCHEMA_ENGINE_BINARY ??= fileURLToPath(import.meta.url);

export default defineConfig({
  schema: path.join("prisma", "schema.prisma"),
  migrations: { path: path.join("prisma", "migrations") },
});
