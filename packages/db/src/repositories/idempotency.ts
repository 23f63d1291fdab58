import type pg from "pg";
import type { Database } from "../connection.ts";

/** How long a key holds: a retry within this window gets the original job. */
export const IDEMPOTENCY_WINDOW_HOURS = 24;

/** How often a streaming upload records that it is alive (recordUploadAlive). */
export const UPLOAD_HEARTBEAT_MS = 2_000;

/**
 * An upload not seen for this long is taken for dead (its API process went away): the worker's
 * sweep ends it and frees its key, and the API lets a retry take its key. UPLOAD_STALE_MS, read by
 * both apps, so they agree on when an upload is dead.
 */
export const DEFAULT_UPLOAD_STALE_MS = 60_000;

/**
 * The shortest UPLOAD_STALE_MS either app accepts: five heartbeats, so one or two slow heartbeat
 * UPDATEs (a busy Postgres, a long GC pause) never end a live upload.
 */
export const MIN_UPLOAD_STALE_MS = 5 * UPLOAD_HEARTBEAT_MS;

/** The longest UPLOAD_STALE_MS either app accepts (a day). */
export const MAX_UPLOAD_STALE_MS = 86_400_000;

/**
 * One request's hold on a key. `claimedAt` (the row's created_at, set afresh by every claim and
 * takeover) tells this claim from a later one on the same key: a takeover happens only once a claim
 * has been unseen for UPLOAD_STALE_MS, so two claims of one key never share it. Every write of a
 * claim's request is guarded by it, so a slow request whose claim was taken over cannot tie, refresh
 * or free the key its retry now holds.
 */
export type KeyClaim = { tenantId: string; key: string; claimedAt: Date };

export type IdempotencyClaim =
  | { kind: "claimed"; claim: KeyClaim }
  | { kind: "replay"; jobId: string }
  | { kind: "in_progress" }
  | { kind: "mismatch" };

/**
 * Claims a tenant's Idempotency-Key for a request, atomically (the primary key decides between
 * concurrent requests, across API replicas). A key older than the window is taken over.
 */
export async function claimIdempotencyKey(db: Database, tenantId: string, key: string, requestHash: string): Promise<IdempotencyClaim> {
  const claimed = await db.pool.query(
    `INSERT INTO idempotency_keys (tenant_id, key, request_hash) VALUES ($1, $2, $3)
     ON CONFLICT (tenant_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, job_id = NULL, created_at = now(), seen_at = now()
       WHERE idempotency_keys.created_at < now() - make_interval(hours => ${IDEMPOTENCY_WINDOW_HOURS})
     RETURNING created_at`,
    [tenantId, key, requestHash],
  );
  const mine = claimed.rows[0] as { created_at: Date } | undefined;
  if (mine) return { kind: "claimed", claim: { tenantId, key, claimedAt: mine.created_at } };
  const { rows } = await db.pool.query<{ request_hash: string; job_id: string | null }>(
    `SELECT request_hash, job_id FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`,
    [tenantId, key],
  );
  const row = rows[0];
  if (!row) return claimIdempotencyKey(db, tenantId, key, requestHash);
  if (row.request_hash !== requestHash) return { kind: "mismatch" };
  return row.job_id ? { kind: "replay", jobId: row.job_id } : { kind: "in_progress" };
}

/**
 * Ties a claimed key to the job its request made; `requestHash` replaces the claim's when the
 * request could only be hashed once it was read (a streamed CSV upload). False when the key is no
 * longer this claim's (taken over by a retry, or freed as abandoned): the caller's job is then not
 * the key's, and must not be answered as if it were.
 */
export async function recordIdempotentJob(db: Pick<Database, "pool"> | pg.PoolClient, claim: KeyClaim, jobId: string, requestHash?: string): Promise<boolean> {
  const client = "pool" in db ? db.pool : db;
  const tied = await client.query(
    `UPDATE idempotency_keys SET job_id = $4, request_hash = COALESCE($5, request_hash)
      WHERE tenant_id = $1 AND key = $2 AND job_id IS NULL AND created_at = $3`,
    [claim.tenantId, claim.key, claim.claimedAt, jobId, requestHash ?? null],
  );
  return (tied.rowCount ?? 0) > 0;
}

/** A key used within the window: the hash of its request, and its job once written. */
export async function findIdempotencyKey(
  db: Database,
  tenantId: string,
  key: string,
): Promise<{ requestHash: string; jobId: string | null } | null> {
  const { rows } = await db.pool.query<{ request_hash: string; job_id: string | null }>(
    `SELECT request_hash, job_id FROM idempotency_keys
      WHERE tenant_id = $1 AND key = $2 AND created_at >= now() - make_interval(hours => ${IDEMPOTENCY_WINDOW_HOURS})`,
    [tenantId, key],
  );
  const row = rows[0];
  return row ? { requestHash: row.request_hash, jobId: row.job_id } : null;
}

/**
 * Takes over a key whose first request never wrote its job and has not been seen for `staleMs` (its
 * API process died mid-upload): the key is claimed afresh for `requestHash`, as if unused. Null
 * when the claim is alive (or was taken over by another request first).
 */
export async function takeOverStaleClaim(db: Database, tenantId: string, key: string, requestHash: string, staleMs: number): Promise<KeyClaim | null> {
  const taken = await db.pool.query<{ created_at: Date }>(
    `UPDATE idempotency_keys SET request_hash = $3, created_at = now(), seen_at = now()
      WHERE tenant_id = $1 AND key = $2 AND job_id IS NULL AND seen_at < now() - make_interval(secs => $4::float8 / 1000)
      RETURNING created_at`,
    [tenantId, key, requestHash, staleMs],
  );
  const row = taken.rows[0];
  return row ? { tenantId, key, claimedAt: row.created_at } : null;
}

/**
 * Frees the keys whose first request never wrote its job and has not been seen for `staleMs` (the
 * API process serving it died), so a retry with the same key starts afresh. Returns how many.
 */
export async function releaseAbandonedClaims(db: Database, staleMs: number): Promise<number> {
  const released = await db.pool.query(
    `DELETE FROM idempotency_keys WHERE job_id IS NULL AND seen_at < now() - make_interval(secs => $1::float8 / 1000)`,
    [staleMs],
  );
  return released.rowCount ?? 0;
}

/** Frees a key whose request failed, so a retry can use it; a claim taken over meanwhile stays. */
export async function releaseIdempotencyKey(db: Database, claim: KeyClaim): Promise<void> {
  await db.pool.query(`DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND job_id IS NULL AND created_at = $3`, [
    claim.tenantId,
    claim.key,
    claim.claimedAt,
  ]);
}
