import { createHash } from "node:crypto";
import type { TensorRow } from "@coalesce/contracts";
import type { PackedRows } from "@coalesce/models";
import { GroupCommit } from "@coalesce/db";
import { hashTaggedPrefix, isCluster, type RedisClient } from "@coalesce/queue";

/** Most requests' lookups (or writes) sent to Redis together; more wait for the next round trip. */
const MAX_TOGETHER = 256;

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
  readonly #redis: RedisClient;
  readonly #prefix: string;
  readonly #settings: PredictCacheSettings;
  /** Lookups of requests arriving while one is in flight go together, as one MGET. */
  readonly #reads: GroupCommit<readonly string[], (string | null)[]>;
  /** Likewise writes, as one pipeline. */
  readonly #writes: GroupCommit<readonly { key: string; text: string }[], undefined>;

  constructor(redis: RedisClient, prefix: string, settings: PredictCacheSettings) {
    this.#redis = redis;
    // A lookup is one MGET, which a cluster takes only for keys of one slot: on a cluster of its own
    // (PREDICT_CACHE_REDIS_URL) the cache's keys share the queue prefix's hash tag, so one node holds them.
    this.#prefix = `${isCluster(redis) ? hashTaggedPrefix(prefix) : prefix}:predict:cache`;
    this.#settings = settings;
    this.#reads = new GroupCommit(async (groups) => {
      // An array, not spread arguments: a group may hold a few hundred thousand keys.
      const found = await this.#redis.mget(groups.flat());
      let at = 0;
      return groups.map((keys) => found.slice(at, (at += keys.length)));
    }, MAX_TOGETHER);
    this.#writes = new GroupCommit(async (groups) => {
      const pipeline = this.#redis.pipeline();
      for (const { key, text } of groups.flat()) pipeline.set(key, text, "EX", this.#settings.ttlSeconds);
      await pipeline.exec();
      return groups.map(() => undefined);
    }, MAX_TOGETHER);
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
      found = await this.#reads.add(keys);
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
    const kept: { key: string; text: string }[] = [];
    for (const { key, outputs } of entries) {
      const text = JSON.stringify(outputs);
      if (Buffer.byteLength(text) <= this.#settings.maxEntryBytes) kept.push({ key, text });
    }
    // Sent before the answer is: a repeat of the request through this API, on the same connection,
    // is then always a hit.
    if (kept.length > 0) this.#writes.add(kept).catch(() => {});
  }
}
