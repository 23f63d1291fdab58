import type { Database, DbClient } from "../connection.ts";
import { newId } from "../ids.ts";

export type ApiKeyOwner = { keyId: string; tenantId: string };

/**
 * The tenant a key belongs to, or null for an unknown or revoked key. Runs on every request, so
 * through pg directly rather than Prisma (about a millisecond less each time).
 */
export async function findApiKeyOwner(db: Database, hash: string): Promise<ApiKeyOwner | null> {
  const { rows } = await db.pool.query<ApiKeyOwner>({
    name: "find-api-key-owner",
    text: `SELECT id AS "keyId", tenant_id AS "tenantId" FROM api_keys WHERE hash = $1 AND revoked_at IS NULL`,
    values: [hash],
  });
  return rows[0] ?? null;
}

export type CreateApiKeyInput = { tenantName: string; name: string; hash: string; prefix: string };

/**
 * Stores a key's hash under the named tenant (created when new). Storing a hash that exists
 * already is a no-op, which is what makes the bootstrap key safe to ensure on every start.
 */
export async function upsertApiKey(db: DbClient, input: CreateApiKeyInput): Promise<ApiKeyOwner> {
  const tenant = await db.tenant.upsert({
    where: { name: input.tenantName },
    update: {},
    create: { id: newId("tenant"), name: input.tenantName },
  });
  const key = await db.apiKey.upsert({
    where: { hash: input.hash },
    update: {},
    create: { id: newId("apiKey"), tenantId: tenant.id, name: input.name, prefix: input.prefix, hash: input.hash },
  });
  return { keyId: key.id, tenantId: key.tenantId };
}

/** Records that a key was used; at most one write a minute per key, so requests don't all write. */
export async function touchApiKey(db: DbClient, keyId: string): Promise<void> {
  await db.$executeRaw`
    UPDATE api_keys SET last_used_at = now()
     WHERE id = ${keyId} AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`;
}
