import { describe, expect, it, vi } from "vitest";
import type { BatcherOptions } from "./batcher.ts";
import { BatcherRegistry } from "./batcher-registry.ts";

function optionsFor(key: string): BatcherOptions<number, string> {
  return { run: async (items) => items.map((item) => `${key}:${item}`), maxRows: 8, maxDelayMs: 1 };
}

describe("BatcherRegistry", () => {
  it("creates one batcher per key, lazily", async () => {
    const factory = vi.fn(optionsFor);
    const registry = new BatcherRegistry(factory);
    expect(factory).not.toHaveBeenCalled();

    const a = registry.get("v1:4");
    expect(registry.get("v1:4")).toBe(a);
    const b = registry.get("v2:4");
    expect(b).not.toBe(a);
    expect(factory.mock.calls).toEqual([["v1:4"], ["v2:4"]]);
    expect(registry.size).toBe(2);

    const [resultA, resultB] = await Promise.all([a.submit([1]), b.submit([2])]);
    expect(resultA).toEqual([{ ok: true, value: "v1:4:1" }]);
    expect(resultB).toEqual([{ ok: true, value: "v2:4:2" }]);
    await registry.closeAll();
  });

  it("closeAll flushes every batcher, then refuses to create more", async () => {
    const registry = new BatcherRegistry((key) => ({ ...optionsFor(key), maxDelayMs: 60_000 }));
    const a = registry.get("a");
    const pending = [a.submit([1]), registry.get("b").submit([2])];

    await registry.closeAll();
    expect(await Promise.all(pending)).toEqual([[{ ok: true, value: "a:1" }], [{ ok: true, value: "b:2" }]]);
    await expect(a.submit([3])).rejects.toThrow(/closed/);
    expect(() => registry.get("a")).toThrow(/closed/);
    expect(registry.size).toBe(0);
  });

  it("close(key) retires one batcher and a later get starts a fresh one", async () => {
    const registry = new BatcherRegistry(optionsFor);
    const old = registry.get("a");
    const kept = registry.get("b");

    await registry.close("a");
    await registry.close("missing");
    expect(registry.get("a")).not.toBe(old);
    expect(registry.get("b")).toBe(kept);
    await registry.closeAll();
  });

  it("closeMatching retires every batcher of a prefix (a model version unloaded), after its rows have run", async () => {
    const registry = new BatcherRegistry((key) => ({ ...optionsFor(key), maxDelayMs: 60_000 }));
    const [a1, a2, b] = [registry.get("v1|4|x"), registry.get("v1|8|y"), registry.get("v10|4|x")];
    const pending = a1.submit([1]);

    await registry.closeMatching("v1|");
    expect(await pending).toEqual([{ ok: true, value: "v1|4|x:1" }]);
    expect(registry.size).toBe(1);
    expect(registry.get("v10|4|x")).toBe(b);
    expect(registry.get("v1|4|x")).not.toBe(a1);
    expect(registry.get("v1|8|y")).not.toBe(a2);
    await registry.closeAll();
  });
});
