import type { Database, DbClient } from "../connection.ts";
import { newId } from "../ids.ts";

/** Whose a key is and what it may do; `rateLimitRps` null: the API's default, 0: no limit. */
export type ApiKeyOwner = { keyId: string; tenantId: string; scopes: string[]; rateLimitRps: number | null };

/**
 * The tenant a key belongs to, or null for an unknown or revoked key. Runs on every request, so
 * through pg directly rather than Prisma (about a millisecond less each time).
 */
export async function findApiKeyOwner(db: Database, hash: string): Promise<ApiKeyOwner | null> {
  const { rows } = await db.pool.query<ApiKeyOwner>({
    name: "find-api-key-owner",
    // The current secret, or the previous one during a rotation's overlap; never a revoked or expired key.
    text: `SELECT id AS "keyId", tenant_id AS "tenantId", scopes, rate_limit_rps AS "rateLimitRps" FROM api_keys
            WHERE (hash = $1 OR (previous_hash = $1 AND previous_expires_at > now()))
              AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`,
    values: [hash],
  });
  return rows[0] ?? null;
}

export type CreateApiKeyInput = {
  tenantName: string;
  name: string;
  hash: string;
  prefix: string;
  /** @defaultValue ["admin"] (the column's default: what keys made before scopes have) */
  scopes?: readonly string[] | undefined;
  /** @defaultValue null (never expires) */
  expiresAt?: Date | null | undefined;
};

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
    create: {
      id: newId("apiKey"),
      tenantId: tenant.id,
      name: input.name,
      prefix: input.prefix,
      hash: input.hash,
      ...(input.scopes ? { scopes: [...input.scopes] } : {}),
      ...(input.expiresAt ? { expiresAt: input.expiresAt } : {}),
    },
  });
  return { keyId: key.id, tenantId: key.tenantId, scopes: key.scopes, rateLimitRps: key.rateLimitRps };
}

/** Records that a key was used; at most one write a minute per key, so requests don't all write. */
export async function touchApiKey(db: DbClient, keyId: string): Promise<void> {
  await db.$executeRaw`
    UPDATE api_keys SET last_used_at = now()
     WHERE id = ${keyId} AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`;
}

/** A key as the management API shows it (never the secret; the hash stays in the database). */
export type ApiKeyRecord = {
  id: string;
  tenantId: string;
  name: string;
  prefix: string;
  scopes: string[];
  createdAt: Date;
  lastUsedAt: Date | null;
  expiresAt: Date | null;
  revokedAt: Date | null;
  previousExpiresAt: Date | null;
  rateLimitRps: number | null;
};

const RECORD_SELECT = {
  id: true,
  tenantId: true,
  name: true,
  prefix: true,
  scopes: true,
  createdAt: true,
  lastUsedAt: true,
  expiresAt: true,
  revokedAt: true,
  previousExpiresAt: true,
  rateLimitRps: true,
} as const;

export type NewApiKey = {
  tenantId: string;
  name: string;
  hash: string;
  prefix: string;
  scopes: readonly string[];
  expiresAt: Date | null;
  rateLimitRps: number | null;
};

/** Stores a new key (its hash) for a tenant that exists. */
export async function createApiKey(db: DbClient, input: NewApiKey): Promise<ApiKeyRecord> {
  return db.apiKey.create({
    data: {
      id: newId("apiKey"),
      tenantId: input.tenantId,
      name: input.name,
      prefix: input.prefix,
      hash: input.hash,
      scopes: [...input.scopes],
      expiresAt: input.expiresAt,
      rateLimitRps: input.rateLimitRps,
    },
    select: RECORD_SELECT,
  });
}

/** A tenant's keys, newest first; revoked ones only when asked for. */
export async function listApiKeys(db: DbClient, tenantId: string, options: { includeRevoked?: boolean } = {}): Promise<ApiKeyRecord[]> {
  return db.apiKey.findMany({
    where: { tenantId, ...(options.includeRevoked ? {} : { revokedAt: null }) },
    orderBy: { id: "desc" },
    select: RECORD_SELECT,
  });
}

export async function findApiKey(db: DbClient, tenantId: string, id: string): Promise<ApiKeyRecord | null> {
  return db.apiKey.findFirst({ where: { id, tenantId }, select: RECORD_SELECT });
}

/**
 * Revokes a key, its previous secret with it. Null: the tenant has no such key; `revoked: false`: it was
 * revoked already (nothing changed). Every API process stops accepting it once its trust of the key
 * (a second, see the auth middleware) runs out.
 */
export async function revokeApiKey(db: Database, tenantId: string, id: string): Promise<{ key: ApiKeyRecord; revoked: boolean } | null> {
  const { rows } = await db.pool.query<{ id: string }>(
    `UPDATE api_keys SET revoked_at = now(), previous_hash = NULL, previous_expires_at = NULL
      WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL RETURNING id`,
    [id, tenantId],
  );
  const key = await findApiKey(db.prisma, tenantId, id);
  return key ? { key, revoked: rows.length > 0 } : null;
}

export type RotateApiKeyOutcome = { rotated: ApiKeyRecord } | { notFound: true } | { revoked: true };

/**
 * Gives a key a new secret; the one it replaces keeps working for `overlapSeconds` (0: not at all).
 * One statement, so two rotations at once cannot both keep "the previous" secret: the later one's
 * previous is the earlier one's new secret, and the oldest stops at once.
 */
export async function rotateApiKey(
  db: Database,
  tenantId: string,
  id: string,
  secret: { hash: string; prefix: string },
  overlapSeconds: number,
): Promise<RotateApiKeyOutcome> {
  const { rows } = await db.pool.query<{ id: string }>(
    `UPDATE api_keys
        SET previous_hash = CASE WHEN $5::int > 0 THEN hash END,
            previous_expires_at = CASE WHEN $5::int > 0 THEN now() + make_interval(secs => $5::int) END,
            hash = $3, prefix = $4
      WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL RETURNING id`,
    [id, tenantId, secret.hash, secret.prefix, overlapSeconds],
  );
  const key = await findApiKey(db.prisma, tenantId, id);
  if (!key) return { notFound: true };
  return rows.length > 0 ? { rotated: key } : { revoked: true };
}
