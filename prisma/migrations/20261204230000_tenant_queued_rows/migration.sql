-- The queued-rows quota (QUOTA_QUEUED_ROWS) sums a tenant's unfinished jobs on every submission
-- (remembered a second per API process). Partial, like the sweeps' indexes: it holds unfinished
-- jobs only, so it stays small however many finished jobs a tenant keeps; tenant_id never changes
-- and completed_at is set once, so the hot updates of a running job's counts stay HOT.
-- (Prisma's schema cannot express partial indexes.)
CREATE INDEX "jobs_unfinished_tenant_id_idx" ON "jobs" ("tenant_id") WHERE "completed_at" IS NULL;
