-- AlterTable
ALTER TABLE "jobs" ADD COLUMN "sealed" BOOLEAN NOT NULL DEFAULT true,
ADD COLUMN "id_column" TEXT;

-- AlterTable: chunk rows and results are only read whole; `json` keeps the text as sent, which is
-- much cheaper to write and read than `jsonb` on the bulk path.
ALTER TABLE "job_chunks" ALTER COLUMN "inputs" SET DATA TYPE JSON USING "inputs"::json,
ALTER COLUMN "results" SET DATA TYPE JSON USING "results"::json,
ADD COLUMN "row_ids" JSON,
ADD COLUMN "input_errors" JSON;
