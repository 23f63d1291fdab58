import { getModelVersion, readBatchingSettings, type BatchingSettings, type Database, type ModelVersionRecord } from "@coalesce/db";
import { loadSessionWithFallback, maxBatchRows, type GraphOptimizationLevel, type ModelStore } from "@coalesce/models";
import { setInterval } from "node:timers/promises";
import type { Logger } from "pino";
import type { ModelCacheMetrics } from "../metrics.ts";
import { openInstances, type OpenedInstances } from "./session-pool.ts";
import type { ModelSession, ThreadSetup } from "./thread-session.ts";

export type LoadedModel = {
  version: ModelVersionRecord;
  session: ModelSession;
  /** Most rows one run may take: 1 for a model whose batch dimension is fixed to 1. */
  maxBatchRows: number;
  /** The execution provider the session runs on. */
  provider: string;
  /** Instances of the model that run batches side by side (MODEL_INSTANCES; 1 in process). */
  instances: number;
};

export type SessionSettings = {
  intraOpNumThreads: number;
  graphOptimizationLevel: GraphOptimizationLevel;
  /** In order of preference; the first that can open the model is used. */
  executionProviders: readonly string[];
  /** Each model's session on a thread of its own (see ThreadSession), or in this thread. */
  inferenceThreads: boolean;
  /** Sessions per model, each on its own thread, running batches side by side (needs inferenceThreads). */
  instances: number;
  /** Lets onnxruntime's intra-op threads busy-wait for work between runs (its default). */
  spinning: boolean;
};

export type ModelCachePolicy = {
  /**
   * A version that has not been used for this long (no rows submitted, waiting or running) is
   * unloaded: its sessions, their threads and memory go, and the next rows for it load it again
   * (MODEL_IDLE_UNLOAD_S). 0: never.
   * @defaultValue 0
   */
  idleUnloadMs?: number;
  /**
   * Most versions loaded at once (MAX_LOADED_MODELS): past it the least recently used are unloaded,
   * never one holding a lease (rows waiting or running). When every one does, the cache stays over
   * the limit and unloads as leases end. 0: no limit.
   * @defaultValue 0
   */
  maxLoaded?: number;
  /** @defaultValue undefined, nothing is counted */
  metrics?: ModelCacheMetrics;
  /**
   * Hears of each version unloaded, once a `get` no longer finds it (to drop what was configured
   * from it, such as its batchers); it holds no lease then, so nothing of it is in flight.
   * @defaultValue undefined
   */
  onUnload?: (modelVersionId: string) => void;
};

/** A version held loaded (see ModelCache.acquire); `release` may be called more than once, and counts once. */
export type ModelLease = { release(): void };

export type UnloadReason = "idle" | "lru";

type Entry = { model: LoadedModel; lastUsedAt: number };

/** Longest between two looks for idle versions, however long MODEL_IDLE_UNLOAD_S is. */
const MAX_IDLE_SWEEP_MS = 60_000;

/**
 * One onnxruntime session per model version per process, loaded on first use. A failed load is
 * forgotten, so the next chunk (a retry) tries again. A version idle for `idleUnloadMs`, or the
 * least recently used past `maxLoaded`, is unloaded, unless it is leased: the worker's batchers
 * lease a version from the moment rows are submitted for it until their run has ended, so an
 * unload never releases a session a batch is about to run on, and a `get` after an unload loads
 * the version afresh.
 */
export class ModelCache {
  readonly #loading = new Map<string, Promise<LoadedModel>>();
  /** Least recently used first: a use moves a version to the end. */
  readonly #loaded = new Map<string, Entry>();
  /** Leases held per version, loaded or not (rows may be submitted for one just unloaded, or still loading). */
  readonly #leases = new Map<string, number>();
  /** Sessions of unloaded versions still ending their threads, awaited by closeAll. */
  readonly #releasing = new Set<Promise<void>>();
  readonly #db: Database;
  readonly #store: ModelStore;
  readonly #settings: SessionSettings;
  readonly #logger: Logger;
  readonly #maxLoaded: number;
  readonly #idleUnloadMs: number;
  readonly #metrics: ModelCacheMetrics | undefined;
  readonly #onUnload: ((modelVersionId: string) => void) | undefined;
  readonly #stopSweep = new AbortController();
  readonly #sweep: Promise<void>;
  #trimQueued = false;
  #overLimitSaid = false;
  #closed = false;

  constructor(db: Database, store: ModelStore, settings: SessionSettings, logger: Logger, policy: ModelCachePolicy = {}) {
    this.#db = db;
    this.#store = store;
    this.#settings = settings;
    this.#logger = logger;
    this.#maxLoaded = policy.maxLoaded ?? 0;
    this.#idleUnloadMs = policy.idleUnloadMs ?? 0;
    this.#metrics = policy.metrics;
    this.#onUnload = policy.onUnload;
    this.#sweep = this.#idleUnloadMs > 0 ? this.#sweepIdle() : Promise.resolve();
  }

