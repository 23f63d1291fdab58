import { describe, expect, it } from "vitest";
import { GroupCommit } from "./group-commit.ts";

function deferred() {
  let release!: () => void;
  const done = new Promise<void>((resolve) => (release = resolve));
  return { done, release };
}

describe("GroupCommit", () => {
  it("writes a lone item at once, and items arriving meanwhile together in the next write", async () => {
    const writes: number[][] = [];
    const gate = deferred();
    const group = new GroupCommit(async (items: number[]) => {
      writes.push(items);
      if (writes.length === 1) await gate.done;
      return items.map((n) => n * 10);
    }, 100);
    const first = group.add(1);
    const later = [group.add(2), group.add(3), group.add(4)];
    expect(writes).toEqual([[1]]);
    gate.release();
    expect(await first).toBe(10);
    expect(await Promise.all(later)).toEqual([20, 30, 40]);
    expect(writes).toEqual([[1], [2, 3, 4]]);
  });

  it("caps a write at maxItems", async () => {
    const writes: number[][] = [];
    const group = new GroupCommit(async (items: number[]) => {
      writes.push(items);
      await Promise.resolve();
      return items;
    }, 2);
    await Promise.all([1, 2, 3, 4, 5].map((n) => group.add(n)));
    expect(writes.every((w) => w.length <= 2)).toBe(true);
    expect(writes.flat()).toEqual([1, 2, 3, 4, 5]);
  });

  it("fails every item of a failed write, and goes on with the next", async () => {
    let calls = 0;
    const group = new GroupCommit(async (items: number[]) => {
      calls++;
      if (calls === 1) throw new Error("database gone");
      return items;
    }, 10);
    await expect(group.add(1)).rejects.toThrow("database gone");
    expect(await group.add(2)).toBe(2);
  });
});
