-- AlterTable
ALTER TABLE "jobs" ADD COLUMN "sealed" BOOLEAN NOT NULL DEFAULT true,
ADD COLUMN "id_column" TEXT;

-- AlterTable
ALTER TABLE "job_chunks" ADD COLUMN "row_ids" JSONB,
ADD COLUMN "input_errors" JSONB;
