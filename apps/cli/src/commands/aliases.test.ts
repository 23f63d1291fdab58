import type { AliasHistoryEntry } from "@coalesce/contracts";
import { describe, expect, it } from "vitest";
import { formatGuard, formatHistory, formatRouting, formatShare } from "./aliases.ts";

const split = {
  routes: [
    { version: 2, weight: 90 },
    { version: 3, weight: 10 },
  ],
  shadow: null,
  guard: { max_error_rate: 0.01, min_rows: 1000, compare_sample: 0.1 },
};

describe("alias formatting", () => {
  it("shares as percentages, routings in a few words", () => {
    expect([formatShare(0.01), formatShare(0.985), formatShare(1), formatShare(0.0025)]).toEqual(["1%", "98.5%", "100%", "0.25%"]);
    expect(formatRouting(null)).toBe("none");
    expect(formatRouting({ routes: [{ version: 2, weight: 100 }], shadow: { version: 5, sample: 0.2 }, guard: null })).toBe("v2 + shadow v5 20%");
    expect(formatRouting(split)).toBe("v2 90%, v3 10% + guard");
    expect(formatGuard({ min_agreement: 0.98, min_rows: 500, compare_sample: 0.1 })).toBe("agreement>=98%, min 500 rows");
  });

  it("a guard's rollback says which figure crossed which limit, by the guard", () => {
    const entry: AliasHistoryEntry = {
      id: "9",
      at: "2026-01-02T03:04:05.000Z",
      action: "guard_rollback",
      key_id: null,
      before: split,
      after: { ...split, routes: [{ version: 2, weight: 100 }] },
      reason: { figure: "error_rate", value: 0.05, limit: 0.01, version: 3, role: "route", rows: 1200 },
      undone: false,
    };
    const set: AliasHistoryEntry = { ...entry, id: "8", action: "set", key_id: "key_1", before: null, after: split, reason: null, undone: true };
    expect(formatHistory([entry, set]).split("\n")).toEqual([
      "TIME                      ACTION          BY     CHANGE                                REASON",
      "2026-01-02T03:04:05.000Z  guard_rollback  guard  v2 90%, v3 10% + guard -> v2 + guard  error rate 5% > 1% for v3 (route) over 1,200 rows",
      "2026-01-02T03:04:05.000Z  set (undone)    key_1  none -> v2 90%, v3 10% + guard",
    ]);
  });
});
