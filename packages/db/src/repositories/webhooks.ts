import type { Database } from "../connection.ts";
import type { WebhookDeliveryState, WebhookTarget } from "../generated/client.ts";
import { newId } from "../ids.ts";

// Endpoints and secrets change rarely and go through Prisma; the delivery loop's statements are
// pg, one round trip each. Events and deliveries are written by triggers on jobs (see the
// webhooks migration), never here.

export type WebhookEndpointRecord = {
  id: string;
  tenantId: string;
  url: string;
  events: string[];
  description: string | null;
  secret: string;
  previousSecret: string | null;
  previousSecretExpiresAt: Date | null;
  disabledAt: Date | null;
  disabledReason: string | null;
  createdAt: Date;
  updatedAt: Date;
};

export type SecretRecord = { secret: string; previousSecret: string | null; previousSecretExpiresAt: Date | null };

export async function createWebhookEndpoint(
  db: Database,
  input: { tenantId: string; url: string; events: readonly string[]; description: string | null; secret: string },
): Promise<WebhookEndpointRecord> {
  return db.prisma.webhookEndpoint.create({
    data: { id: newId("webhook"), tenantId: input.tenantId, url: input.url, events: [...input.events], description: input.description, secret: input.secret },
  });
}

export async function listWebhookEndpoints(db: Database, tenantId: string): Promise<WebhookEndpointRecord[]> {
  return db.prisma.webhookEndpoint.findMany({ where: { tenantId }, orderBy: { id: "asc" } });
}

export async function findWebhookEndpoint(db: Database, tenantId: string, id: string): Promise<WebhookEndpointRecord | null> {
  return db.prisma.webhookEndpoint.findFirst({ where: { id, tenantId } });
}

export type WebhookEndpointChanges = { url?: string; events?: readonly string[]; description?: string | null; enabled?: boolean };

/** Applies a PATCH; re-enabling clears the reason it was disabled. Null when there is no such endpoint. */
export async function updateWebhookEndpoint(
  db: Database,
  tenantId: string,
  id: string,
  changes: WebhookEndpointChanges,
): Promise<WebhookEndpointRecord | null> {
  const { count } = await db.prisma.webhookEndpoint.updateMany({
    where: { id, tenantId },
    data: {
      ...(changes.url !== undefined ? { url: changes.url } : {}),
      ...(changes.events !== undefined ? { events: [...changes.events] } : {}),
      ...(changes.description !== undefined ? { description: changes.description } : {}),
      ...(changes.enabled === true ? { disabledAt: null, disabledReason: null } : {}),
      ...(changes.enabled === false ? { disabledAt: new Date(), disabledReason: "disabled through the API" } : {}),
      updatedAt: new Date(),
    },
  });
  return count > 0 ? findWebhookEndpoint(db, tenantId, id) : null;
}

/** Deletes an endpoint; its pending deliveries end `failed` (their history stays, with the job). */
export async function deleteWebhookEndpoint(db: Database, tenantId: string, id: string): Promise<boolean> {
  const { rows } = await db.pool.query<{ id: string }>(
    `WITH stopped AS (
       UPDATE webhook_deliveries SET state = 'failed', last_error = 'the endpoint was deleted', updated_at = now()
        WHERE endpoint_id = $1 AND tenant_id = $2 AND state = 'pending'
     )
     DELETE FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2 RETURNING id`,
    [id, tenantId],
  );
  return rows.length > 0;
}

/**
 * Gives an endpoint a new secret; the one it replaces keeps signing beside it for `overlapSeconds`
 * (receivers verify with either while they switch).
 */
export async function rotateWebhookEndpointSecret(
  db: Database,
  tenantId: string,
  id: string,
  secret: string,
  overlapSeconds: number,
): Promise<SecretRecord | null> {
  const { rows } = await db.pool.query<SecretSqlRow>(
    `UPDATE webhook_endpoints
        SET previous_secret = secret, secret = $3, updated_at = now(),
            previous_secret_expires_at = now() + make_interval(secs => $4)
      WHERE id = $1 AND tenant_id = $2
    RETURNING secret, previous_secret, previous_secret_expires_at`,
    [id, tenantId, secret, overlapSeconds],
  );
  return rows[0] ? fromSecretRow(rows[0]) : null;
}

