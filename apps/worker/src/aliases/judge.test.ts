import type { AliasPlan, PairFigures, VersionFigures } from "@coalesce/db";
import { describe, expect, it } from "vitest";
import { judgeAlias } from "./judge.ts";

const guard = { max_error_rate: 0.01, min_agreement: 0.98, min_rows: 100, compare_sample: 0.1 };

function plan(overrides: Partial<AliasPlan> = {}): AliasPlan {
  return {
    id: "als_1",
    modelName: "iris",
    name: "production",
    revision: 3,
    routes: [
      { version: 1, weight: 90, versionId: "mv_1" },
      { version: 2, weight: 10, versionId: "mv_2" },
    ],
    shadow: null,
    guard,
    ...overrides,
  };
}

const stat = (version: number, role: "route" | "shadow", rows: number, errors: number): VersionFigures => ({
  version,
  role,
  rows,
  errors,
  errorRate: rows > 0 ? errors / rows : null,
  meanRunMs: 1,
});
const pair = (primaryVersion: number, shadowVersion: number, labelled: number, agreement: number): PairFigures => ({
  primaryVersion,
  shadowVersion,
  compared: labelled,
  labelled,
  agreement,
  outputs: [],
});

describe("judgeAlias", () => {
  it("rolls a failing canary back, its weight to the stable version", () => {
    const verdict = judgeAlias(plan(), { versions: [stat(1, "route", 900, 0), stat(2, "route", 120, 5)], pairs: [] });
    expect(verdict?.reason).toEqual({ figure: "error_rate", value: 5 / 120, limit: 0.01, version: 2, role: "route", rows: 120 });
    expect(verdict?.routing).toEqual({ routes: [{ version: 1, weight: 100 }], shadow: null, guard: null });
  });

  it("waits for min_rows before judging", () => {
    expect(judgeAlias(plan(), { versions: [stat(2, "route", 99, 50)], pairs: [pair(2, 1, 99, 0)] })).toBeNull();
  });

  it("rolls a canary back that disagrees with the stable version", () => {
    const verdict = judgeAlias(plan(), { versions: [stat(2, "route", 500, 0)], pairs: [pair(2, 1, 150, 0.9)] });
    expect(verdict?.reason).toMatchObject({ figure: "agreement", value: 0.9, limit: 0.98, version: 2, role: "route", rows: 150 });
  });

  it("drops a failing shadow and keeps the canary and its guard", () => {
    const verdict = judgeAlias(plan({ shadow: { version: 3, sample: 0.5, versionId: "mv_3" } }), {
      versions: [stat(2, "route", 500, 0), stat(3, "shadow", 400, 0)],
      pairs: [pair(1, 3, 300, 0.5), pair(2, 3, 100, 0.5), pair(2, 1, 50, 1)],
    });
    expect(verdict?.reason).toMatchObject({ figure: "agreement", version: 3, role: "shadow", rows: 400, value: 0.5 });
    expect(verdict?.routing).toEqual({ routes: [{ version: 1, weight: 90 }, { version: 2, weight: 10 }], shadow: null, guard });
  });

  it("leaves a healthy alias alone", () => {
    expect(judgeAlias(plan(), { versions: [stat(2, "route", 5000, 10)], pairs: [pair(2, 1, 500, 0.99)] })).toBeNull();
  });

  it("does nothing without a guard", () => {
    expect(judgeAlias(plan({ guard: null }), { versions: [stat(2, "route", 5000, 5000)], pairs: [] })).toBeNull();
  });
});
