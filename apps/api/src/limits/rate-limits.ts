import type { Database } from "@coalesce/db";
import type { Context } from "hono";
import type { RedisClient } from "@coalesce/queue";
import type { Logger } from "pino";
import { RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { AppEnv, Principal } from "../context.ts";
import { advertise, rateLimited, secondsUntil, type Policy } from "./policy.ts";
import { QueuedRowsQuota, TenantLimitsCache } from "./quota.ts";

/** The limits every API replica shares (in Redis and Postgres); each one 0 for none. */
export type RateLimitSettings = {
  /** Per key (or token subject), requests per second; a key's own rate_limit_rps overrides it. @defaultValue RATE_LIMIT_REQUESTS_PER_SECOND */
  requestsPerSecond: number;
  /** Per tenant, rows per minute over submissions; a tenant's own limit overrides it. @defaultValue RATE_LIMIT_ROWS_PER_MINUTE */
  rowsPerMinute: number;
  /** Per tenant, most unfinished rows queued; a tenant's own quota overrides it. @defaultValue QUOTA_QUEUED_ROWS */
  queuedRows: number;
};

/**
 * Reads (GET, HEAD) count in a bucket of their own this many times the key's request limit: a
 * client polling its jobs never uses up the requests its submissions need, and a read still costs
 * one Redis round trip, no more.
 */
export const READS_PER_REQUEST_LIMIT = 10;

/** Seconds a tenant at its queued-rows quota is asked to wait: rows free up as workers finish them. */
export const QUOTA_RETRY_AFTER_SECONDS = 5;

const ROWS_WINDOW_SECONDS = 60;

/**
 * Longest a request waits for the limiter's Redis: past it the limit fails open for that request.
 * A Redis that is connected but silent (a half-open connection) would otherwise hold every request
 * until the connection's own command timeout.
 */
const LIMITER_WAIT_MS = 250;

class LimiterTimeout extends Error {
  override readonly name = "LimiterTimeout";
}

/** `work`, or a LimiterTimeout after LIMITER_WAIT_MS (the command itself goes on, harmlessly). */
function withinLimiterWait<T>(work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LimiterTimeout(`Redis did not answer the rate limiter within ${LIMITER_WAIT_MS} ms`)), LIMITER_WAIT_MS);
  });
  work.catch(() => {});
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

export type RateLimitsOptions = {
  redis: RedisClient;
  db: Database;
  /** The queue prefix: every counter lives under `<prefix>:rate:`, beside the queue it guards. */
  prefix: string;
  logger: Logger;
  settings: RateLimitSettings;
};

/**
 * Per key and per tenant limits, shared by every API replica: requests per second per key and rows
 * per minute per tenant are counters in Redis (rate-limiter-flexible's fixed windows: one atomic
 * INCR-and-expire script per check); queued rows per tenant are counted in Postgres (see
 * QueuedRowsQuota). A limit passed is a 429 naming the limit, with Retry-After and the IETF
 * RateLimit-Policy / RateLimit fields.
 *
 * Redis away: the Redis limits fail open (the request is served, said once per outage in the log)
 * rather than take the API down with them; the queued-rows quota, in Postgres, still holds.
 */
export class RateLimits {
  readonly settings: RateLimitSettings;
  readonly #redis: RedisClient;
  readonly #prefix: string;
  readonly #logger: Logger;
  readonly #limiters = new Map<string, RateLimiterRedis>();
  readonly #tenants: TenantLimitsCache;
  readonly #quota: QueuedRowsQuota;
  #failingOpenSince: number | null = null;

  constructor(options: RateLimitsOptions) {
    this.settings = options.settings;
    this.#redis = options.redis;
    this.#prefix = options.prefix;
    this.#logger = options.logger;
    this.#tenants = new TenantLimitsCache(options.db, { rowsPerMinute: options.settings.rowsPerMinute, quotaQueuedRows: options.settings.queuedRows });
    this.#quota = new QueuedRowsQuota(options.db);
  }

