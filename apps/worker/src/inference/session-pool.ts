import type { OrtInferenceSession } from "@coalesce/models";
import type { ModelSession } from "./thread-session.ts";

/** A session that can say how many runs it has been given and not yet answered. */
export type CountingSession = ModelSession & { readonly runsInFlight: number };

/**
 * Several instances of one model (each an onnxruntime session on a thread of its own), used as
 * one: each run goes to the instance with the fewest runs in flight, so batches run side by side
 * (Triton's instance count). With one intra-op thread per instance, a batch never waits for a
 * sibling thread that the OS preempted for the API or Postgres, as onnxruntime's threads of one
 * session wait for each other at every operator.
 */
export class SessionPool implements ModelSession {
  readonly #instances: readonly CountingSession[];

  constructor(instances: readonly CountingSession[]) {
    if (instances.length === 0) throw new RangeError("a session pool needs at least one instance");
    this.#instances = instances;
  }

  get size(): number {
    return this.#instances.length;
  }

  run(feeds: OrtInferenceSession.FeedsType): ReturnType<ModelSession["run"]> {
    let least = this.#instances[0] as CountingSession;
    for (const instance of this.#instances) if (instance.runsInFlight < least.runsInFlight) least = instance;
    return least.run(feeds);
  }

  /** Releases every instance, each after the runs already given to it. */
  async release(): Promise<void> {
    await Promise.all(this.#instances.map((instance) => instance.release()));
  }
}