type SecretSqlRow = { secret: string; previous_secret: string | null; previous_secret_expires_at: Date | null };

function fromSecretRow(row: SecretSqlRow): SecretRecord {
  return { secret: row.secret, previousSecret: row.previous_secret, previousSecretExpiresAt: row.previous_secret_expires_at };
}

/** The tenant's default secret (signs deliveries to jobs' own webhook_url), made with `candidate` on first use. */
export async function ensureTenantWebhookSecret(db: Database, tenantId: string, candidate: string): Promise<SecretRecord> {
  const { rows } = await db.pool.query<SecretSqlRow>(
    `WITH made AS (
       INSERT INTO webhook_tenant_secrets (tenant_id, secret) VALUES ($1, $2) ON CONFLICT (tenant_id) DO NOTHING
       RETURNING secret, previous_secret, previous_secret_expires_at
     )
     SELECT * FROM made UNION ALL
     SELECT secret, previous_secret, previous_secret_expires_at FROM webhook_tenant_secrets WHERE tenant_id = $1
     LIMIT 1`,
    [tenantId, candidate],
  );
  return fromSecretRow(rows[0] as SecretSqlRow);
}

export async function rotateTenantWebhookSecret(db: Database, tenantId: string, secret: string, overlapSeconds: number): Promise<SecretRecord> {
  const { rows } = await db.pool.query<SecretSqlRow>(
    `INSERT INTO webhook_tenant_secrets (tenant_id, secret) VALUES ($1, $2)
     ON CONFLICT (tenant_id) DO UPDATE
        SET previous_secret = webhook_tenant_secrets.secret, secret = EXCLUDED.secret,
            previous_secret_expires_at = now() + make_interval(secs => $3)
     RETURNING secret, previous_secret, previous_secret_expires_at`,
    [tenantId, secret, overlapSeconds],
  );
  return fromSecretRow(rows[0] as SecretSqlRow);
}

/** Until when the previous secret still signs beside the current one; null once the overlap is over. */
export function previousSecretSignsUntil(record: SecretRecord, now = new Date()): Date | null {
  const until = record.previousSecretExpiresAt;
  return record.previousSecret !== null && until !== null && until > now ? until : null;
}

/** The secrets that sign now: the current one, and the previous one while its overlap lasts. */
export function signingSecrets(record: SecretRecord, now = new Date()): string[] {
  return previousSecretSignsUntil(record, now) ? [record.secret, record.previousSecret as string] : [record.secret];
}

/** A delivery claimed for an attempt, with what the attempt needs. */
export type ClaimedDelivery = {
  id: string;
  eventId: string;
  eventType: string;
  eventCreatedAt: Date;
  /** Null for an event that is not about a job (model.alias.rolled_back), whose payload is fixed from the start. */
  jobId: string | null;
  tenantId: string;
  target: WebhookTarget;
  url: string;
  /** This attempt's number, from 1. */
  attempt: number;
  /** Attempts since the schedule last (re)started: where the retry schedule is. */
  scheduledAttempt: number;
  /** The body, once an earlier attempt fixed it. */
  payload: unknown;
  /** The endpoint it goes to (null for a job's webhook_url, or once the endpoint was deleted). */
  endpointId: string | null;
  /**
   * What signs it: the endpoint's secrets, or for a job's webhook_url the tenant's default secret
   * (null while the tenant has none yet).
   */
  secrets: SecretRecord | null;
  /** True when the endpoint it was for has been deleted. */
  endpointGone: boolean;
};

type ClaimedSqlRow = {
  id: string;
  event_id: string;
  type: string;
  event_created_at: Date;
  job_id: string | null;
  tenant_id: string;
  target: WebhookTarget;
  url: string;
  attempts: number;
  retry_base: number;
  payload: unknown;
  endpoint_id: string | null;
  secret: string | null;
  previous_secret: string | null;
  previous_secret_expires_at: Date | null;
};

/**
 * Claims up to `limit` due deliveries for this process: each is leased for `leaseSeconds` (its
 * next_attempt_at moves past the attempt), so another worker skips it, and a worker that dies
 * mid-attempt only delays it. SKIP LOCKED lets many workers claim side by side.
 */
