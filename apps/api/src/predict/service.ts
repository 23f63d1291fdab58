import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { isTransientError, type PredictRowResult, type TensorRow } from "@coalesce/contracts";
import { GroupCommit, SingleFlight, type JobAlias, type ModelVersionRecord } from "@coalesce/db";
import { packRows, PackedRows } from "@coalesce/models";
import { listWorkers, PredictReplies, submitPredicts, type PredictMessage, type PredictReply } from "@coalesce/queue";
import type { RedisClient } from "@coalesce/queue";
import type { Logger } from "pino";
import { ApiError } from "../errors.ts";
import type { ApiMetrics } from "../metrics.ts";
import { PredictCache, type PredictCacheSettings } from "./cache.ts";

export type PredictSettings = {
  /** Longest a request waits for its answer (PREDICT_TIMEOUT_MS); then 504. */
  timeoutMs: number;
  /** Most rows one request may carry (PREDICT_MAX_ROWS). */
  maxRows: number;
  /** Most rows waiting for an answer over all APIs (PREDICT_MAX_BACKLOG_ROWS); past it, 503 at once. */
  maxBacklogRows: number;
  cache: PredictCacheSettings;
};

/**
 * `use`: answer from the cache where it can and store what ran; `refresh` (Cache-Control:
 * no-cache): run every row, store the answers; `skip` (no-store): neither read nor write.
 */
export type CacheMode = "use" | "refresh" | "skip";

/** Which API asked: counted apart in the metrics. */
export type PredictProtocol = "v1" | "v2";

export type PredictInput = {
  tenantId: string;
  model: ModelVersionRecord;
  /** The alias that routed the request to `model`, if one did (the worker shadows its rows). */
  alias?: JobAlias | null | undefined;
  /** Rows already checked with validateRow against the version's inputs. */
  rows: readonly TensorRow[];
  cache: CacheMode;
  protocol: PredictProtocol;
};

export type PredictOutput = {
  /** One per input row, in order. */
  results: PredictRowResult[];
  /** `hit` when every row came from the cache. */
  cache: "hit" | "miss";
};

/** Most requests one submit takes; more wait for the next. */
const MAX_SUBMITS_TOGETHER = 256;

/** How long the list of live workers is trusted before it is read again. */
const WORKERS_TTL_MS = 1_000;

/**
 * The synchronous path: rows answered from the cache where they can be, the rest sent through
 * Redis to the workers' batchers (interactive lane, sharing runs with every other caller's rows and
 * with jobs' rows), the answer received on this process' own channel. Never hangs: no live worker
 * or a full backlog is a 503 at once, no answer within the timeout a 504 (a 503 if the workers are
 * gone by then).
 */
export class PredictService {
  readonly #redis: RedisClient;
  readonly #prefix: string;
  readonly #settings: PredictSettings;
  readonly #replies: PredictReplies;
  readonly #cache: PredictCache;
  readonly #metrics: ApiMetrics;
  readonly #logger: Logger;
  readonly #workerLookups = new SingleFlight<number>();
  /** Requests arriving while a submit is in flight go together in the next one (one Redis round trip). */
  readonly #submits: GroupCommit<PredictMessage, number | null>;
  #workers: { count: number; at: number } | undefined;
  #next = 0;

  constructor(options: { redis: RedisClient; cacheRedis: RedisClient; prefix: string; settings: PredictSettings; metrics: ApiMetrics; logger: Logger }) {
    this.#redis = options.redis;
    this.#prefix = options.prefix;
    this.#settings = options.settings;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    // Unique per instance: two in one process (tests, or two apps) must not read each other's answers.
    this.#replies = new PredictReplies(options.redis, options.prefix, `${hostname()}:${process.pid}:${randomBytes(6).toString("hex")}`);
    this.#replies.subscribe().catch(() => {});
    this.#cache = new PredictCache(options.cacheRedis, options.prefix, options.settings.cache);
    this.#submits = new GroupCommit((messages) => submitPredicts(this.#redis, this.#prefix, messages, this.#settings.maxBacklogRows), MAX_SUBMITS_TOGETHER);
  }

  get settings(): PredictSettings {
    return this.#settings;
  }

