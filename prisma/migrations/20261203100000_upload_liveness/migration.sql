-- A CSV upload streams into an open (unsealed) job for as long as its file takes. If the API process
-- serving it dies, nothing would ever seal or end that job, and the upload's Idempotency-Key claim
-- would answer 409 for the whole window. So an upload in progress shows it is alive: the API
-- refreshes these timestamps every few seconds while it reads the file, and a worker sweep ends an
-- upload (and frees its key) once they are older than a bound. Null once the upload is sealed.
ALTER TABLE "jobs" ADD COLUMN "upload_seen_at" TIMESTAMPTZ(3);
-- The sweep: open uploads by when they were last seen (few rows; a row leaves it when sealed).
CREATE INDEX "jobs_upload_seen_at_idx" ON "jobs" ("upload_seen_at") WHERE "upload_seen_at" IS NOT NULL;

-- When the request holding an unwritten key (job_id still null) was last seen alive.
ALTER TABLE "idempotency_keys" ADD COLUMN "seen_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP;
-- The sweep: claims still in progress, by when they were last seen.
CREATE INDEX "idempotency_keys_unwritten_seen_at_idx" ON "idempotency_keys" ("seen_at") WHERE "job_id" IS NULL;
