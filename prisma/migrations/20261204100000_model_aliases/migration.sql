-- Model updates without risk (issue 15): aliases that route a model's traffic to its versions (a
-- canary split, a shadow), their history, the figures their guard watches, and versions that can
-- be described, labelled and deleted.

-- A deleted version keeps its row (finished jobs still name it, and its number is never reused);
-- it no longer resolves, and its file leaves the store once no live version shares it.
ALTER TABLE "model_versions"
  ADD COLUMN "description" TEXT,
  ADD COLUMN "labels" JSONB NOT NULL DEFAULT '{}',
  ADD COLUMN "deleted_at" TIMESTAMPTZ(3);

-- An alias of a model (production, canary, ...). `routes` is [{version, weight}] (weights whole
-- percentages summing to 100, the first route the stable one), `shadow` {version, sample} or null,
-- `guard` {max_error_rate, min_agreement, min_rows, compare_sample} or null. `revision` grows with
-- every change: the guard's figures are counted per revision, so a change starts them afresh.
CREATE TABLE "model_aliases" (
  "id" TEXT NOT NULL,
  "model_id" TEXT NOT NULL,
  "name" TEXT NOT NULL,
  "routes" JSONB NOT NULL,
  "shadow" JSONB,
  "guard" JSONB,
  "revision" INTEGER NOT NULL DEFAULT 1,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "model_aliases_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "model_aliases_model_id_name_key" ON "model_aliases"("model_id", "name");
ALTER TABLE "model_aliases" ADD CONSTRAINT "model_aliases_model_id_fkey" FOREIGN KEY ("model_id") REFERENCES "models"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Every change of an alias: who (the API key; null for the guard), what it was and became, and for
-- the guard why. Kept by model and alias name, so it outlives a deleted alias. A rollback undoes
-- the newest change not undone yet (`undone`), so rollbacks step back through the history.
CREATE TABLE "model_alias_history" (
  "id" BIGSERIAL NOT NULL,
  "model_id" TEXT NOT NULL,
  "alias" TEXT NOT NULL,
  "action" TEXT NOT NULL,
  "key_id" TEXT,
  "before" JSONB,
  "after" JSONB,
  "reason" JSONB,
  "undone" BOOLEAN NOT NULL DEFAULT false,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "model_alias_history_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "model_alias_history_model_id_alias_id_idx" ON "model_alias_history"("model_id", "alias", "id" DESC);
ALTER TABLE "model_alias_history" ADD CONSTRAINT "model_alias_history_model_id_fkey" FOREIGN KEY ("model_id") REFERENCES "models"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Per alias revision and version: the rows it scored for the alias, as a route or as the shadow,
-- their row errors and run time. Workers add to these every second or so.
CREATE TABLE "model_alias_stats" (
  "alias_id" TEXT NOT NULL,
  "revision" INTEGER NOT NULL,
  "version" INTEGER NOT NULL,
  "role" TEXT NOT NULL,
  "rows" BIGINT NOT NULL DEFAULT 0,
  "errors" BIGINT NOT NULL DEFAULT 0,
  "run_ms" DOUBLE PRECISION NOT NULL DEFAULT 0,
  "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "model_alias_stats_pkey" PRIMARY KEY ("alias_id", "revision", "version", "role")
);
ALTER TABLE "model_alias_stats" ADD CONSTRAINT "model_alias_stats_alias_id_fkey" FOREIGN KEY ("alias_id") REFERENCES "model_aliases"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Per alias revision and pair of versions (the one that answered, the one that scored the same row
-- beside it) and output: rows compared, how many agreed on the label / argmax (where the output
-- has one), and the absolute differences of the numbers.
CREATE TABLE "model_alias_comparisons" (
  "alias_id" TEXT NOT NULL,
  "revision" INTEGER NOT NULL,
  "primary_version" INTEGER NOT NULL,
  "shadow_version" INTEGER NOT NULL,
  "output" TEXT NOT NULL,
  "compared" BIGINT NOT NULL DEFAULT 0,
  "labelled" BIGINT NOT NULL DEFAULT 0,
  "agreed" BIGINT NOT NULL DEFAULT 0,
  "values" BIGINT NOT NULL DEFAULT 0,
  "abs_diff_sum" DOUBLE PRECISION NOT NULL DEFAULT 0,
  "abs_diff_max" DOUBLE PRECISION NOT NULL DEFAULT 0,
  "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "model_alias_comparisons_pkey" PRIMARY KEY ("alias_id", "revision", "primary_version", "shadow_version", "output")
);
ALTER TABLE "model_alias_comparisons" ADD CONSTRAINT "model_alias_comparisons_alias_id_fkey" FOREIGN KEY ("alias_id") REFERENCES "model_aliases"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- The alias a job came through (its name kept when the alias is deleted) and the revision that
-- routed it.
ALTER TABLE "jobs"
  ADD COLUMN "alias" TEXT,
  ADD COLUMN "alias_id" TEXT,
  ADD COLUMN "alias_revision" INTEGER;
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_alias_id_fkey" FOREIGN KEY ("alias_id") REFERENCES "model_aliases"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- Events that are not about a job (model.alias.rolled_back) carry their payload from the start.
ALTER TABLE "webhook_events" ALTER COLUMN "job_id" DROP NOT NULL;

-- One event of `p_type` with a fixed payload, delivered to every enabled endpoint of the tenant
-- subscribed to it (such events have no job and so no job webhook_url).
CREATE FUNCTION "coalesce_emit_tenant_event"(p_tenant_id TEXT, p_type TEXT, p_payload JSON)
RETURNS VOID LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_event_id TEXT;
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM webhook_endpoints e
     WHERE e.tenant_id = p_tenant_id AND e.disabled_at IS NULL AND p_type = ANY (e.events)
  ) THEN
    RETURN;
  END IF;
  v_event_id := 'msg_' || replace(gen_random_uuid()::text, '-', '');
  INSERT INTO webhook_events (id, tenant_id, job_id, type, payload)
  VALUES (v_event_id, p_tenant_id, NULL, p_type,
          json_build_object('type', p_type, 'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'data', p_payload));
  INSERT INTO webhook_deliveries (id, event_id, tenant_id, target, endpoint_id, url)
  SELECT 'dlv_' || replace(gen_random_uuid()::text, '-', ''), v_event_id, p_tenant_id, 'endpoint', e.id, e.url
    FROM webhook_endpoints e
   WHERE e.tenant_id = p_tenant_id AND e.disabled_at IS NULL AND p_type = ANY (e.events);
END;
$$;

-- An alias delete sets its jobs' alias_id to null: found by this index, not by a scan of jobs.
-- Partial, so the jobs that came through no alias (most) add nothing to it.
CREATE INDEX "jobs_alias_id_idx" ON "jobs" ("alias_id") WHERE "alias_id" IS NOT NULL;

-- Retention finds the events of no job (their job's deletion does not take them) by age.
CREATE INDEX "webhook_events_tenant_events_created_at_idx" ON "webhook_events" ("created_at") WHERE "job_id" IS NULL;
