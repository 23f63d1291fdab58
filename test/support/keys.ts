import { randomBytes } from "node:crypto";
import { upsertApiKey } from "@coalesce/db";
import { hashApiKey } from "../../apps/api/src/auth/api-keys.ts";
import type { TestApi } from "./services.ts";

export type TestKey = { auth: string; keyId: string; tenantId: string };

/**
 * A key with exactly `scopes` for the tenant named `tenantName` (created when new), written straight
 * to the test's database: no key management route is needed, and none is being tested through it.
 * Returns the Authorization header value with the ids.
 */
export async function createScopedKey(api: TestApi, tenantName: string, scopes: readonly string[]): Promise<TestKey> {
  const secret = `csk_test_${randomBytes(12).toString("hex")}`;
  const owner = await upsertApiKey(api.db.prisma, { tenantName, name: `scopes ${scopes.join(" ") || "none"}`, hash: hashApiKey(secret), prefix: secret.slice(0, 8) });
  // Before the key's first use, so no API process has remembered it with the column's default (admin).
  await api.db.pool.query(`UPDATE api_keys SET scopes = $2::text[] WHERE id = $1`, [owner.keyId, [...scopes]]);
  return { auth: `Bearer ${secret}`, keyId: owner.keyId, tenantId: owner.tenantId };
}
