// `npm run keys:create -- --name NAME [--tenant TENANT] [--scopes S,...] [--expires-in 30d]`: creates an
// API key straight in Postgres and prints it once. The way to make the first key of a tenant; after
// that an admin key can make the others (POST /v1/api-keys, `coalesce keys create`).
import { parseArgs } from "node:util";
import { parseDurationSeconds, SCOPES, type Scope } from "@coalesce/contracts";
import { connectDatabase, DEFAULT_DATABASE_URL, migrate, upsertApiKey } from "@coalesce/db";
import { generateApiKey, hashApiKey } from "../auth/api-keys.ts";

const USAGE = `usage: npm run keys:create -- --name NAME [--tenant TENANT] [--scopes SCOPE,...] [--expires-in DURATION]
  --tenant      the tenant's name, created if new (default: $PLATFORM_TENANT, else default)
  --scopes      comma-separated, of ${SCOPES.join(", ")} (default: admin, every scope)
  --expires-in  e.g. 30d, 12h, 90m, 3600 (seconds) (default: never)`;

function fail(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    name: { type: "string" },
    // The tenant the API puts its bootstrap key in, unless told otherwise.
    tenant: { type: "string", default: process.env.PLATFORM_TENANT || "default" },
    scopes: { type: "string" },
    "expires-in": { type: "string" },
    help: { type: "boolean" },
  },
  strict: true,
});
if (values.help) {
  console.error(USAGE);
  process.exit(0);
}
if (!values.name) fail("--name is required");

const scopes = values.scopes?.split(",").map((scope) => scope.trim()).filter((scope) => scope !== "");
if (scopes !== undefined) {
  if (scopes.length === 0) fail("--scopes names no scope");
  const unknown = scopes.find((scope) => !(SCOPES as readonly string[]).includes(scope));
  if (unknown !== undefined) fail(`--scopes: unknown scope '${unknown}'`);
}
let expiresAt: Date | null = null;
if (values["expires-in"] !== undefined) {
  const seconds = parseDurationSeconds(values["expires-in"]);
  if (!seconds) fail(`--expires-in: expected a duration such as 30d, 12h or 3600, got '${values["expires-in"]}'`);
  expiresAt = new Date(Date.now() + seconds * 1000);
}

const databaseUrl = process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
// Migrations need a session of their own (an advisory lock): not through PgBouncer.
await migrate({ databaseUrl: process.env.DIRECT_DATABASE_URL || databaseUrl });
const db = connectDatabase(databaseUrl, { max: 1 });
try {
  const secret = generateApiKey();
  const owner = await upsertApiKey(db.prisma, {
    tenantName: values.tenant,
    name: values.name,
    hash: hashApiKey(secret),
    prefix: secret.slice(0, 8),
    scopes: scopes as Scope[] | undefined,
    expiresAt,
  });
  const until = expiresAt ? `, until ${expiresAt.toISOString()}` : "";
  console.log(`created key '${values.name}' (${owner.keyId}) for tenant '${values.tenant}' with ${owner.scopes.join(", ")}${until}.`);
  console.log("This is the only time it is shown; store it now:\n");
  console.log(secret);
} finally {
  await db.close();
}
