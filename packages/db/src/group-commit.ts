/**
 * Group commit, as databases do it: items that arrive while a write is in flight go together in
 * the next one. One item alone is written at once (no timer, no added latency); under load the cost
 * of a round trip is shared by every item of the group.
 */
export class GroupCommit<I, O> {
  readonly #write: (items: I[]) => Promise<O[]>;
  readonly #maxItems: number;
  #pending: { item: I; resolve: (value: O) => void; reject: (error: unknown) => void }[] = [];
  #writing = false;

  /**
   * @param write - writes a group and returns one result per item, in order.
   * @param maxItems - the most items one write takes; more wait for the next.
   */
  constructor(write: (items: I[]) => Promise<O[]>, maxItems: number) {
    this.#write = write;
    this.#maxItems = maxItems;
  }

  add(item: I): Promise<O> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      if (!this.#writing) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#pending.length > 0) {
        const group = this.#pending.splice(0, this.#maxItems);
        try {
          const results = await this.#write(group.map((entry) => entry.item));
          group.forEach((entry, i) => entry.resolve(results[i] as O));
        } catch (error) {
          for (const entry of group) entry.reject(error);
        }
      }
    } finally {
      this.#writing = false;
    }
  }
}
