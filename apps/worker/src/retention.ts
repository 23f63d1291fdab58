import { isTransientError } from "@coalesce/contracts";
import { deleteExpiredJobs, deleteExpiredTenantEvents, type Database } from "@coalesce/db";
import type { Logger } from "pino";
import type { Outages } from "./outages.ts";

const SWEEP_EVERY_MS = 60 * 60 * 1000;

/**
 * Deletes finished jobs older than `days` (inputs and results with them), and webhook events about
 * no job (alias rollbacks) as old, at start and hourly.
 * Several workers may sweep at once: a job is deleted once, the others find nothing.
 */
export function startRetention(db: Database, days: number, logger: Logger, outages?: Outages): () => void {
  let running = false;
  const sweep = async () => {
    if (running) return;
    running = true;
    try {
      let total = 0;
      for (;;) {
        const deleted = await deleteExpiredJobs(db, days);
        total += deleted;
        if (deleted === 0) break;
      }
      let events = 0;
      for (;;) {
        const deleted = await deleteExpiredTenantEvents(db, days);
        events += deleted;
        if (deleted === 0) break;
      }
      if (total > 0 || events > 0) logger.info({ deleted: total, events, retentionDays: days }, "deleted jobs and model events past retention");
    } catch (error) {
      if (outages && isTransientError(error)) outages.failed("postgres", error);
      else logger.warn({ err: error }, "retention sweep failed; will try again");
    } finally {
      running = false;
    }
  };
  void sweep();
  const timer = setInterval(() => void sweep(), SWEEP_EVERY_MS);
  timer.unref();
  return () => clearInterval(timer);
}
