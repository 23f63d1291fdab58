import { countQueuedRows, readTenantLimits, SingleFlight, type Database, type TenantLimits } from "@coalesce/db";

/**
 * How long a tenant's limits and queued rows are remembered per process. A limit the admin API
 * changes, or rows that finish, are seen within this long; meanwhile submissions cost no query.
 */
export const TENANT_MEMORY_MS = 1_000;

/** Most tenants remembered per process; past it the memory starts afresh. */
const MAX_REMEMBERED = 10_000;

type Remembered<T> = { value: T; at: number };

/** A value per tenant, read at most once per TENANT_MEMORY_MS per process (concurrent readers share the read). */
class TenantMemory<T> {
  readonly #read: (tenantId: string) => Promise<T>;
  readonly #reads = new SingleFlight<T>();
  readonly #entries = new Map<string, Remembered<T>>();

  constructor(read: (tenantId: string) => Promise<T>) {
    this.#read = read;
  }

  async get(tenantId: string): Promise<Remembered<T>> {
    const known = this.#entries.get(tenantId);
    if (known && performance.now() - known.at < TENANT_MEMORY_MS) return known;
    const value = await this.#reads.run(tenantId, () => this.#read(tenantId));
    if (this.#entries.size >= MAX_REMEMBERED) this.#entries.clear();
    const entry = { value, at: performance.now() };
    this.#entries.set(tenantId, entry);
    return entry;
  }

  /** The remembered entry, if any (fresh or not). */
  peek(tenantId: string): Remembered<T> | undefined {
    return this.#entries.get(tenantId);
  }
}

/** A tenant's limits with the API's defaults filled in; 0: none. */
export type EffectiveTenantLimits = { rowsPerMinute: number; quotaQueuedRows: number };

/** The tenants' own limits (tenants.rate_limit_rows_per_minute, quota_queued_rows) over the env's defaults. */
export class TenantLimitsCache {
  readonly #memory: TenantMemory<TenantLimits | null>;
  readonly #defaults: EffectiveTenantLimits;

  constructor(db: Database, defaults: EffectiveTenantLimits) {
    this.#memory = new TenantMemory((tenantId) => readTenantLimits(db, tenantId));
    this.#defaults = defaults;
  }

  async get(tenantId: string): Promise<EffectiveTenantLimits> {
    const own = (await this.#memory.get(tenantId)).value;
    return {
      rowsPerMinute: own?.rowsPerMinute ?? this.#defaults.rowsPerMinute,
      quotaQueuedRows: own?.quotaQueuedRows ?? this.#defaults.quotaQueuedRows,
    };
  }
}

/** Why a submission does not fit the tenant's quota: what it has queued, and the quota. */
export type QuotaRefusal = { queued: number; quota: number };

/**
 * The quota of queued (unfinished) rows per tenant, so that one tenant cannot fill the queue. The
 * count comes from Postgres (shared by every API) at most once a second per process; rows this
 * process accepts in between are added to it here, so a burst into one process cannot pass the
 * quota by more than the other processes took in that second.
 */
export class QueuedRowsQuota {
  readonly #memory: TenantMemory<number>;

  constructor(db: Database) {
    this.#memory = new TenantMemory((tenantId) => countQueuedRows(db, tenantId));
  }

  /**
   * Null when `rows` more fit (`rows` null: a file whose size is not known yet, which fits while the
   * tenant is under its quota). A job larger than the whole quota is taken when nothing is queued,
   * so that no job is refused forever.
   */
  async check(tenantId: string, quota: number, rows: number | null): Promise<QuotaRefusal | null> {
    if (quota <= 0) return null;
    const queued = (await this.#memory.get(tenantId)).value;
    const fits = rows === null ? queued < quota : queued + rows <= quota || queued === 0;
    return fits ? null : { queued, quota };
  }

  /** Rows this process just accepted, counted until the next read. */
  add(tenantId: string, rows: number): void {
    const entry = this.#memory.peek(tenantId);
    if (entry) entry.value += rows;
  }
}
