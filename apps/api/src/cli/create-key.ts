// `npm run keys:create -- --name NAME [--tenant TENANT]`: creates an API key and prints it once.
import { parseArgs } from "node:util";
import { connectDatabase, DEFAULT_DATABASE_URL, migrate, upsertApiKey } from "@coalesce/db";
import { generateApiKey, hashApiKey } from "../auth/api-keys.ts";

const USAGE = "usage: npm run keys:create -- --name NAME [--tenant TENANT]";

const { values } = parseArgs({
  options: { name: { type: "string" }, tenant: { type: "string", default: "default" }, help: { type: "boolean" } },
  strict: true,
});
if (values.help || !values.name) {
  console.error(values.help ? USAGE : `--name is required\n${USAGE}`);
  process.exit(values.help ? 0 : 2);
}

const databaseUrl = process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
await migrate({ databaseUrl });
const db = connectDatabase(databaseUrl, { max: 1 });
try {
  const secret = generateApiKey();
  const owner = await upsertApiKey(db.prisma, {
    tenantName: values.tenant,
    name: values.name,
    hash: hashApiKey(secret),
    prefix: secret.slice(0, 8),
  });
  console.log(`created key '${values.name}' (${owner.keyId}) for tenant '${values.tenant}'.`);
  console.log("This is the only time it is shown; store it now:\n");
  console.log(secret);
} finally {
  await db.close();
}
