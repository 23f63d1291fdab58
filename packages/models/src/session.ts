import * as ort from "onnxruntime-node";

export type LoadSessionOptions = {
  /**
   * Threads ONNX Runtime uses inside one operator. Lower it when several sessions or workers share
   * a machine, so they do not oversubscribe the cores.
   * @defaultValue ONNX Runtime's own default (one per physical core)
   */
  intraOpNumThreads?: number;
  /**
   * Execution providers in order of preference, e.g. `["cuda", "cpu"]`.
   * @defaultValue `["cpu"]`
   */
  executionProviders?: string[];
};

/** Session options shared by inspection and inference, so a model that inspects cleanly also loads for a run. */
export function buildSessionOptions(options: LoadSessionOptions = {}): ort.InferenceSession.SessionOptions {
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: options.executionProviders ?? ["cpu"],
    graphOptimizationLevel: "all",
  };
  if (options.intraOpNumThreads !== undefined) sessionOptions.intraOpNumThreads = options.intraOpNumThreads;
  return sessionOptions;
}

/** Opens an ONNX model file for inference. The caller owns the session and should `release()` it. */
export async function loadSession(path: string, options: LoadSessionOptions = {}): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(path, buildSessionOptions(options));
}
