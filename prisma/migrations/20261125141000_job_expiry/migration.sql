-- AlterEnum
ALTER TYPE "job_status" ADD VALUE 'expired';

-- AlterTable
ALTER TABLE "jobs" ADD COLUMN "expires_at" TIMESTAMPTZ(3);
