import { describe, expect, it } from "vitest";
import { shortestFloat32 } from "./float32-text.ts";

/** The reference: the first precision, counting up, whose text reads back to the same float32. */
function bruteForce(value: number): number {
  for (let digits = 1; digits <= 9; digits++) {
    const candidate = Number(value.toPrecision(digits));
    if (Math.fround(candidate) === value) return candidate;
  }
  throw new Error(`no precision reads ${value} back`);
}

/** A deterministic spread of float32 values: every exponent, random mantissas, both signs. */
function sampleFloat32s(count: number): number[] {
  const bits = new Uint32Array(1);
  const view = new Float32Array(bits.buffer);
  let seed = 12345;
  const values: number[] = [];
  while (values.length < count) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    bits[0] = seed;
    if (Number.isFinite(view[0]!)) values.push(view[0]!);
  }
  return values;
}

describe("shortestFloat32", () => {
  it("gives, for 200,000 float32 values of every magnitude, the shortest text that reads back to the same float32", () => {
    for (const value of sampleFloat32s(200_000)) {
      const shortest = shortestFloat32(value);
      expect(Math.fround(Number(JSON.stringify(shortest)))).toBe(value);
      expect(shortest).toBe(bruteForce(value));
    }
  });

  it("prints a model's probabilities in at most 9 significant digits instead of 17", () => {
    const probability = Math.fround(0.9999681711196899);
    expect(JSON.stringify(probability)).toBe("0.9999681711196899");
    expect(JSON.stringify(shortestFloat32(probability))).toBe("0.9999682");
    expect(JSON.stringify(shortestFloat32(Math.fround(3.2e-5)))).toBe("0.000032");
    expect(shortestFloat32(Math.fround(0.1))).toBe(0.1);
    expect(shortestFloat32(1)).toBe(1);
  });

  it("keeps zero's sign, and leaves values that are not finite float32s as they are", () => {
    expect(Object.is(shortestFloat32(-0), -0)).toBe(true);
    for (const value of [Number.NaN, Infinity, -Infinity, 0.1, 1e300]) expect(Object.is(shortestFloat32(value), value)).toBe(true);
  });
});
