import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["apps/*/src/**/*.test.ts", "packages/*/src/**/*.test.ts", "test/**/*.test.ts"],
    // onnxruntime-node is a native addon: child processes, not worker threads, host it safely.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