export async function claimDueDeliveries(db: Database, limit: number, leaseSeconds: number): Promise<ClaimedDelivery[]> {
  const { rows } = await db.pool.query<ClaimedSqlRow>({
    name: "claim-due-deliveries",
    text: `WITH due AS (
       SELECT d.id FROM webhook_deliveries d
        WHERE d.state = 'pending' AND d.next_attempt_at <= now()
          -- A paused endpoint's deliveries wait, and go out once it is enabled again.
          AND NOT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = d.endpoint_id AND e.disabled_at IS NOT NULL)
        ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
     ), claimed AS (
       UPDATE webhook_deliveries d
          SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
         FROM due WHERE d.id = due.id
       RETURNING d.*
     )
     SELECT c.id, c.event_id, ev.type, ev.created_at AS event_created_at, ev.job_id, c.tenant_id, c.target, c.url,
            c.attempts, c.retry_base, ev.payload, c.endpoint_id,
            COALESCE(e.secret, t.secret) AS secret,
            CASE WHEN e.id IS NULL THEN t.previous_secret ELSE e.previous_secret END AS previous_secret,
            CASE WHEN e.id IS NULL THEN t.previous_secret_expires_at ELSE e.previous_secret_expires_at END AS previous_secret_expires_at
       FROM claimed c JOIN webhook_events ev ON ev.id = c.event_id
       LEFT JOIN webhook_endpoints e ON e.id = c.endpoint_id
       LEFT JOIN webhook_tenant_secrets t ON c.target = 'job_url' AND t.tenant_id = c.tenant_id`,
    values: [limit, leaseSeconds],
  });
  return rows.map((row) => ({
    id: row.id,
    eventId: row.event_id,
    eventType: row.type,
    eventCreatedAt: row.event_created_at,
    jobId: row.job_id,
    tenantId: row.tenant_id,
    target: row.target,
    url: row.url,
    attempt: row.attempts,
    scheduledAttempt: row.attempts - row.retry_base,
    payload: row.payload,
    endpointId: row.endpoint_id,
    secrets: row.secret ? fromSecretRow(row as SecretSqlRow) : null,
    endpointGone: row.target === "endpoint" && row.endpoint_id === null,
  }));
}

/** Fixes an event's body at its first attempt; returns the body that stands (a concurrent first writer wins). */
export async function fixEventPayload(db: Database, eventId: string, payload: unknown): Promise<unknown> {
  const { rows } = await db.pool.query<{ payload: unknown }>(
    `UPDATE webhook_events SET payload = COALESCE(payload, $2::json) WHERE id = $1 RETURNING payload`,
    [eventId, JSON.stringify(payload)],
  );
  return rows[0]?.payload ?? payload;
}

export type AttemptRecord = {
  deliveryId: string;
  attempt: number;
  startedAt: Date;
  durationMs: number;
  outcome: "delivered" | "failed" | "gone" | "refused";
  statusCode: number | null;
  error: string | null;
  responseSnippet: string | null;
  /** What the delivery becomes: done, or pending again at `nextAttemptAt`. */
  state: WebhookDeliveryState;
  nextAttemptAt: Date | null;
  /** Disables the delivery's endpoint (a 410), failing its other pending deliveries. */
  disableEndpoint?: { endpointId: string; reason: string } | undefined;
};

/** Records one attempt and its consequence in one statement. */
export async function recordDeliveryAttempt(db: Database, record: AttemptRecord): Promise<void> {
  await db.pool.query(
    `WITH attempt AS (
       INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, outcome, status_code, error, response_snippet)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ), delivery AS (
       UPDATE webhook_deliveries
          SET state = $9::webhook_delivery_state, next_attempt_at = COALESCE($10, next_attempt_at),
              last_status_code = $6, last_error = $7, updated_at = now(),
              delivered_at = CASE WHEN $5 = 'delivered' THEN now() ELSE delivered_at END
        WHERE id = $1
     ), disabled AS (
       UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = $12, updated_at = now()
        WHERE id = $11 AND disabled_at IS NULL
     )
     UPDATE webhook_deliveries SET state = 'failed', last_error = $12, updated_at = now()
      WHERE endpoint_id = $11 AND state = 'pending' AND id <> $1`,
    [
      record.deliveryId,
      record.attempt,
      record.startedAt,
      record.durationMs,
      record.outcome,
      record.statusCode,
      record.error,
      record.responseSnippet,
      record.state,
      record.nextAttemptAt,
      record.disableEndpoint?.endpointId ?? null,
      record.disableEndpoint?.reason ?? null,
    ],
  );
}

