import { describeFailure, transientDependency, type Dependency } from "@coalesce/contracts";
import type { Logger } from "pino";

/** The first retry of a failure waits this long; later ones wait as long as the outage has lasted, up to the cap. */
const FIRST_RETRY_MS = 250;

type Outage = { since: number; failures: number };

/**
 * The worker's side of an outage of Postgres or Redis. The outage itself is told by the
 * connections (DependencyStatus: one warning when the dependency goes away, one info line with
 * counts when it is back); what the worker's work meets meanwhile (a chunk that could not reach
 * Postgres, a heartbeat that could not reach Redis) is reported here instead of being logged a line
 * per chunk per retry. This decides whether and for how long work is held back, and says at debug
 * level what was held back.
 */
export class Outages {
  readonly #down = new Map<Dependency, Outage>();
  readonly #logger: Logger;
  readonly #maxRetryDelayMs: number;

  /** @param maxRetryDelayMs - the longest a failed piece of work waits before it tries again */
  constructor(logger: Logger, maxRetryDelayMs: number) {
    this.#logger = logger;
    this.#maxRetryDelayMs = maxRetryDelayMs;
  }

  /**
   * Records a transient failure. `dependency` is what the caller was talking to; the error's own
   * classification wins where it names Postgres or Redis (a bare ECONNREFUSED names neither).
   * Returns the dependency it was counted against.
   */
  failed(dependency: Dependency, error: unknown): Dependency {
    const named = transientDependency(error);
    const which = named === "postgres" || named === "redis" ? named : dependency;
    const outage = this.#down.get(which);
    if (outage) outage.failures++;
    else {
      this.#down.set(which, { since: Date.now(), failures: 1 });
      this.#logger.debug({ dependency: which, reason: describeFailure(error) }, `${which} unreachable from the worker's work; holding work back`);
    }
    return which;
  }

  /** Records that `dependency` answered the worker's work; ends its outage here, if there was one. */
  ok(dependency: Dependency): void {
    const outage = this.#down.get(dependency);
    if (!outage) return;
    this.#down.delete(dependency);
    this.#logger.debug({ dependency, downForMs: Date.now() - outage.since, failures: outage.failures }, `${dependency} answers the worker's work again`);
  }

  isDown(dependency: Dependency): boolean {
    return this.#down.has(dependency);
  }

  /**
   * How long work that just failed on `dependency` waits before trying again: briefly at first (a
   * blip), then as long as the outage has lasted so far, capped, so a long outage costs a retry per
   * chunk every few seconds rather than a storm. Jittered, so chunks do not retry in lockstep.
   */
  retryDelayMs(dependency: Dependency): number {
    const outage = this.#down.get(dependency);
    const base = Math.min(this.#maxRetryDelayMs, Math.max(FIRST_RETRY_MS, outage ? Date.now() - outage.since : 0));
    return Math.round(base * (0.75 + Math.random() * 0.5));
  }
}
