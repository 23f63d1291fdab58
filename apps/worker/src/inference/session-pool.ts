import type { FallbackSession, OrtInferenceSession } from "@coalesce/models";
import { ThreadSession, type ModelSession, type ThreadSetup } from "./thread-session.ts";

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

/** A model opened as one or more instances: a ThreadSession alone, or a SessionPool of them. */
export type OpenedInstances = Omit<FallbackSession, "session"> & { session: ModelSession; instances: number };

/**
 * Opens `count` instances of a model, each a ThreadSession on a thread of its own: the first
 * settles the provider (after any fallbacks), the others open on that one together. If any fails,
 * those opened are released and the error thrown. `onExit` hears of any thread ending.
 */
export async function openInstances(setup: ThreadSetup, count: number, onExit: () => void = () => {}): Promise<OpenedInstances> {
  const first = await ThreadSession.open(setup, onExit);
  const others = await Promise.allSettled(
    Array.from({ length: count - 1 }, () => ThreadSession.open({ ...setup, providers: [first.provider] }, onExit)),
  );
  const opened = [first.session, ...others.flatMap((other) => (other.status === "fulfilled" ? [other.value.session] : []))];
  const failed = others.find((other) => other.status === "rejected");
  if (failed) {
    await Promise.all(opened.map((thread) => thread.release()));
    throw failed.reason;
  }
  const session = opened.length === 1 ? first.session : new SessionPool(opened);
  return { session, provider: first.provider, skipped: first.skipped, instances: opened.length };
}
