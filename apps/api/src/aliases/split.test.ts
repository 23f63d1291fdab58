import { describe, expect, it } from "vitest";
import { bucketOf, chooseRoute } from "./split.ts";

const ROUTINGS = 10_000;

function shares(routes: { version: number; weight: number }[], pick: (i: number) => { version: number }): Map<number, number> {
  const counts = new Map<number, number>();
  for (let i = 0; i < ROUTINGS; i++) {
    const { version } = pick(i);
    counts.set(version, (counts.get(version) ?? 0) + 1);
  }
  return new Map(routes.map((route) => [route.version, ((counts.get(route.version) ?? 0) / ROUTINGS) * 100]));
}

describe("chooseRoute", () => {
  const routes = [
    { version: 2, weight: 90 },
    { version: 3, weight: 10 },
  ];
  const three = [
    { version: 1, weight: 50 },
    { version: 2, weight: 30 },
    { version: 3, weight: 20 },
  ];

  it("holds the weights within 2 points over 10,000 random routings", () => {
    for (const split of [routes, three]) {
      const got = shares(split, () => chooseRoute(split, "", false));
      for (const route of split) expect(Math.abs(got.get(route.version)! - route.weight)).toBeLessThanOrEqual(2);
    }
  });

  it("holds the weights within 2 points over 10,000 distinct routing keys", () => {
    for (const split of [routes, three]) {
      const got = shares(split, (i) => chooseRoute(split, `als_x|user-${i}`, true));
      for (const route of split) expect(Math.abs(got.get(route.version)! - route.weight)).toBeLessThanOrEqual(2);
    }
  });

  it("routes the same key to the same version every time", () => {
    for (let i = 0; i < 200; i++) {
      const first = chooseRoute(routes, `als_x|user-${i}`, true).version;
      for (let again = 0; again < 5; again++) expect(chooseRoute(routes, `als_x|user-${i}`, true).version).toBe(first);
    }
  });

  it("keeps a key on the canary as the canary grows", () => {
    const bigger = [
      { version: 2, weight: 80 },
      { version: 3, weight: 20 },
    ];
    for (let i = 0; i < 2000; i++) {
      const key = `als_x|user-${i}`;
      if (chooseRoute(routes, key, true).version === 3) expect(chooseRoute(bigger, key, true).version).toBe(3);
    }
  });

  it("always takes a lone route", () => {
    expect(chooseRoute([{ version: 7, weight: 100 }], "k", true).version).toBe(7);
  });

  it("buckets are 0-99", () => {
    for (let i = 0; i < 1000; i++) {
      const bucket = bucketOf(`k${i}`);
      expect(bucket).toBeGreaterThanOrEqual(0);
      expect(bucket).toBeLessThan(100);
    }
  });
});