  /** Whether a live worker answers predict requests (cached for WORKERS_TTL_MS). */
  async ready(): Promise<boolean> {
    return (await this.#liveWorkers()) > 0;
  }

  async predict(input: PredictInput): Promise<PredictOutput> {
    const end = this.#metrics.predictDuration.startTimer({ protocol: input.protocol });
    let outcome: "ok" | "timeout" | "rejected" | "error" = "error";
    try {
      const output = await this.#predict(input);
      outcome = "ok";
      return output;
    } catch (error) {
      // Refused: no worker, a full backlog, or Redis away (which the error handler answers 503 too).
      if (error instanceof ApiError) outcome = error.code === "timeout" ? "timeout" : error.code === "service_unavailable" ? "rejected" : "error";
      else if (isTransientError(error)) outcome = "rejected";
      throw error;
    } finally {
      this.#metrics.predictRequests.inc({ protocol: input.protocol, outcome });
      end({ outcome });
    }
  }

  async #predict({ tenantId, model, alias, rows, cache }: PredictInput): Promise<PredictOutput> {
    const inputs = model.inputs;
    const packed = packRows(rows, inputs);
    const results = new Array<PredictRowResult>(rows.length);
    let keys: string[] | undefined;
    let missing = rows.map((_, index) => index);
    if (cache !== "skip" && this.#cache.enabled) {
      keys = this.#cache.keys(tenantId, model.sha256, PackedRows.decode(packed, inputs), inputs.length);
      if (cache === "use") {
        const found = await this.#cache.get(keys);
        missing = [];
        found.forEach((outputs, index) => {
          if (outputs) results[index] = { outputs };
          else missing.push(index);
        });
        const hits = rows.length - missing.length;
        if (hits > 0) this.#metrics.predictCache.inc({ result: "hit" }, hits);
        if (missing.length > 0) this.#metrics.predictCache.inc({ result: "miss" }, missing.length);
        if (missing.length === 0) return { results, cache: "hit" };
      }
    }

    if ((await this.#liveWorkers()) === 0) {
      throw new ApiError("service_unavailable", "no worker is running to answer predictions; start one (npm run start:worker) or retry in 5 s");
    }
    if (!this.#replies.listening) {
      // Answers could not reach this process: say so now rather than time out.
      await this.#replies.subscribe().catch(() => {});
      if (!this.#replies.listening) throw new ApiError("service_unavailable", "the queue (Redis) is unreachable right now; retry in 5 s");
    }
    const id = (this.#next++).toString(36);
    const { answer, cancel } = this.#replies.wait(id, this.#settings.timeoutMs);
    let queued: number | null;
    try {
      const now = Date.now();
      queued = await this.#submits.add({
        id,
        modelVersionId: model.id,
        alias: alias ? { id: alias.id, revision: alias.revision } : null,
        replyTo: this.#replies.channel,
        deadline: now + this.#settings.timeoutMs,
        submittedAt: now,
        rows: missing.length === rows.length ? packed : packRows(missing.map((index) => rows[index]!), inputs),
        rowCount: missing.length,
      });
    } catch (error) {
      cancel();
      throw error;
    }
    if (queued === null) {
      cancel();
      throw new ApiError(
        "service_unavailable",
        `the workers have more than PREDICT_MAX_BACKLOG_ROWS (${this.#settings.maxBacklogRows}) rows waiting; retry in 5 s, or submit a job for bulk work`,
      );
    }
    // The workers may all stop while the request waits (their heartbeats go stale within
    // STALLED_TAKEOVER_MS): then it is answered 503 as soon as that is seen, not at the timeout.
    let workersGone = false;
    const watch = setInterval(() => {
      this.#liveWorkers().then(
        (count) => {
          if (count > 0) return;
          workersGone = true;
          cancel();
        },
        () => {},
      );
    }, WORKERS_TTL_MS);
    const reply = await answer.finally(() => clearInterval(watch));
    if (!reply) {
      // Nobody answered: the workers may all have stopped meanwhile (then retrying later helps).
      this.#workers = undefined;
      if (workersGone || (await this.#liveWorkers().catch(() => 0)) === 0) {
        throw new ApiError("service_unavailable", "the worker running the request stopped and no other is running; retry in 5 s");
      }
      throw new ApiError("timeout", `no answer within PREDICT_TIMEOUT_MS (${this.#settings.timeoutMs} ms); the workers are busy or stalled, retry, or submit a job`);
    }
    const ran = this.#read(reply, missing.length);
    const fresh: { key: string; outputs: TensorRow }[] = [];
    missing.forEach((index, i) => {
      const result = ran[i]!;
      results[index] = result;
      if (keys && "outputs" in result) fresh.push({ key: keys[index]!, outputs: result.outputs });
    });
    this.#cache.set(fresh);
    return { results, cache: "miss" };
  }

  #read(reply: PredictReply, rows: number): PredictRowResult[] {
    if ("failure" in reply) {
      this.#logger.warn({ failure: reply.failure }, "a worker could not answer a predict request");
      throw new ApiError("service_unavailable", `${reply.failure.message}; retry in 5 s`);
    }
    if (reply.results.length !== rows) throw new Error(`a worker answered ${reply.results.length} rows for a request of ${rows}`);
    return reply.results;
  }

  async #liveWorkers(): Promise<number> {
    const now = Date.now();
    if (this.#workers && now - this.#workers.at < WORKERS_TTL_MS) return this.#workers.count;
    const count = await this.#workerLookups.run("workers", async () => (await listWorkers(this.#redis, this.#prefix)).filter((worker) => worker.predict).length);
    this.#workers = { count, at: Date.now() };
    return count;
  }

  close(): void {
    this.#replies.close();
  }
}
