import { ConfigError } from "@coalesce/contracts";
import { DEFAULT_UPLOAD_STALE_MS, MIN_UPLOAD_STALE_MS, UPLOAD_HEARTBEAT_MS } from "@coalesce/db";
import { describe, expect, it } from "vitest";
import { loadApiEnv } from "./env.ts";

describe("API configuration", () => {
  it("takes an upload for dead after UPLOAD_STALE_MS, the worker's setting, and refuses a bound of fewer than five heartbeats", () => {
    expect(loadApiEnv({}).UPLOAD_STALE_MS).toBe(DEFAULT_UPLOAD_STALE_MS);
    expect(loadApiEnv({ UPLOAD_STALE_MS: "10000" }).UPLOAD_STALE_MS).toBe(10_000);
    expect(MIN_UPLOAD_STALE_MS).toBe(5 * UPLOAD_HEARTBEAT_MS);
    expect(() => loadApiEnv({ UPLOAD_STALE_MS: "5000" })).toThrow(/UPLOAD_STALE_MS/);
    expect(() => loadApiEnv({ UPLOAD_STALE_MS: "5000" })).toThrow(ConfigError);
  });
});
