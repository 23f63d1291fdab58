-- Chunk rows in a packed binary form (@coalesce/models packRows: each input's values as the typed
-- array onnxruntime takes) instead of JSON text: no decimal formatting and parsing of every value in
-- the API, in Postgres and in the worker, and about a fifth of the bytes for float rows. Chunks
-- written before this keep their JSON `inputs`, which workers still read; a chunk has one or the other.
ALTER TABLE "job_chunks" ALTER COLUMN "inputs" DROP NOT NULL;
ALTER TABLE "job_chunks" ADD COLUMN "inputs_packed" BYTEA;
ALTER TABLE "job_chunks" ADD CONSTRAINT "job_chunks_inputs_check" CHECK (("inputs" IS NULL) <> ("inputs_packed" IS NULL));
