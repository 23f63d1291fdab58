import type { Database } from "../connection.ts";

/** One thing someone did: who (`actor`: a key id, `token:<sub>`, or `guard`), what, to which resource. */
export type AuditInput = {
  tenantId: string;
  actor: string;
  action: string;
  resource: string;
  details?: Record<string, unknown> | null | undefined;
};

export type AuditRecord = { id: string; at: Date; actor: string; action: string; resource: string; details: Record<string, unknown> | null };

/** Records one entry (most actions: they are rare, and the request waits for its entry). */
export async function recordAudit(db: Database, entry: AuditInput): Promise<void> {
  await recordAudits(db, [entry]);
}

/**
 * Records many entries in one statement: the hot path (job.created) hands its entries to a group
 * commit, so concurrent submissions share one INSERT instead of taking a connection each.
 */
export async function recordAudits(db: Database, entries: readonly AuditInput[]): Promise<void> {
  if (entries.length === 0) return;
  await db.pool.query({
    name: "record-audits",
    text: `INSERT INTO audit_log (tenant_id, actor, action, resource, details)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[])`,
    values: [
      entries.map((e) => e.tenantId),
      entries.map((e) => e.actor),
      entries.map((e) => e.action),
      entries.map((e) => e.resource),
      entries.map((e) => (e.details ? JSON.stringify(e.details) : null)),
    ],
  });
}

export type AuditPage = { entries: AuditRecord[]; nextCursor: string | null };

/**
 * A tenant's entries, newest first; `cursor` is the last id of the previous page. `action` and `actor`
 * narrow it down.
 */
export async function listAudit(
  db: Database,
  tenantId: string,
  page: { limit: number; cursor?: string | undefined; action?: string | undefined; actor?: string | undefined },
): Promise<AuditPage> {
  const { rows } = await db.pool.query<{ id: string; at: Date; actor: string; action: string; resource: string; details: Record<string, unknown> | null }>(
    `SELECT id::text AS id, created_at AS at, actor, action, resource, details FROM audit_log
      WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2::bigint)
        AND ($3::text IS NULL OR action = $3) AND ($4::text IS NULL OR actor = $4)
      ORDER BY audit_log.id DESC LIMIT $5`,
    [tenantId, page.cursor ?? null, page.action ?? null, page.actor ?? null, page.limit + 1],
  );
  const entries = rows.slice(0, page.limit);
  return { entries, nextCursor: rows.length > page.limit ? (entries.at(-1)?.id ?? null) : null };
}
