/**
 * Concurrent identical reads share one query: while a read of `key` is in flight, asking again
 * joins it instead of sending another. Nothing is kept once it settles, so this is not a cache: a
 * read that starts after a change (a revoked API key, a new model version) sees the change.
 */
export class SingleFlight<V> {
  readonly #inFlight = new Map<string, Promise<V>>();

  run(key: string, read: () => Promise<V>): Promise<V> {
    const joined = this.#inFlight.get(key);
    if (joined) return joined;
    const started = read().finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, started);
    return started;
  }
}

/** SingleFlight for one read without a key: callers while it runs share its answer (a burst of scrapes or probes costs one). */
export function sharedFlight<V>(read: () => Promise<V>): () => Promise<V> {
  const flight = new SingleFlight<V>();
  return () => flight.run("", read);
}
