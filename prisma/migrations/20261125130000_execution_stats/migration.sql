-- AlterTable
ALTER TABLE "jobs" ADD COLUMN "provider" TEXT,
ADD COLUMN "batch_rows_min" INTEGER,
ADD COLUMN "batch_rows_max" INTEGER,
ADD COLUMN "batch_rows_sum" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN "batched_rows" INTEGER NOT NULL DEFAULT 0;

-- CreateEnum
CREATE TYPE "job_priority" AS ENUM ('interactive', 'batch');

-- AlterTable
ALTER TABLE "jobs" ADD COLUMN "priority" "job_priority" NOT NULL DEFAULT 'batch';