  /** Versions loaded now. */
  get size(): number {
    return this.#loaded.size;
  }

  /**
   * The loaded version, loading it first if needed; counts as a use (LRU order, idle time). Not a
   * lease: the rows it is wanted for keep it once they are submitted to its batchers.
   */
  get(modelVersionId: string): Promise<LoadedModel> {
    let loading = this.#loading.get(modelVersionId);
    if (!loading) {
      const started = this.#load(modelVersionId);
      started.catch(() => {
        if (this.#loading.get(modelVersionId) === started) this.#loading.delete(modelVersionId);
      });
      this.#loading.set(modelVersionId, started);
      loading = started;
    }
    this.#touch(modelVersionId);
    return loading;
  }

  /** The model if it is loaded already (for labels), without loading it, and without counting as a use. */
  peek(modelVersionId: string): LoadedModel | undefined {
    return this.#loaded.get(modelVersionId)?.model;
  }

  /**
   * Keeps `modelVersionId` loaded until the lease is released: it is neither unloaded while loaded
   * nor, if it is not loaded yet (rows submitted for a version just unloaded), once a `get` has
   * loaded it again. It does not load the version itself. Release counts as a use (the version's
   * idle time starts then).
   */
  acquire(modelVersionId: string): ModelLease {
    this.#leases.set(modelVersionId, (this.#leases.get(modelVersionId) ?? 0) + 1);
    this.#touch(modelVersionId);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const left = (this.#leases.get(modelVersionId) ?? 1) - 1;
        if (left > 0) this.#leases.set(modelVersionId, left);
        else this.#leases.delete(modelVersionId);
        this.#touch(modelVersionId);
        // A cache held over its limit by versions in use shrinks as they free.
        if (left === 0 && this.#overLimit()) this.#scheduleTrim();
      },
    };
  }

