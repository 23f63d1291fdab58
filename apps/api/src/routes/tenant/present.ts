import { TenantSchema, type Tenant } from "@coalesce/contracts";
import type { TenantRecord } from "@coalesce/db";

export function presentTenant(record: TenantRecord): Tenant {
  return TenantSchema.parse({
    id: record.id,
    name: record.name,
    limits: { rate_limit_rows_per_minute: record.rateLimitRowsPerMinute, quota_queued_rows: record.quotaQueuedRows },
  });
}
