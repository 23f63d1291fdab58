-- Webhooks: registered endpoints, the tenant's default secret (for per-job webhook_url), and an
-- outbox of events with one delivery per destination and every attempt recorded.

-- CreateEnum
CREATE TYPE "webhook_delivery_state" AS ENUM ('pending', 'succeeded', 'failed');

-- CreateEnum
CREATE TYPE "webhook_target" AS ENUM ('endpoint', 'job_url');

-- AlterTable
ALTER TABLE "jobs" ADD COLUMN "webhook_url" TEXT,
ADD COLUMN "progress_notified_at" TIMESTAMPTZ(3);

-- CreateTable
CREATE TABLE "webhook_endpoints" (
    "id" TEXT NOT NULL,
    "tenant_id" TEXT NOT NULL,
    "url" TEXT NOT NULL,
    "events" TEXT[],
    "description" TEXT,
    "secret" TEXT NOT NULL,
    "previous_secret" TEXT,
    "previous_secret_expires_at" TIMESTAMPTZ(3),
    "disabled_at" TIMESTAMPTZ(3),
    "disabled_reason" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "webhook_endpoints_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_tenant_secrets" (
    "tenant_id" TEXT NOT NULL,
    "secret" TEXT NOT NULL,
    "previous_secret" TEXT,
    "previous_secret_expires_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "webhook_tenant_secrets_pkey" PRIMARY KEY ("tenant_id")
);

-- CreateTable
CREATE TABLE "webhook_events" (
    "id" TEXT NOT NULL,
    "tenant_id" TEXT NOT NULL,
    "job_id" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "payload" JSON,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "webhook_events_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_deliveries" (
    "id" TEXT NOT NULL,
    "event_id" TEXT NOT NULL,
    "tenant_id" TEXT NOT NULL,
    "target" "webhook_target" NOT NULL,
    "endpoint_id" TEXT,
    "url" TEXT NOT NULL,
    "state" "webhook_delivery_state" NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "retry_base" INTEGER NOT NULL DEFAULT 0,
    "next_attempt_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_status_code" INTEGER,
    "last_error" TEXT,
    "delivered_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "webhook_deliveries_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_attempts" (
    "id" BIGSERIAL NOT NULL,
    "delivery_id" TEXT NOT NULL,
    "attempt" INTEGER NOT NULL,
    "started_at" TIMESTAMPTZ(3) NOT NULL,
    "duration_ms" INTEGER NOT NULL,
    "outcome" TEXT NOT NULL,
    "status_code" INTEGER,
    "error" TEXT,
    "response_snippet" TEXT,

    CONSTRAINT "webhook_attempts_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "webhook_endpoints_tenant_id_idx" ON "webhook_endpoints"("tenant_id");

-- CreateIndex
CREATE INDEX "webhook_events_job_id_idx" ON "webhook_events"("job_id");

-- CreateIndex
CREATE INDEX "webhook_deliveries_event_id_idx" ON "webhook_deliveries"("event_id");

-- CreateIndex
CREATE INDEX "webhook_deliveries_state_next_attempt_at_idx" ON "webhook_deliveries"("state", "next_attempt_at");

-- CreateIndex
CREATE INDEX "webhook_deliveries_endpoint_id_idx" ON "webhook_deliveries"("endpoint_id");

-- CreateIndex
CREATE INDEX "webhook_attempts_delivery_id_idx" ON "webhook_attempts"("delivery_id");

-- AddForeignKey
ALTER TABLE "webhook_endpoints" ADD CONSTRAINT "webhook_endpoints_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_tenant_secrets" ADD CONSTRAINT "webhook_tenant_secrets_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_events" ADD CONSTRAINT "webhook_events_job_id_fkey" FOREIGN KEY ("job_id") REFERENCES "jobs"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_event_id_fkey" FOREIGN KEY ("event_id") REFERENCES "webhook_events"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_endpoint_id_fkey" FOREIGN KEY ("endpoint_id") REFERENCES "webhook_endpoints"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_attempts" ADD CONSTRAINT "webhook_attempts_delivery_id_fkey" FOREIGN KEY ("delivery_id") REFERENCES "webhook_deliveries"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- The outbox is written by triggers on jobs, so every status change, from whichever statement
-- makes it (a worker finishing the last chunk, a cancel, the expiry sweep, an upload sealing),
-- records its event in the same transaction: a crash cannot lose one, and no event exists for a
-- change that rolled back. Events nobody subscribed to are not written at all.

-- One event of `event_type` for a job, with a delivery to every enabled endpoint of the tenant
-- subscribed to it, and to the job's own webhook_url (for the final events only).
CREATE FUNCTION "coalesce_emit_job_event"(p_job_id TEXT, p_tenant_id TEXT, p_webhook_url TEXT, p_type TEXT)
RETURNS VOID LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_event_id TEXT;
  v_job_url TEXT := CASE WHEN p_type = 'job.progress' THEN NULL ELSE p_webhook_url END;
BEGIN
  IF v_job_url IS NULL AND NOT EXISTS (
    SELECT 1 FROM webhook_endpoints e
     WHERE e.tenant_id = p_tenant_id AND e.disabled_at IS NULL AND p_type = ANY (e.events)
  ) THEN
    RETURN;
  END IF;
  v_event_id := 'msg_' || replace(gen_random_uuid()::text, '-', '');
  INSERT INTO webhook_events (id, tenant_id, job_id, type) VALUES (v_event_id, p_tenant_id, p_job_id, p_type);
  INSERT INTO webhook_deliveries (id, event_id, tenant_id, target, endpoint_id, url)
  SELECT 'dlv_' || replace(gen_random_uuid()::text, '-', ''), v_event_id, p_tenant_id, 'endpoint', e.id, e.url
    FROM webhook_endpoints e
   WHERE e.tenant_id = p_tenant_id AND e.disabled_at IS NULL AND p_type = ANY (e.events);
  IF v_job_url IS NOT NULL THEN
    INSERT INTO webhook_deliveries (id, event_id, tenant_id, target, url)
    VALUES ('dlv_' || replace(gen_random_uuid()::text, '-', ''), v_event_id, p_tenant_id, 'job_url', v_job_url);
  END IF;
END;
$$;

-- job.succeeded / job.failed / job.cancelled / job.expired, once, when the job reaches it.
CREATE FUNCTION "coalesce_job_final_event"() RETURNS TRIGGER LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  PERFORM coalesce_emit_job_event(NEW.id, NEW.tenant_id, NEW.webhook_url, 'job.' || NEW.status::text);
  RETURN NULL;
END;
$$;

CREATE TRIGGER "jobs_final_event" AFTER UPDATE OF "status" ON "jobs"
FOR EACH ROW
WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('succeeded', 'failed', 'cancelled', 'expired'))
EXECUTE FUNCTION "coalesce_job_final_event"();

-- job.progress while a job runs, at most once every 5 seconds per job (progress_notified_at).
CREATE FUNCTION "coalesce_job_progress_event"() RETURNS TRIGGER LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  NEW.progress_notified_at := now();
  PERFORM coalesce_emit_job_event(NEW.id, NEW.tenant_id, NULL, 'job.progress');
  RETURN NEW;
END;
$$;

CREATE TRIGGER "jobs_progress_event" BEFORE UPDATE OF "succeeded_rows", "failed_rows" ON "jobs"
FOR EACH ROW
WHEN (
  NEW.status = 'running'
  AND (NEW.succeeded_rows, NEW.failed_rows) IS DISTINCT FROM (OLD.succeeded_rows, OLD.failed_rows)
  AND (OLD.progress_notified_at IS NULL OR OLD.progress_notified_at < now() - interval '5 seconds')
)
EXECUTE FUNCTION "coalesce_job_progress_event"();