export type DeliveryRecord = {
  id: string;
  eventId: string;
  eventType: string;
  endpointId: string | null;
  url: string;
  state: WebhookDeliveryState;
  nextAttemptAt: Date;
  createdAt: Date;
  attempts: {
    attempt: number;
    startedAt: Date;
    durationMs: number;
    outcome: string;
    statusCode: number | null;
    error: string | null;
  }[];
};

/** A job's deliveries with every attempt, oldest first. */
export async function listJobDeliveries(db: Database, tenantId: string, jobId: string): Promise<DeliveryRecord[]> {
  const deliveries = await db.prisma.webhookDelivery.findMany({
    where: { tenantId, event: { jobId } },
    include: { event: { select: { type: true } }, attemptLog: { orderBy: { attempt: "asc" } } },
    orderBy: [{ createdAt: "asc" }, { id: "asc" }],
  });
  return deliveries.map((d) => ({
    id: d.id,
    eventId: d.eventId,
    eventType: d.event.type,
    endpointId: d.endpointId,
    url: d.url,
    state: d.state,
    nextAttemptAt: d.nextAttemptAt,
    createdAt: d.createdAt,
    attempts: d.attemptLog.map((a) => ({
      attempt: a.attempt,
      startedAt: a.startedAt,
      durationMs: a.durationMs,
      outcome: a.outcome,
      statusCode: a.statusCode,
      error: a.error,
    })),
  }));
}

/** Deliveries waiting to go out (due or scheduled), and how long the most overdue one has been due. */
export async function webhookBacklog(db: Database): Promise<{ pending: number; oldestDueSeconds: number }> {
  const { rows } = await db.pool.query<{ pending: number; oldest_due_seconds: number | null }>(
    `SELECT count(*)::int AS pending,
            EXTRACT(EPOCH FROM now() - min(next_attempt_at) FILTER (WHERE next_attempt_at <= now()))::float8 AS oldest_due_seconds
       FROM webhook_deliveries WHERE state = 'pending'`,
  );
  return { pending: rows[0]?.pending ?? 0, oldestDueSeconds: rows[0]?.oldest_due_seconds ?? 0 };
}

export type RetryOutcome = { kind: "queued"; jobId: string | null } | { kind: "not_found" } | { kind: "endpoint_unavailable"; reason: string };

/**
 * Replays a delivery now, with the same webhook-id and body; the retry schedule restarts. Refused
 * while its endpoint is disabled or after it was deleted.
 */
export async function retryDelivery(db: Database, tenantId: string, id: string): Promise<RetryOutcome> {
  const { rows } = await db.pool.query<{ job_id: string | null; target: WebhookTarget; endpoint_id: string | null; disabled_reason: string | null; disabled_at: Date | null }>(
    `SELECT ev.job_id, d.target, d.endpoint_id, e.disabled_at, e.disabled_reason
       FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id
       LEFT JOIN webhook_endpoints e ON e.id = d.endpoint_id
      WHERE d.id = $1 AND d.tenant_id = $2`,
    [id, tenantId],
  );
  const row = rows[0];
  if (!row) return { kind: "not_found" };
  if (row.target === "endpoint" && row.endpoint_id === null) return { kind: "endpoint_unavailable", reason: "its endpoint was deleted" };
  if (row.disabled_at) return { kind: "endpoint_unavailable", reason: `its endpoint is disabled (${row.disabled_reason ?? "no reason recorded"})` };
  await db.pool.query(
    `UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = now(), retry_base = attempts, updated_at = now() WHERE id = $1`,
    [id],
  );
  return { kind: "queued", jobId: row.job_id };
}
