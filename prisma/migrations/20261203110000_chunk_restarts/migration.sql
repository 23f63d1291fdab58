-- A chunk that keeps killing the workers that take it (onnxruntime crashing on its rows) must end,
-- counted where it survives Redis: BullMQ's own stall count only grows over a queue job's life, also
-- for every Redis partition longer than the lock and every SIGTERM past the grace, and is lost with
-- Redis. Counted only for starts after a stall (see startChunks), so a chunk that never stalls is
-- never written here. No index on it: the update stays in place (HOT), as a completion does.
ALTER TABLE "job_chunks" ADD COLUMN "restarts" INTEGER NOT NULL DEFAULT 0;
