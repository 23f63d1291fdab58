import { describe, expect, it } from "vitest";
import { loadSessionWithFallback, probeExecutionProviders } from "./session.ts";
import { buildIdentityModel } from "./tiny-onnx.ts";

const MODEL = buildIdentityModel("float32", ["batch", 2]);

describe("loadSessionWithFallback", () => {
  it("uses the first provider that can open the model and says which were skipped", async () => {
    const { session, provider, skipped } = await loadSessionWithFallback(MODEL, ["cuda", "cpu"]);
    try {
      // The CUDA provider is not bundled with onnxruntime-node, so it never starts here.
      expect(provider).toBe("cpu");
      expect(skipped).toEqual([{ provider: "cuda", reason: expect.stringMatching(/\S/) }]);
    } finally {
      await session.release();
    }
  });

  it("fails naming every provider's reason when none can start", async () => {
    await expect(loadSessionWithFallback(MODEL, ["cuda"])).rejects.toThrow(/^no execution provider could open the model \(cuda: .+\)$/);
  });
});

describe("probeExecutionProviders", () => {
  it("reports the provider this process can run on", async () => {
    expect(await probeExecutionProviders(["cpu"])).toEqual({ provider: "cpu", skipped: [] });
  });
});
