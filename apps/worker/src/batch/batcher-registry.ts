import { DynamicBatcher, type BatcherOptions } from "./batcher.ts";

/**
 * One batcher per key, created on first use. Rows can only share a run when they share a model
 * version and input shape, so the key should name both (e.g. `${modelVersionId}:${shapeKey}`).
 */
export class BatcherRegistry<I, O> {
  private readonly createOptions: (key: string) => BatcherOptions<I, O>;
  private readonly batchers = new Map<string, DynamicBatcher<I, O>>();
  private closed = false;

  /** @param createOptions called once per key, the first time that key is asked for */
  constructor(createOptions: (key: string) => BatcherOptions<I, O>) {
    this.createOptions = createOptions;
  }

  /** Number of live batchers. */
  get size(): number {
    return this.batchers.size;
  }

  /** The batcher for `key`, created if needed. Throws after `closeAll`, so shutdown cannot leak one. */
  get(key: string): DynamicBatcher<I, O> {
    const existing = this.batchers.get(key);
    if (existing) return existing;
    if (this.closed) throw new Error(`BatcherRegistry is closed; cannot create a batcher for "${key}"`);
    const batcher = new DynamicBatcher(this.createOptions(key));
    this.batchers.set(key, batcher);
    return batcher;
  }

  /**
   * Applies fresh options (from `createOptions` again) to the live batchers whose key starts with
   * `prefix`, e.g. every batcher of a model version whose limits changed.
   */
  reconfigure(prefix: string): void {
    for (const [key, batcher] of this.batchers) {
      if (key.startsWith(prefix)) batcher.configure(this.createOptions(key));
    }
  }

  /**
   * Flushes and forgets one key's batcher, e.g. when a model version is unloaded. A later `get`
   * creates a fresh one.
   */
  async close(key: string): Promise<void> {
    const batcher = this.batchers.get(key);
    if (!batcher) return;
    this.batchers.delete(key);
    await batcher.close();
  }

  /**
   * Flushes and forgets the batchers whose key starts with `prefix`, e.g. every batcher of a model
   * version that was unloaded (their limits and instance count were read from it when it was
   * loaded; a later `get` creates them afresh from the version loaded again).
   */
  async closeMatching(prefix: string): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const key of [...this.batchers.keys()]) if (key.startsWith(prefix)) closing.push(this.close(key));
    await Promise.all(closing);
  }

  /** Flushes every batcher and waits for their in-flight runs; later `get` calls throw. */
  async closeAll(): Promise<void> {
    this.closed = true;
    const batchers = [...this.batchers.values()];
    this.batchers.clear();
    await Promise.all(batchers.map((batcher) => batcher.close()));
  }
}
