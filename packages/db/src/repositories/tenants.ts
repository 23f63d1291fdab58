import type { DbClient } from "../connection.ts";
import { newId } from "../ids.ts";

/** A tenant and its own limits; a null limit means the server's default, 0 none. */
export type TenantRecord = { id: string; name: string; rateLimitRowsPerMinute: number | null; quotaQueuedRows: number | null };

type TenantRow = { id: string; name: string; rateLimitRowsPerMinute: number | null; quotaQueuedRows: bigint | null };

const SELECT = { id: true, name: true, rateLimitRowsPerMinute: true, quotaQueuedRows: true } as const;

// quota_queued_rows is a BIGINT; every quota anyone sets fits a double exactly (the API caps it at 2^53).
function toRecord(row: TenantRow): TenantRecord {
  return { ...row, quotaQueuedRows: row.quotaQueuedRows === null ? null : Number(row.quotaQueuedRows) };
}

export async function findTenant(db: DbClient, id: string): Promise<TenantRecord | null> {
  const row = await db.tenant.findUnique({ where: { id }, select: SELECT });
  return row ? toRecord(row) : null;
}

/** The tenant of that name, made when it does not exist yet (a platform admin's key for a new tenant). */
export async function ensureTenant(db: DbClient, name: string): Promise<TenantRecord> {
  return toRecord(await db.tenant.upsert({ where: { name }, update: {}, create: { id: newId("tenant"), name }, select: SELECT }));
}

export type TenantLimitChanges = { rateLimitRowsPerMinute?: number | null; quotaQueuedRows?: number | null };

/** Sets the limits given (null: back to the default); the others stay. Null when there is no such tenant. */
export async function updateTenantLimits(db: DbClient, id: string, changes: TenantLimitChanges): Promise<TenantRecord | null> {
  const { count } = await db.tenant.updateMany({
    where: { id },
    data: {
      ...(changes.rateLimitRowsPerMinute !== undefined ? { rateLimitRowsPerMinute: changes.rateLimitRowsPerMinute } : {}),
      ...(changes.quotaQueuedRows !== undefined ? { quotaQueuedRows: changes.quotaQueuedRows === null ? null : BigInt(changes.quotaQueuedRows) } : {}),
    },
  });
  return count > 0 ? findTenant(db, id) : null;
}
