import type { AuditAction } from "@coalesce/contracts";
import { GroupCommit, recordAudit, recordAudits, type AuditInput, type Database } from "@coalesce/db";
import type { Context } from "hono";
import type { ApiDeps, AppEnv } from "../../context.ts";

/** Most entries one background INSERT takes; more wait for the next. */
const MAX_ENTRIES_PER_WRITE = 512;

/**
 * Records that the caller did `action` to `resource`, after the change is made, and waits for it (key,
 * alias, model and webhook changes are rare): once the answer is out, GET /v1/audit shows the entry.
 * An entry that cannot be written is logged as an error but does not fail the request: the change is
 * made, and a client that retried a failed POST would make it twice (a second key, a second endpoint).
 */
export async function audit(c: Context<AppEnv>, deps: ApiDeps, action: AuditAction, resource: string, details?: Record<string, unknown>): Promise<void> {
  try {
    await recordAudit(deps.db, entryOf(c, action, resource, details));
  } catch (error) {
    c.get("logger").error({ err: error, action, resource }, "could not record an audit entry");
  }
}

/**
 * Records an entry without the request waiting for it: for job.created, the hot path. Entries made
 * while one INSERT is in flight go together in the next (a group commit), so hundreds of submissions
 * at once cost a few statements, not a pool connection each; a failure is logged, never the
 * request's. What this gives up: an entry is lost if the process dies in the millisecond between
 * the 202 and its INSERT (the job itself is committed before the 202 either way).
 */
export function auditInBackground(c: Context<AppEnv>, deps: ApiDeps, action: AuditAction, resource: string, details?: Record<string, unknown>): void {
  const logger = c.get("logger");
  writerFor(deps.db)
    .add(entryOf(c, action, resource, details))
    .catch((error: unknown) => logger.warn({ err: error, action, resource }, "could not record an audit entry"));
}

function entryOf(c: Context<AppEnv>, action: AuditAction, resource: string, details: Record<string, unknown> | undefined): AuditInput {
  return { tenantId: c.get("tenantId"), actor: c.get("keyId"), action, resource, details: details ?? null };
}

// One group commit per database (each API in a process has its own; tests run several), made on first
// use so that nothing has to build or close it: it holds no connection of its own, only the queue.
const writers = new WeakMap<Database, GroupCommit<AuditInput, void>>();

function writerFor(db: Database): GroupCommit<AuditInput, void> {
  let writer = writers.get(db);
  if (!writer) {
    writer = new GroupCommit<AuditInput, void>(async (entries) => {
      await recordAudits(db, entries);
      return entries.map(() => undefined);
    }, MAX_ENTRIES_PER_WRITE);
    writers.set(db, writer);
  }
  return writer;
}
