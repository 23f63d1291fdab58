import { readAliasPlans, SingleFlight, type AliasPlan, type Database } from "@coalesce/db";

/**
 * How long a worker trusts an alias's plan (its shadow, its guard) before reading it again: a
 * shadow dropped by the guard or a person stops within this long on every worker.
 */
const TRUST_MS = 1_000;

/** Most plans remembered; past it the memory starts afresh. */
const MAX_REMEMBERED = 10_000;

/** The plans of the aliases whose rows this worker scores, read from Postgres and remembered TRUST_MS. */
export class AliasPlans {
  readonly #db: Database;
  readonly #remembered = new Map<string, { plan: AliasPlan | null; at: number }>();
  readonly #lookups = new SingleFlight<AliasPlan | null>();

  constructor(db: Database) {
    this.#db = db;
  }

  /** The alias's plan now, or null when it has been deleted. */
  async get(aliasId: string): Promise<AliasPlan | null> {
    const known = this.#remembered.get(aliasId);
    if (known && performance.now() - known.at < TRUST_MS) return known.plan;
    const plan = await this.#lookups.run(aliasId, async () => (await readAliasPlans(this.#db, [aliasId])).get(aliasId) ?? null);
    if (this.#remembered.size >= MAX_REMEMBERED) this.#remembered.clear();
    this.#remembered.set(aliasId, { plan, at: performance.now() });
    return plan;
  }
}