  /**
   * Per key: one Redis round trip (none once a key is over, until its second ends). Sets the
   * RateLimit fields on every answer, so a client can slow down before it is refused.
   */
  async admitRequest(c: Context<AppEnv>): Promise<void> {
    const principal = c.get("principal") as Principal | undefined;
    if (!principal) return;
    const perSecond = principal.rateLimitRps ?? this.settings.requestsPerSecond;
    if (perSecond <= 0) return;
    const read = c.req.method === "GET" || c.req.method === "HEAD";
    const policy: Policy = read
      ? { name: "reads", quota: perSecond * READS_PER_REQUEST_LIMIT, windowSeconds: 1 }
      : { name: "requests", quota: perSecond, windowSeconds: 1 };
    const outcome = await this.#consume(this.#limiter(policy.name, policy.quota, 1, true), `${principal.tenantId}:${principal.actor}`, 1);
    if (outcome === null) return;
    if (!("refused" in outcome)) {
      advertise(c, policy, outcome.remainingPoints, secondsUntil(outcome.msBeforeNext));
      return;
    }
    // A token is named by its actor, `token:<sub>`.
    const who = principal.keyId ? `key ${principal.keyId}` : principal.actor;
    const own = principal.rateLimitRps !== null;
    const retryAfter = secondsUntil(outcome.res.msBeforeNext);
    throw rateLimited(
      c,
      policy,
      retryAfter,
      `${who} sent more than ${policy.quota} ${read ? "reads (GET)" : "requests"} in one second, its limit ` +
        `(${own ? "the key's own rate_limit_rps" : "RATE_LIMIT_REQUESTS_PER_SECOND"}${read ? ` x ${READS_PER_REQUEST_LIMIT} for reads` : ""}); ` +
        `retry after ${retryAfter} s, or use a key made with a higher rate_limit_rps (POST /v1/api-keys)`,
    );
  }

  /**
   * A JSON job of `rows` rows: refused (429) when the tenant's queued rows would pass its quota, or
   * its rows of this minute their limit; otherwise counted against both.
   */
  async admitJob(c: Context<AppEnv>, rows: number): Promise<void> {
    const tenantId = c.get("tenantId");
    const limits = await this.#tenants.get(tenantId);
    await this.#checkQuota(c, tenantId, limits.quotaQueuedRows, rows);
    await this.#takeRows(c, tenantId, limits.rowsPerMinute, rows);
    this.#quota.add(tenantId, rows);
  }

  /** Rows scored at once (predict, infer): held to the tenant's rows per minute; they are never queued. */
  async admitRows(c: Context<AppEnv>, rows: number): Promise<void> {
    const tenantId = c.get("tenantId");
    const limits = await this.#tenants.get(tenantId);
    await this.#takeRows(c, tenantId, limits.rowsPerMinute, rows);
  }

  /**
   * A CSV upload, before any of it is read: its size is not known, so it is refused only when the
   * tenant has already used its rows of this minute or filled its quota. Its rows count as they are
   * stored (countRows), so one upload may take the tenant past either.
   */
  async admitUpload(c: Context<AppEnv>): Promise<void> {
    const tenantId = c.get("tenantId");
    const limits = await this.#tenants.get(tenantId);
    await this.#checkQuota(c, tenantId, limits.quotaQueuedRows, null);
    if (limits.rowsPerMinute <= 0) return;
    const used = await this.#redisOrOpen(() => this.#rowLimiter(limits.rowsPerMinute).get(tenantId));
    if (used && used.consumedPoints >= limits.rowsPerMinute) {
      throw this.#rowsRefused(c, tenantId, limits.rowsPerMinute, used, null);
    }
  }

