import { ApiKeySchema, type ApiKey } from "@coalesce/contracts";
import type { ApiKeyRecord } from "@coalesce/db";

export function presentApiKey(record: ApiKeyRecord, now = new Date()): ApiKey {
  return ApiKeySchema.parse({
    id: record.id,
    name: record.name,
    prefix: record.prefix,
    scopes: record.scopes,
    created_at: record.createdAt.toISOString(),
    last_used_at: record.lastUsedAt?.toISOString() ?? null,
    expires_at: record.expiresAt?.toISOString() ?? null,
    revoked_at: record.revokedAt?.toISOString() ?? null,
    // Once the overlap is over the previous secret is as good as gone.
    previous_secret_expires_at: record.previousExpiresAt && record.previousExpiresAt > now ? record.previousExpiresAt.toISOString() : null,
    rate_limit_rps: record.rateLimitRps,
  });
}