  /**
   * Re-reads the batching limits of the versions loaded here (they can be changed through the API
   * while the worker runs) and returns the ids of those whose limits changed.
   */
  async refreshBatching(): Promise<string[]> {
    if (this.#loaded.size === 0) return [];
    const current = await readBatchingSettings(this.#db, [...this.#loaded.keys()]);
    const changed: string[] = [];
    for (const [id, batching] of current) {
      const loaded = this.#loaded.get(id)?.model;
      if (!loaded || sameBatching(loaded.version.batching, batching)) continue;
      loaded.version = { ...loaded.version, batching };
      changed.push(id);
    }
    return changed;
  }

  async #load(modelVersionId: string): Promise<LoadedModel> {
    const started = performance.now();
    let version: ModelVersionRecord | null = null;
    try {
      version = await getModelVersion(this.#db.prisma, modelVersionId);
      if (!version) throw new Error(`model version ${modelVersionId} does not exist`);
      const loaded = await this.#open(modelVersionId, version, started);
      const seconds = (performance.now() - started) / 1000;
      this.#loaded.set(modelVersionId, { model: loaded, lastUsedAt: performance.now() });
      this.#metrics?.modelLoads.inc({ ...labelsOf(version), outcome: "loaded" });
      this.#metrics?.modelLoadSeconds.observe(seconds);
      this.#metrics?.modelsLoaded.set(this.#loaded.size);
      if (this.#overLimit()) this.#scheduleTrim();
      return loaded;
    } catch (error) {
      this.#metrics?.modelLoads.inc({ ...(version ? labelsOf(version) : { model: modelVersionId, version: "" }), outcome: "failed" });
      throw error;
    }
  }

  async #open(modelVersionId: string, version: ModelVersionRecord, started: number): Promise<LoadedModel> {
    const path = this.#store.pathOf(version.sha256);
    const options = {
      graphOptimizationLevel: this.#settings.graphOptimizationLevel,
      ...(this.#settings.intraOpNumThreads > 0 ? { intraOpNumThreads: this.#settings.intraOpNumThreads } : {}),
      spinning: this.#settings.spinning,
    };
    const providers = this.#settings.executionProviders;
    const { session, provider, skipped, instances } = this.#settings.inferenceThreads
      ? await this.#openThreads(modelVersionId, { model: path, providers, options })
      : { ...(await loadSessionWithFallback(path, providers, options)), instances: 1 };
    const log = { model: version.modelName, version: version.version, provider, instances };
    for (const skip of skipped) this.#logger.warn({ ...log, skipped: skip.provider, reason: skip.reason }, "execution provider unavailable; fell back");
    this.#logger.info({ ...log, ms: Math.round(performance.now() - started) }, "model loaded");
    return { version, session, maxBatchRows: maxBatchRows(version), provider, instances };
  }

  /** Counts a use of a loaded version: it becomes the most recently used, and its idle time starts again. */
  #touch(modelVersionId: string): void {
    const entry = this.#loaded.get(modelVersionId);
    if (!entry) return;
    entry.lastUsedAt = performance.now();
    this.#loaded.delete(modelVersionId);
    this.#loaded.set(modelVersionId, entry);
  }

  #overLimit(): boolean {
    return this.#maxLoaded > 0 && this.#loaded.size > this.#maxLoaded;
  }

  /**
   * Trims on the next turn of the event loop, not now: a version just loaded (or just freed) gets
   * to the caller of `get`, which submits its rows (leasing it) in the same turn, before any trim
   * could take it.
   */
  #scheduleTrim(): void {
    if (this.#trimQueued || this.#closed) return;
    this.#trimQueued = true;
    setImmediate(() => {
      this.#trimQueued = false;
      this.#trim();
    });
  }

  /** Unloads the least recently used versions without leases until at most `maxLoaded` are loaded. */
  #trim(): void {
    if (this.#closed) return;
    for (const [id, entry] of this.#loaded) {
      if (!this.#overLimit()) break;
      if (!this.#leases.has(id)) this.#unload(id, entry, "lru");
    }
    if (!this.#overLimit()) {
      this.#overLimitSaid = false;
      return;
    }
    if (this.#overLimitSaid) return;
    this.#overLimitSaid = true;
    this.#logger.info(
      { loaded: this.#loaded.size, maxLoadedModels: this.#maxLoaded },
      "more models loaded than MAX_LOADED_MODELS, every one with rows waiting or running; unloading them as their rows finish",
    );
  }

  /** One loop, every quarter of MODEL_IDLE_UNLOAD_S (at most a minute): a version goes within 1.25 times its idle limit. */
  async #sweepIdle(): Promise<void> {
    const signal = this.#stopSweep.signal;
    const everyMs = Math.min(MAX_IDLE_SWEEP_MS, Math.max(10, Math.round(this.#idleUnloadMs / 4)));
    try {
      for await (const _ of setInterval(everyMs, undefined, { signal, ref: false })) {
        const now = performance.now();
        for (const [id, entry] of this.#loaded) {
          if (!this.#leases.has(id) && now - entry.lastUsedAt >= this.#idleUnloadMs) this.#unload(id, entry, "idle");
        }
      }
    } catch (error) {
      if (!signal.aborted) throw error;
    }
  }

  /**
   * Takes a version out of the cache at once (a `get` from now on loads it afresh), then releases its
   * sessions, which ends their threads. Only for a version without leases: nothing of it runs.
   */
  #unload(modelVersionId: string, entry: Entry, reason: UnloadReason): void {
    this.#loaded.delete(modelVersionId);
    this.#loading.delete(modelVersionId);
    const labels = labelsOf(entry.model.version);
    this.#metrics?.modelUnloads.inc({ ...labels, reason });
    this.#metrics?.modelsLoaded.set(this.#loaded.size);
    const idleSeconds = Math.round((performance.now() - entry.lastUsedAt) / 100) / 10;
    this.#logger.info({ ...labels, modelVersionId, reason, idleSeconds, loaded: this.#loaded.size }, "model unloaded");
    this.#onUnload?.(modelVersionId);
    const releasing: Promise<void> = entry.model.session
      .release()
      .catch((error: unknown) => this.#logger.warn({ err: error, ...labels }, "could not release an unloaded model's session"))
      .finally(() => this.#releasing.delete(releasing));
    this.#releasing.add(releasing);
  }

  /**
   * Opens the model's instances, each on a thread of its own. A thread that ends (it should not,
   * short of release) takes the model with it: its siblings are released and the next chunk reloads it.
   */
  async #openThreads(modelVersionId: string, setup: ThreadSetup): Promise<OpenedInstances> {
    let session: ModelSession | undefined;
    const opened = await openInstances(setup, this.#settings.instances, () => {
      if (session && this.#forget(modelVersionId, session)) void session.release();
    });
    session = opened.session;
    return opened;
  }

  /** Forgets a loaded model whose session is `session`; false when another has replaced it since. */
  #forget(modelVersionId: string, session: ModelSession): boolean {
    if (this.#loaded.get(modelVersionId)?.model.session !== session) return false;
    this.#loading.delete(modelVersionId);
    this.#loaded.delete(modelVersionId);
    this.#metrics?.modelsLoaded.set(this.#loaded.size);
    return true;
  }

  /** Releases every session, those of versions being unloaded included; no version is unloaded after. */
  async closeAll(): Promise<void> {
    this.#closed = true;
    this.#stopSweep.abort();
    await this.#sweep;
    const loaded = await Promise.allSettled(this.#loading.values());
    this.#loading.clear();
    this.#loaded.clear();
    this.#metrics?.modelsLoaded.set(0);
    await Promise.all([
      ...loaded.map((result) => (result.status === "fulfilled" ? result.value.session.release() : undefined)),
      ...this.#releasing,
    ]);
  }
}

function labelsOf(version: ModelVersionRecord): { model: string; version: string } {
  return { model: version.modelName, version: String(version.version) };
}

function sameBatching(a: BatchingSettings, b: BatchingSettings): boolean {
  return a.maxBatchRows === b.maxBatchRows && a.maxBatchDelayMs === b.maxBatchDelayMs && a.maxBatchBytes === b.maxBatchBytes;
}
