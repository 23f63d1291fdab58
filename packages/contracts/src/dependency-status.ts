/**
 * What a process says about a dependency (Postgres, Redis) going away and coming back: two log
 * lines per outage, not one per retry. Every connection of the process to that dependency reports
 * here (packages/db's pool, packages/queue's Redis connections and their duplicates).
 */

/** The part of a logger an outage report uses; pino's Logger is one. */
export type StatusLogger = {
  warn(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
};

/** For connections nobody listens to (tests, one-off scripts): reports go nowhere. */
export const SILENT_STATUS_LOGGER: StatusLogger = { warn() {}, info() {} };

/** A failure in a few words: its message, or its code when it has none (an AggregateError's is empty). */
export function describeFailure(error: unknown): string {
  if (!error || typeof error !== "object") return String(error);
  const { message, code, name } = error as { message?: unknown; code?: unknown; name?: unknown };
  if (typeof message === "string" && message.length > 0) return message;
  if (typeof code === "string") return code;
  return typeof name === "string" ? name : "unknown error";
}

/**
 * One dependency as a process's connections see it. The first connection to lose it logs a
 * warning; failed attempts after that (reconnects, refused connects) are only counted; when every
 * connection that lost it has reached it again, one info line says how long it was gone and how
 * many attempts failed meanwhile.
 */
export class DependencyStatus {
  readonly name: string;
  readonly #logger: StatusLogger;
  readonly #lost = new Set<object>();
  #since: number | null = null;
  #failures = 0;

  constructor(name: string, logger: StatusLogger = SILENT_STATUS_LOGGER) {
    this.name = name;
    this.#logger = logger;
  }

  /** False from the first failure until every connection that failed has reached it again. */
  get available(): boolean {
    return this.#since === null;
  }

  /** `connection` could not reach the dependency, or lost it. */
  failed(connection: object, error: unknown): void {
    this.#lost.add(connection);
    this.#failures++;
    if (this.#since !== null) return;
    this.#since = Date.now();
    this.#logger.warn({ dependency: this.name, reason: describeFailure(error) }, `${this.name} unavailable`);
  }

  /** `connection` reached the dependency (connected, or became ready after a reconnect). */
  reached(connection: object): void {
    this.#lost.delete(connection);
    if (this.#since === null || this.#lost.size > 0) return;
    const downSeconds = Math.round((Date.now() - this.#since) / 1000);
    const failedAttempts = this.#failures;
    this.#since = null;
    this.#failures = 0;
    this.#logger.info(
      { dependency: this.name, downSeconds, failedAttempts },
      `${this.name} is back after ${downSeconds} s, ${failedAttempts} failed connection attempts`,
    );
  }

  /** `connection` was closed on purpose: it no longer holds an outage open. */
  forget(connection: object): void {
    this.#lost.delete(connection);
  }
}
