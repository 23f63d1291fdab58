-- Small chunks submitted together share one BullMQ job (a "group"): its id is recorded on each
-- chunk so the reconciler can tell whether the chunk's queue job still exists. NULL means the
-- chunk has a queue job of its own, whose id is the chunk id.
ALTER TABLE "job_chunks" ADD COLUMN "queue_job_id" TEXT;
