import type { Database } from "../connection.ts";

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
