import type { Database, DbClient } from "../connection.ts";
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

/** A tenant's own limits; null: the API's default (RATE_LIMIT_ROWS_PER_MINUTE, QUOTA_QUEUED_ROWS), 0: none. */
export type TenantLimits = { rowsPerMinute: number | null; quotaQueuedRows: number | null };

/**
 * The limits set on a tenant (the admin API sets them), or null for no such tenant. Read through the
 * pool rather than Prisma: the API asks on every submission, remembering the answer a second.
 */
export async function readTenantLimits(db: Database, tenantId: string): Promise<TenantLimits | null> {
  const { rows } = await db.pool.query<{ rows_per_minute: number | null; quota_queued_rows: string | null }>({
    name: "read-tenant-limits",
    text: `SELECT rate_limit_rows_per_minute AS rows_per_minute, quota_queued_rows FROM tenants WHERE id = $1`,
    values: [tenantId],
  });
  const row = rows[0];
  if (!row) return null;
  // A BIGINT comes back as text; any quota anyone sets fits a double exactly.
  return { rowsPerMinute: row.rows_per_minute, quotaQueuedRows: row.quota_queued_rows === null ? null : Number(row.quota_queued_rows) };
}

/**
 * The rows the tenant has waiting: over its unfinished jobs, those neither scored nor failed yet. An
 * upload still streaming counts the rows it has stored (its heartbeat raises total_rows as it goes).
 * Served by jobs_unfinished_tenant_id_idx, which holds unfinished jobs only.
 */
export async function countQueuedRows(db: Database, tenantId: string): Promise<number> {
  const { rows } = await db.pool.query<{ queued: string }>({
    name: "count-queued-rows",
    text: `SELECT COALESCE(SUM(GREATEST(total_rows - succeeded_rows - failed_rows, 0)), 0) AS queued
             FROM jobs WHERE tenant_id = $1 AND completed_at IS NULL`,
    values: [tenantId],
  });
  return Number(rows[0]?.queued ?? 0);
}
