-- Access control for production (issue 16): scoped, expiring, rotatable keys with limits of their
-- own, tenant limits and quotas, and an audit log.

-- Keys made before scopes existed keep full access.
ALTER TABLE "api_keys"
  ADD COLUMN "scopes" TEXT[] NOT NULL DEFAULT ARRAY['admin']::TEXT[],
  ADD COLUMN "expires_at" TIMESTAMPTZ(3),
  -- During a rotation the previous secret still works until previous_expires_at.
  ADD COLUMN "previous_hash" TEXT,
  ADD COLUMN "previous_expires_at" TIMESTAMPTZ(3),
  -- Per key: requests per second (null: RATE_LIMIT_REQUESTS_PER_SECOND; 0: none).
  ADD COLUMN "rate_limit_rps" INTEGER;
CREATE UNIQUE INDEX "api_keys_previous_hash_key" ON "api_keys"("previous_hash");

-- Per tenant (null: the env defaults RATE_LIMIT_ROWS_PER_MINUTE, QUOTA_QUEUED_ROWS; 0: none).
ALTER TABLE "tenants"
  ADD COLUMN "rate_limit_rows_per_minute" INTEGER,
  ADD COLUMN "quota_queued_rows" BIGINT;

-- Who (a key id, or a token's subject) created, changed, cancelled or deleted what.
CREATE TABLE "audit_log" (
  "id" BIGSERIAL NOT NULL,
  "tenant_id" TEXT NOT NULL,
  "actor" TEXT NOT NULL,
  "action" TEXT NOT NULL,
  "resource" TEXT NOT NULL,
  "details" JSONB,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "audit_log_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "audit_log_tenant_id_id_idx" ON "audit_log"("tenant_id", "id" DESC);
ALTER TABLE "audit_log" ADD CONSTRAINT "audit_log_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;
