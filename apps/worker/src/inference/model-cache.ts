import { getModelVersion, readBatchingSettings, type BatchingSettings, type Database, type ModelVersionRecord } from "@coalesce/db";
import { loadSessionWithFallback, maxBatchRows, type GraphOptimizationLevel, type ModelStore } from "@coalesce/models";
import type { Logger } from "pino";
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

/**
 * One onnxruntime session per model version per process, loaded on first use. A failed load is
 * forgotten, so the next chunk (a retry) tries again.
 */
export class ModelCache {
  readonly #loading = new Map<string, Promise<LoadedModel>>();
  readonly #loaded = new Map<string, LoadedModel>();
  readonly #db: Database;
  readonly #store: ModelStore;
  readonly #settings: SessionSettings;
  readonly #logger: Logger;

  constructor(db: Database, store: ModelStore, settings: SessionSettings, logger: Logger) {
    this.#db = db;
    this.#store = store;
    this.#settings = settings;
    this.#logger = logger;
  }

  get(modelVersionId: string): Promise<LoadedModel> {
    let loading = this.#loading.get(modelVersionId);
    if (!loading) {
      loading = this.#load(modelVersionId);
      loading.catch(() => this.#loading.delete(modelVersionId));
      this.#loading.set(modelVersionId, loading);
    }
    return loading;
  }

  /** The model if it is loaded already (for labels), without loading it. */
  peek(modelVersionId: string): LoadedModel | undefined {
    return this.#loaded.get(modelVersionId);
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
      const loaded = this.#loaded.get(id);
      if (!loaded || sameBatching(loaded.version.batching, batching)) continue;
      loaded.version = { ...loaded.version, batching };
      changed.push(id);
    }
    return changed;
  }

  async #load(modelVersionId: string): Promise<LoadedModel> {
    const started = performance.now();
    const version = await getModelVersion(this.#db.prisma, modelVersionId);
    if (!version) throw new Error(`model version ${modelVersionId} does not exist`);
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
    const loaded = { version, session, maxBatchRows: maxBatchRows(version), provider, instances };
    this.#loaded.set(modelVersionId, loaded);
    return loaded;
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
    if (this.#loaded.get(modelVersionId)?.session !== session) return false;
    this.#loading.delete(modelVersionId);
    this.#loaded.delete(modelVersionId);
    return true;
  }

  async closeAll(): Promise<void> {
    const loaded = await Promise.allSettled(this.#loading.values());
    this.#loading.clear();
    this.#loaded.clear();
    await Promise.all(
      loaded.map((result) => (result.status === "fulfilled" ? result.value.session.release() : undefined)),
    );
  }
}

function sameBatching(a: BatchingSettings, b: BatchingSettings): boolean {
  return a.maxBatchRows === b.maxBatchRows && a.maxBatchDelayMs === b.maxBatchDelayMs && a.maxBatchBytes === b.maxBatchBytes;
}
