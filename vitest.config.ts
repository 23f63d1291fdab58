import { defineConfig } from "vitest/config";

// Tests run the packages' TypeScript (their exports' "@coalesce/source" condition, as the dev loop does);
// the processes that end-to-end tests start run the compiled dist/ (scripts/processes.ts).
const SOURCE_CONDITIONS = ["@coalesce/source", "module", "node", "development|production"];

export default defineConfig({
  resolve: { conditions: SOURCE_CONDITIONS },
  ssr: { resolve: { conditions: SOURCE_CONDITIONS, externalConditions: ["@coalesce/source"] } },
  test: {
    include: ["apps/*/src/**/*.test.ts", "packages/*/src/**/*.test.ts", "test/**/*.test.ts"],
    // onnxruntime-node is a native addon: child processes, not worker threads, host it safely.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
