-- Batching limits per model version; NULL means the worker's default (MAX_BATCH_ROWS,
-- MAX_BATCH_DELAY_MS, MAX_BATCH_BYTES).
ALTER TABLE "model_versions"
  ADD COLUMN "max_batch_rows" INTEGER,
  ADD COLUMN "max_batch_delay_ms" INTEGER,
  ADD COLUMN "max_batch_bytes" BIGINT;