  /** Rows of an upload as they are stored: counted, never refused (the upload was admitted). Never throws. */
  countRows(tenantId: string, rows: number): void {
    if (rows <= 0) return;
    this.#quota.add(tenantId, rows);
    void this.#tenants
      .get(tenantId)
      .then((limits) => (limits.rowsPerMinute > 0 ? this.#redisOrOpen(() => this.#rowLimiter(limits.rowsPerMinute).penalty(tenantId, rows)) : null))
      .catch((error: unknown) => this.#logger.warn({ err: error, tenantId }, "could not count an upload's rows against the tenant's rate limit"));
  }

  async #checkQuota(c: Context<AppEnv>, tenantId: string, quota: number, rows: number | null): Promise<void> {
    const refusal = await this.#quota.check(tenantId, quota, rows);
    if (!refusal) return;
    const policy: Policy = { name: "queued-rows", quota: refusal.quota, unit: "rows" };
    throw rateLimited(
      c,
      policy,
      QUOTA_RETRY_AFTER_SECONDS,
      `tenant ${tenantId} has ${refusal.queued} rows queued (unfinished jobs)` +
        `${rows === null ? ", its whole quota" : `, and ${rows} more would pass its quota`} of ${refusal.quota} queued rows ` +
        `(QUOTA_QUEUED_ROWS, or the tenant's own quota_queued_rows); retry after ${QUOTA_RETRY_AFTER_SECONDS} s as jobs finish, ` +
        "cancel some, or have an admin raise quota_queued_rows (PATCH /v1/tenant)",
    );
  }

  /**
   * Counts `rows` against the tenant's minute: refused when they would pass its limit, unless the
   * minute had none yet (a job larger than the whole limit then goes alone, rather than never). A
   * refused request's rows are given back, so being refused costs nothing.
   */
  async #takeRows(c: Context<AppEnv>, tenantId: string, perMinute: number, rows: number): Promise<void> {
    if (perMinute <= 0 || rows <= 0) return;
    const limiter = this.#rowLimiter(perMinute);
    const outcome = await this.#consume(limiter, tenantId, rows);
    if (outcome === null || !("refused" in outcome)) return;
    const before = outcome.res.consumedPoints - rows;
    if (before <= 0) return;
    void this.#redisOrOpen(() => limiter.reward(tenantId, rows)).catch(() => {});
    throw this.#rowsRefused(c, tenantId, perMinute, outcome.res, { before, rows });
  }

  #rowsRefused(c: Context<AppEnv>, tenantId: string, perMinute: number, res: RateLimiterRes, asked: { before: number; rows: number } | null) {
    const policy: Policy = { name: "rows", quota: perMinute, unit: "rows", windowSeconds: ROWS_WINDOW_SECONDS };
    const retryAfter = secondsUntil(res.msBeforeNext);
    const standing = asked
      ? `has submitted ${asked.before} rows this minute, and ${asked.rows} more would pass its limit`
      : `has already submitted ${res.consumedPoints} rows this minute, its whole limit`;
    return rateLimited(
      c,
      policy,
      retryAfter,
      `tenant ${tenantId} ${standing} of ${perMinute} rows per minute (RATE_LIMIT_ROWS_PER_MINUTE, or the tenant's own ` +
        `rate_limit_rows_per_minute); retry after ${retryAfter} s, or have an admin raise rate_limit_rows_per_minute (PATCH /v1/tenant)`,
    );
  }

  /** Consumes points: the counter's state, `{ refused }` past the limit, or null when Redis is away (fail open). */
  async #consume(limiter: RateLimiterRedis, key: string, points: number): Promise<RateLimiterRes | { refused: true; res: RateLimiterRes } | null> {
    try {
      const res = await withinLimiterWait(limiter.consume(key, points));
      this.#redisBack();
      return res;
    } catch (error) {
      if (error instanceof RateLimiterRes) {
        this.#redisBack();
        return { refused: true, res: error };
      }
      this.#redisAway(error);
      return null;
    }
  }

  async #redisOrOpen<T>(call: () => Promise<T>): Promise<T | null> {
    try {
      const result = await withinLimiterWait(call());
      this.#redisBack();
      return result;
    } catch (error) {
      this.#redisAway(error);
      return null;
    }
  }

  #redisAway(error: unknown): void {
    if (this.#failingOpenSince !== null) return;
    this.#failingOpenSince = Date.now();
    // The connection itself says that Redis went away; this says what that means for the limits.
    this.#logger.warn({ err: error }, "rate limits not enforced while Redis does not answer (failing open); the queued-rows quota still is");
  }

  #redisBack(): void {
    if (this.#failingOpenSince === null) return;
    const seconds = Math.round((Date.now() - this.#failingOpenSince) / 1000);
    this.#failingOpenSince = null;
    this.#logger.info({ downSeconds: seconds }, `rate limits enforced again after ${seconds} s`);
  }

  #rowLimiter(perMinute: number): RateLimiterRedis {
    return this.#limiter("rows", perMinute, ROWS_WINDOW_SECONDS, false);
  }

  /**
   * One limiter per bucket and limit (keys and tenants may have limits of their own); all of a
   * bucket's share its counters, so a changed limit applies to the count so far.
   */
  #limiter(bucket: string, points: number, seconds: number, blockInMemory: boolean): RateLimiterRedis {
    const id = `${bucket}:${points}`;
    let limiter = this.#limiters.get(id);
    if (!limiter) {
      limiter = new RateLimiterRedis({
        storeClient: this.#redis,
        keyPrefix: `${this.#prefix}:rate:${bucket}`,
        points,
        duration: seconds,
        // Redis not connected: fail open at once rather than wait for a command to time out.
        rejectIfRedisNotReady: true,
        // A key over its limit is refused from memory until its window ends: a client that keeps
        // hammering costs no Redis round trip.
        ...(blockInMemory ? { inMemoryBlockOnConsumed: points + 1 } : {}),
      });
      this.#limiters.set(id, limiter);
    }
    return limiter;
  }
}
