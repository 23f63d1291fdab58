import * as ort from "onnxruntime-node";
import { buildIdentityModel } from "./tiny-onnx.ts";

export type LoadSessionOptions = {
  /**
   * Threads ONNX Runtime uses inside one operator. Lower it when several sessions or workers share
   * a machine, so they do not oversubscribe the cores.
   * @defaultValue ONNX Runtime's own default (one per physical core)
   */
  intraOpNumThreads?: number;
  /**
   * Whether the intra-op threads busy-wait between pieces of work. Spinning shaves a little latency
   * off each operator but burns a core that, on a small machine, Postgres, Redis and the event loop need.
   * @defaultValue true (ONNX Runtime's own default)
   */
  spinning?: boolean;
  /**
   * Execution providers in order of preference, e.g. `["cuda", "cpu"]`.
   * @defaultValue `["cpu"]`
   */
  executionProviders?: string[];
  /** @defaultValue "all" */
  graphOptimizationLevel?: GraphOptimizationLevel;
};

export const GRAPH_OPTIMIZATION_LEVELS = ["disabled", "basic", "extended", "all"] as const;
export type GraphOptimizationLevel = (typeof GRAPH_OPTIMIZATION_LEVELS)[number];

/** Execution providers Coalesce knows how to ask onnxruntime for, in the names EXECUTION_PROVIDERS takes. */
export const EXECUTION_PROVIDERS = ["cpu", "webgpu", "cuda"] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

/** Session options shared by inspection and inference, so a model that inspects cleanly also loads for a run. */
export function buildSessionOptions(options: LoadSessionOptions = {}): ort.InferenceSession.SessionOptions {
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: options.executionProviders ?? ["cpu"],
    graphOptimizationLevel: options.graphOptimizationLevel ?? "all",
  };
  if (options.intraOpNumThreads !== undefined) sessionOptions.intraOpNumThreads = options.intraOpNumThreads;
  if (options.spinning === false) sessionOptions.extra = { session: { intra_op: { allow_spinning: "0" } } };
  return sessionOptions;
}

/** Opens an ONNX model file for inference. The caller owns the session and should `release()` it. */
export async function loadSession(path: string, options: LoadSessionOptions = {}): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(path, buildSessionOptions(options));
}

export type FallbackSession = {
  session: ort.InferenceSession;
  /** The provider the session runs on. */
  provider: string;
  /** Providers tried before it that could not start, with onnxruntime's reason. */
  skipped: { provider: string; reason: string }[];
};

/**
 * Opens a model on the first of `providers` that can start, one provider per attempt so the one in
 * use is known for certain (given a list, onnxruntime may quietly fall back on its own).
 */
export async function loadSessionWithFallback(
  model: string | Uint8Array,
  providers: readonly string[],
  options: Omit<LoadSessionOptions, "executionProviders"> = {},
): Promise<FallbackSession> {
  const skipped: FallbackSession["skipped"] = [];
  for (const provider of providers) {
    const sessionOptions = buildSessionOptions({ ...options, executionProviders: [provider] });
    try {
      const session =
        typeof model === "string"
          ? await ort.InferenceSession.create(model, sessionOptions)
          : await ort.InferenceSession.create(model, sessionOptions);
      return { session, provider, skipped };
    } catch (error) {
      skipped.push({ provider, reason: (error instanceof Error ? error.message : String(error)).split("\n", 1)[0] ?? "" });
    }
  }
  const reasons = skipped.map((s) => `${s.provider}: ${s.reason}`).join("; ");
  throw new Error(`no execution provider could open the model (${reasons})`);
}

/**
 * Which of `providers` this process can actually run on, found by opening a one-node model on each
 * in turn: what the worker reports at start, before any real model is loaded.
 */
export async function probeExecutionProviders(
  providers: readonly string[],
  options: Omit<LoadSessionOptions, "executionProviders"> = {},
): Promise<Omit<FallbackSession, "session">> {
  const { session, provider, skipped } = await loadSessionWithFallback(buildIdentityModel("float32", ["batch", 1]), providers, options);
  await session.release();
  return { provider, skipped };
}
