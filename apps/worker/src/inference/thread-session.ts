import { Worker } from "node:worker_threads";
import type { FallbackSession, LoadSessionOptions, OrtInferenceSession, OrtTensor, OutputTensor } from "@coalesce/models";

/** A tensor as it crosses between threads: typed-array data moves (is transferred), never copied. */
export type WireTensor = { type: OrtTensor.Type; data: OrtTensor.DataType; dims: readonly number[] };
export type WireTensors = Record<string, WireTensor>;

/** What the thread is started with (structured-cloned). */
export type ThreadSetup = {
  model: string | Uint8Array;
  providers: readonly string[];
  options: Omit<LoadSessionOptions, "executionProviders">;
};
export type ThreadRequest = { type: "run"; id: number; feeds: WireTensors } | { type: "release" };
export type ThreadReply =
  | { type: "loaded"; provider: string; skipped: FallbackSession["skipped"] }
  | { type: "load-failed"; error: string }
  | { id: number; outputs: WireTensors }
  | { id: number; error: string };

/** What a worker needs of a session: the in-process onnxruntime one and ThreadSession both fit. */
export type ModelSession = {
  run(feeds: OrtInferenceSession.FeedsType): Promise<Readonly<Record<string, OutputTensor>>>;
  release(): Promise<void>;
};

/**
 * How a thread starts. Compiled (dist/*.js, as in production) it runs the thread's JavaScript file.
 * From source (under tsx, the dev loop and unit tests) the thread starts without the parent's module
 * hooks, so it registers tsx itself before loading the TypeScript entry (resolved here, so the thread
 * does not depend on the working directory, and tsx is never needed by a compiled worker).
 */
function threadEntry(): { code: string | URL; eval: boolean } {
  if (import.meta.url.endsWith(".js")) return { code: new URL("./inference-thread.js", import.meta.url), eval: false };
  const entry = new URL("./inference-thread.ts", import.meta.url).href;
  const tsxApi = import.meta.resolve("tsx/esm/api");
  return { code: `import(${JSON.stringify(tsxApi)}).then(({ register }) => { register(); return import(${JSON.stringify(entry)}); });`, eval: true };
}

/**
 * An onnxruntime session on a worker thread of its own. onnxruntime-node's `run` executes on the
 * calling thread, so in process a batch run stalls the event loop for its whole duration: no chunk
 * is fetched, no row prepared and no result written meanwhile, and the next batch can only gather
 * what arrived before. On its own thread the run overlaps all of that. Runs queue on the thread in
 * order; inputs and outputs cross as transferred typed arrays.
 */
export class ThreadSession implements ModelSession {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (outputs: WireTensors) => void; reject: (error: Error) => void }>();
  #nextId = 0;
  #exited: Error | null = null;
  readonly #released: Promise<void>;

  private constructor(worker: Worker, onExit: (session: ThreadSession) => void) {
    this.#worker = worker;
    worker.on("message", (reply: ThreadReply) => {
      if (!("id" in reply)) return;
      const pending = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) worker.unref();
      if ("outputs" in reply) pending?.resolve(reply.outputs);
      else pending?.reject(new Error(reply.error));
    });
    this.#released = new Promise((resolve) => {
      worker.once("exit", (code) => {
        this.#exited = new Error(`the inference thread exited (code ${code})`);
        for (const pending of this.#pending.values()) pending.reject(this.#exited);
        this.#pending.clear();
        onExit(this);
        resolve();
      });
    });
    worker.on("error", () => {
      // Followed by "exit", which fails what was in flight.
    });
  }

  /**
   * Starts a thread and opens the model there on the first of `providers` that can (see
   * loadSessionWithFallback). `onExit` hears of the thread ending for any reason, release included.
   */
  static async open(setup: ThreadSetup, onExit: (session: ThreadSession) => void = () => {}): Promise<Omit<FallbackSession, "session"> & { session: ThreadSession }> {
    const entry = threadEntry();
    const worker = new Worker(entry.code, { eval: entry.eval, workerData: setup });
    const loaded = await new Promise<Extract<ThreadReply, { type: "loaded" }>>((resolve, reject) => {
      const onExitEarly = (code: number) => reject(new Error(`the inference thread exited while loading the model (code ${code})`));
      worker.once("exit", onExitEarly);
      worker.once("error", reject);
      worker.once("message", (reply: ThreadReply) => {
        worker.off("exit", onExitEarly);
        worker.off("error", reject);
        if ("type" in reply && reply.type === "loaded") resolve(reply);
        else reject(new Error("error" in reply ? reply.error : "the inference thread did not load the model"));
      });
    });
    worker.unref();
    return { session: new ThreadSession(worker, onExit), provider: loaded.provider, skipped: loaded.skipped };
  }

  /** Runs posted to the thread and not answered yet. */
  get runsInFlight(): number {
    return this.#pending.size;
  }

  run(feeds: OrtInferenceSession.FeedsType): Promise<WireTensors> {
    if (this.#exited) return Promise.reject(this.#exited);
    const wire: WireTensors = {};
    const transfer: ArrayBuffer[] = [];
    for (const [name, tensor] of Object.entries(feeds)) {
      wire[name] = { type: tensor.type, data: tensor.data, dims: tensor.dims };
      // Batches are built afresh for every run, so their buffers can move rather than be copied.
      if (ArrayBuffer.isView(tensor.data) && tensor.data.buffer instanceof ArrayBuffer) transfer.push(tensor.data.buffer);
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.ref();
      this.#worker.postMessage({ type: "run", id, feeds: wire } satisfies ThreadRequest, transfer);
    });
  }

  /** Lets the runs already posted finish, then releases the session and ends the thread. */
  async release(): Promise<void> {
    if (!this.#exited) {
      this.#worker.ref();
      this.#worker.postMessage({ type: "release" } satisfies ThreadRequest);
    }
    await this.#released;
  }
}
