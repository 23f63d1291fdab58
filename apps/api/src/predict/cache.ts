import { createHash } from "node:crypto";
import type { TensorRow } from "@coalesce/contracts";
import type { PackedRows } from "@coalesce/models";
import type { Redis } from "ioredis";

export type PredictCacheSettings = {
  /** How long an answer is kept, in seconds (PREDICT_CACHE_TTL_S); 0 turns the cache off. */
  ttlSeconds: number;
  /** Largest row answer kept, in bytes of JSON (PREDICT_CACHE_MAX_ENTRY_BYTES); larger ones are not cached. */
  maxEntryBytes: number;
};

/**
 * Answers of rows already run, in Redis: one entry per row, keyed by the tenant, the model
 * version's sha256 and the exact values the model sees for the row (its packed bytes: float32
 * inputs after rounding to float32, each input's shape). Another tenant, or another model file,
 * can never share an entry; two versions registered from the same file can, since they answer
 * alike. Entries expire after the TTL; a failure of the cache's Redis is a miss, never an error.
 */
export class PredictCache {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #settings: PredictCacheSettings;

  constructor(redis: Redis, prefix: string, settings: PredictCacheSettings) {
    this.#redis = redis;
    this.#prefix = `${prefix}:predict:cache`;
    this.#settings = settings;
  }

  get enabled(): boolean {
    return this.#settings.ttlSeconds > 0;
  }

  /** Each row's cache key. */
  keys(tenantId: string, sha256: string, rows: PackedRows, inputCount: number): string[] {
    const base = `${this.#prefix}:${tenantId}:${sha256}:`;
    const keys = new Array<string>(rows.rowCount);
    for (let row = 0; row < rows.rowCount; row++) {
      const hash = createHash("sha256");
      for (let input = 0; input < inputCount; input++) {
        const values = rows.values(input, row);
        // The shape too: [[1, 2], [3, 4]] and [[1, 2, 3, 4]] hold the same bytes.
        hash.update(`${input}:${rows.rowDims(input, row).join("x")};`);
        hash.update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      }
      keys[row] = base + hash.digest("base64url");
    }
    return keys;
  }

  /** The cached outputs of each key's row, or undefined where there are none (or Redis fails). */
  async get(keys: readonly string[]): Promise<(TensorRow | undefined)[]> {
    let found: (string | null)[];
    try {
      found = await this.#redis.mget(...keys);
    } catch {
      return keys.map(() => undefined);
    }
    return found.map((text) => {
      if (text === null) return undefined;
      try {
        return JSON.parse(text) as TensorRow;
      } catch {
        return undefined;
      }
    });
  }

  /** Keeps rows' answers for the TTL; best effort (the answer has been given already). */
  set(entries: readonly { key: string; outputs: TensorRow }[]): void {
    if (entries.length === 0) return;
    const pipeline = this.#redis.pipeline();
    let queued = 0;
    for (const { key, outputs } of entries) {
      const text = JSON.stringify(outputs);
      if (Buffer.byteLength(text) > this.#settings.maxEntryBytes) continue;
      pipeline.set(key, text, "EX", this.#settings.ttlSeconds);
      queued++;
    }
    if (queued > 0) pipeline.exec().catch(() => {});
  }
}
